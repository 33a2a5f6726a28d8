"""``b2p label`` never silently wrong (issue 19): a corrections import is all or nothing, a
correction it cannot read is an error naming the file, and a resume recovers from a part
file cut short or a deleted ``.parts/`` folder. Every case runs the CLI as a user would and
checks the exit code, the message and that no user file changed."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boxes2pixels.convert import masks_to_coco
from boxes2pixels.data.labelmaps import read_mask, write_mask
from boxes2pixels.label.corrections import corrected_keys

Digest = Callable[[Path], dict[str, str]]
Cli = Callable[..., tuple[int, str]]
KEYS = ["train/train_00000.png", "train/train_00001.png", "val/val_00000.png"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated dataset (2 train, 1 val images of 96×64), built once; tests copy it."""
    from boxes2pixels.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("label-faults") / "ds"
    generate_dataset(root, train=2, val=1, test=0, size=(96, 64), seed=0)
    return root


@pytest.fixture
def ds(base: Path, tmp_path: Path) -> Path:
    """A fresh copy of the dataset for one test."""
    return Path(shutil.copytree(base, tmp_path / "ds"))


@pytest.fixture
def label(ds: Path, invoke_cli: Cli) -> Callable[..., tuple[int, str]]:
    """``label(out, *more)``: ``b2p label`` of ``ds`` with the weight-free box teacher."""

    def run(out: Path, *more: str | Path) -> tuple[int, str]:
        return invoke_cli("label", ds / "data.yaml", "--teacher", "box", "--out", out, "-q", *more)

    return run


def masks_only(digest: dict[str, str]) -> dict[str, str]:
    """The mask PNGs of a folder's digest (part files and manifest left out)."""
    return {k: v for k, v in digest.items() if k.endswith(".png") and not k.startswith(".")}


def truth(ds: Path, key: str) -> np.ndarray:
    """The generator's exact mask of ``key`` with its top-left pixel made dirt: a correction
    an expert could have made, and one that differs from the box teacher's mask (a mask equal
    to the current one is not recorded as a correction)."""
    mask = read_mask(ds / "gt_masks" / key)
    mask[0, 0] = 1
    return mask


def assert_nothing_corrected(masks: Path, label: Callable[..., tuple[int, str]]) -> None:
    """A plain rerun lists no image as human-corrected, in its output or the manifest."""
    code, output = label(masks)
    assert code == 0, output
    assert "human-corrected" not in output
    assert corrected_keys(masks) == set()
    manifest = json.loads((masks / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["human_corrected"] == []


# ----------------------------------------------------------------- corrections: all or nothing
def test_one_invalid_correction_records_none(
    ds: Path, tmp_path: Path, label: Callable, tree_digest: Digest
) -> None:
    masks, fixes = tmp_path / "masks", tmp_path / "fixes"
    assert label(masks)[0] == 0
    write_mask(fixes / "train" / "train_00000.png", truth(ds, KEYS[0]))  # valid, read first
    bad = fixes / "train" / "train_00001.png"
    write_mask(bad, np.zeros((5, 5), np.uint8))  # wrong size
    before = {"ds": tree_digest(ds), "fixes": tree_digest(fixes), "masks": tree_digest(masks)}
    code, output = label(masks, "--corrections", fixes)
    assert code == 1, output
    assert output.startswith("error: ") and str(bad) in output and "5×5" in output
    assert tree_digest(masks) == before["masks"]  # not one mask or record changed
    assert_nothing_corrected(masks, label)
    assert tree_digest(ds) == before["ds"] and tree_digest(fixes) == before["fixes"]


def _disk_full_at(suffix: str, nth: int) -> Callable[[pytest.MonkeyPatch], None]:
    """A fault: the disk fills while the atomic writer writes the ``nth`` file named
    ``*suffix`` (every output goes through ``boxes2pixels.atomic``'s open)."""

    def fault(monkeypatch: pytest.MonkeyPatch) -> None:
        from boxes2pixels import atomic

        seen: list[str] = []

        class FullDisk(io.FileIO):
            def write(self, data: object) -> int:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def open_(path: Path, mode: str) -> io.FileIO:
            if str(path).endswith(suffix):
                seen.append(str(path))
                if len(seen) == nth:
                    return FullDisk(path, "w")
            return io.FileIO(path, "w")

        monkeypatch.setattr(atomic, "open", open_, raising=False)

    return fault


@pytest.mark.parametrize(
    "fault", [_disk_full_at(".png", 2), _disk_full_at(".jsonl", 1)], ids=["mask", "record"]
)
def test_disk_full_midway_through_corrections_records_none(
    ds: Path,
    tmp_path: Path,
    label: Callable,
    tree_digest: Digest,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[pytest.MonkeyPatch], None],
) -> None:
    masks, fixes = tmp_path / "masks", tmp_path / "fixes"
    assert label(masks)[0] == 0
    for key in KEYS:
        write_mask(fixes / key, truth(ds, key))
    before = {"ds": tree_digest(ds), "fixes": tree_digest(fixes), "masks": tree_digest(masks)}
    with monkeypatch.context() as patch:
        fault(patch)
        code, output = label(masks, "--corrections", fixes)
    assert code == 1, output
    assert tree_digest(masks) == before["masks"]  # not one mask or record changed
    assert output.startswith("error: ") and "no space left on the device" in output
    assert f"Nothing of {fixes} was imported: no correction was recorded" in output
    assert_nothing_corrected(masks, label)
    assert tree_digest(ds) == before["ds"] and tree_digest(fixes) == before["fixes"]
    code, output = label(masks, "--corrections", fixes)  # room again: all of them at once
    assert code == 0, output
    assert corrected_keys(masks) == set(KEYS)
    for key in KEYS:
        assert np.array_equal(read_mask(masks / key), truth(ds, key))


# ----------------------------------------------------------------- corrections: named errors
def test_a_jpeg_in_the_corrections_folder_is_an_error_naming_it(
    ds: Path, tmp_path: Path, label: Callable, tree_digest: Digest
) -> None:
    masks, fixes = tmp_path / "masks", tmp_path / "fixes"
    write_mask(fixes / "train" / "train_00000.png", truth(ds, KEYS[0]))
    jpeg = fixes / "train" / "train_00001.jpg"
    Image.fromarray(truth(ds, KEYS[1])).save(jpeg)
    (fixes / ".DS_Store").write_bytes(b"\0")  # a system file is no correction: ignored
    before = {"ds": tree_digest(ds), "fixes": tree_digest(fixes)}
    code, output = label(masks, "--corrections", fixes)
    assert code == 1, output
    assert output.startswith("error: ") and str(jpeg) in output and "PNG" in output
    assert not masks.exists() or not any(p.is_file() for p in masks.rglob("*"))
    assert tree_digest(ds) == before["ds"] and tree_digest(fixes) == before["fixes"]


def test_a_coco_annotation_of_no_image_names_file_annotation_and_image_id(
    ds: Path, tmp_path: Path, label: Callable, tree_digest: Digest
) -> None:
    masks = tmp_path / "masks"
    names = ["train_00000.jpg", "train_00001.jpg"]
    coco = masks_to_coco(names, [truth(ds, KEYS[0]), truth(ds, KEYS[1])], ["dirt", "damage"])
    assert coco["annotations"], "the generated images have defects"
    stray = coco["annotations"][-1]
    stray["image_id"] = 77
    fixes = tmp_path / "from_cvat.json"
    fixes.write_text(json.dumps(coco), encoding="utf-8")
    before = {"ds": tree_digest(ds), "fixes": fixes.read_bytes()}
    code, output = label(masks, "--corrections", fixes)
    assert code == 1, output
    assert output.startswith(f"error: {fixes}: annotation {stray['id']} ")
    assert "image_id 77" in output and "no image entry has id 77" in output
    assert not masks.exists() or not any(p.is_file() for p in masks.rglob("*"))
    assert tree_digest(ds) == before["ds"] and fixes.read_bytes() == before["fixes"]


# ----------------------------------------------------------------- resume recovers
def test_resume_recovers_a_part_file_cut_mid_line(
    ds: Path, tmp_path: Path, label: Callable, tree_digest: Digest
) -> None:
    clean, masks = tmp_path / "clean", tmp_path / "masks"
    assert label(clean)[0] == 0
    assert label(masks)[0] == 0
    (part,) = (masks / ".parts").glob("*.jsonl")
    data = part.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    part.write_bytes(data[: last + (len(data) - last) // 2])  # power loss: the tail is lost
    cut_key = json.loads(data[last:])["key"]
    (masks / "manifest.json").unlink()
    before = tree_digest(ds)
    code, output = label(masks)
    assert code == 0, output
    assert f"recovered: 1 mask without a finished record in {masks / '.parts'}" in output
    assert cut_key in output and "manifest.json not written" not in output
    assert (masks / "manifest.json").is_file()
    assert masks_only(tree_digest(masks)) == masks_only(tree_digest(clean))
    code, output = label(masks)  # recovered once: a later rerun has nothing to say
    assert code == 0 and "recovered" not in output, output
    assert tree_digest(ds) == before


def test_resume_recovers_masks_without_their_part_files(
    ds: Path, tmp_path: Path, label: Callable, tree_digest: Digest
) -> None:
    clean, masks = tmp_path / "clean", tmp_path / "masks"
    assert label(clean)[0] == 0
    assert label(masks)[0] == 0
    shutil.rmtree(masks / ".parts")
    (masks / "manifest.json").unlink()
    before = tree_digest(ds)
    code, output = label(masks)
    assert code == 0, output
    assert f"recovered: 3 masks without a finished record in {masks / '.parts'}" in output
    assert (masks / "manifest.json").is_file()
    manifest = json.loads((masks / "manifest.json").read_text(encoding="utf-8"))
    assert sum(s["images"] for s in manifest["splits"].values()) == 3
    assert masks_only(tree_digest(masks)) == masks_only(tree_digest(clean))
    assert tree_digest(ds) == before


def test_an_import_killed_after_its_commit_is_finished_by_the_next_run(
    ds: Path,
    tmp_path: Path,
    label: Callable,
    tree_digest: Digest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boxes2pixels.label.corrections as corrections

    masks, fixes = tmp_path / "masks", tmp_path / "fixes"
    assert label(masks)[0] == 0
    for key in KEYS:
        write_mask(fixes / key, truth(ds, key))
    before = {"ds": tree_digest(ds), "fixes": tree_digest(fixes)}
    real, moved = os.replace, []

    def killed(src: str | Path, dst: str | Path) -> None:
        if ".staged" in str(src) and ".staged" not in str(dst):  # a move, not a staging write
            if moved:
                raise KeyboardInterrupt  # the process dies after moving one mask
            moved.append(dst)
        real(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(corrections.os, "replace", killed)
        code, output = label(masks, "--corrections", fixes)
    assert code == 130, output
    code, output = label(masks)
    assert code == 0, output
    assert "recovered: 2 corrected mask(s) recorded in" in output
    assert corrected_keys(masks) == set(KEYS)
    for key in KEYS:
        assert np.array_equal(read_mask(masks / key), truth(ds, key))
    assert not list((masks / ".parts").glob("*.staged"))
    assert tree_digest(ds) == before["ds"] and tree_digest(fixes) == before["fixes"]


def test_a_staging_folder_left_without_a_commit_is_removed(
    tmp_path: Path, label: Callable, tree_digest: Digest
) -> None:
    masks = tmp_path / "masks"
    assert label(masks)[0] == 0
    before = masks_only(tree_digest(masks))
    staged = masks / ".parts" / "corrections-20250101T000000-0123456789ab.staged"
    write_mask(staged / KEYS[0], np.ones((64, 96), np.uint8))
    old = 1_000_000_000
    for path in [staged, *staged.rglob("*")]:
        os.utime(path, (old, old))
    code, output = label(masks)
    assert code == 0, output
    assert not staged.exists() and masks_only(tree_digest(masks)) == before
    assert corrected_keys(masks) == set()
