"""A rerun of `b2p review` into an earlier --out never destroys the user's edits of the
correction bundle and never leaves stale files that `b2p label --corrections` would import
(issue 19)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from boxes2pixels.data.labelmaps import read_mask, write_mask


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, labelled_dataset: Callable) -> Path:
    """``ds/`` (8 train images of 96×64, 3 of them with boxes) and the box teacher's
    ``masks/``, built once."""
    return labelled_dataset(tmp_path_factory.mktemp("review-rerun"), train=8, val=0, splits="train")


@pytest.fixture
def work(base: Path, tmp_path: Path, fresh_copy: Callable) -> Path:
    """A fresh copy of ``base`` in this test's folder."""
    return fresh_copy(base, tmp_path)


def review(invoke_cli: Callable, work: Path, *more: str) -> tuple[int, str]:
    """``b2p review ds/data.yaml --masks masks --out out --device cpu MORE``."""
    return invoke_cli(
        "review", work / "ds" / "data.yaml", "--masks", work / "masks", "--out", work / "out",
        "--device", "cpu", *more,
    )  # fmt: skip


def bundled(work: Path) -> list[str]:
    """The bundle's files below ``masks/`` and ``images/``, relative to the bundle."""
    bundle = work / "out" / "correct"
    return sorted(
        p.relative_to(bundle).as_posix()
        for sub in ("masks", "images")
        for p in (bundle / sub).rglob("*")
        if p.is_file()
    )


def edit(mask: Path) -> None:
    """What an expert does to a bundle mask: paint part of it as class 1."""
    label_map = read_mask(mask)
    label_map[:8, :8] = 1
    write_mask(mask, label_map)


def test_a_rerun_over_an_edited_mask_is_refused_and_changes_nothing(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    masks = sorted((work / "out" / "correct" / "masks").rglob("*.png"))
    assert len(masks) == 3
    edit(masks[1])
    before = tree_digest(work)
    for top in ("3", "1"):  # whether or not the new top K holds the edited image
        code, text = review(invoke_cli, work, "--top", top)
        assert code == 1, text
        assert str(masks[1]) in text and "--corrections" in text and "--overwrite" in text
        assert tree_digest(work) == before


def test_an_imported_edit_is_replaced_by_the_rerun(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    bundle = work / "out" / "correct"
    edited = sorted((bundle / "masks").rglob("*.png"))[0]
    edit(edited)
    code, text = invoke_cli(
        "label", work / "ds" / "data.yaml", "--teacher", "box", "--out", work / "masks",
        "--splits", "train", "--corrections", bundle, "-q",
    )  # fmt: skip
    assert code == 0, text
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text  # the edit is safe in the masks folder now
    key = edited.relative_to(bundle / "masks").as_posix()
    assert np.array_equal(read_mask(edited), read_mask(work / "masks" / key))


def test_overwrite_replaces_an_edited_bundle(work: Path, invoke_cli: Callable) -> None:
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    edited = sorted((work / "out" / "correct" / "masks").rglob("*.png"))[0]
    edit(edited)
    code, text = review(invoke_cli, work, "--top", "3", "--overwrite")
    assert code == 0, text
    key = edited.relative_to(work / "out" / "correct" / "masks").as_posix()
    assert np.array_equal(read_mask(edited), read_mask(work / "masks" / key))


def test_a_smaller_rerun_leaves_no_stale_file_of_the_earlier_one(
    work: Path, invoke_cli: Callable
) -> None:
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    assert len(bundled(work)) == 6
    code, text = review(invoke_cli, work, "--top", "1")
    assert code == 0, text
    coco = json.loads((work / "out" / "correct" / "annotations.json").read_text())
    names = [image["file_name"] for image in coco["images"]]
    assert len(names) == 1
    stem = names[0].rsplit(".", 1)[0]
    assert bundled(work) == [f"images/{names[0]}", f"masks/{stem}.png"]


def test_files_the_user_put_in_the_bundle_are_kept(work: Path, invoke_cli: Callable) -> None:
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    bundle = work / "out" / "correct"
    taken = {p.stem for p in (bundle / "masks" / "train").glob("*.png")}
    other = next(p for p in sorted((work / "masks" / "train").glob("*.png")) if p.stem not in taken)
    drawn = bundle / "masks" / "train" / other.name  # a mask the expert drew from scratch
    write_mask(drawn, np.ones((64, 96), np.uint8))
    notes = bundle / "notes.txt"
    notes.write_text("checked by A.\n")
    for top in ("1", "3"):
        code, text = review(invoke_cli, work, "--top", top)
        assert code == 0, text
        assert notes.read_text() == "checked by A.\n"
        assert (read_mask(drawn) == 1).all()


def test_a_bundle_without_its_record_is_refused(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    record = work / "out" / "correct" / "bundle.json"
    record.unlink()  # or a bundle of an earlier version
    before = tree_digest(work)
    code, text = review(invoke_cli, work, "--top", "1")
    assert code == 1, text
    assert str(record) in text and "--overwrite" in text
    assert tree_digest(work) == before
    code, text = review(invoke_cli, work, "--top", "1", "--overwrite")
    assert code == 0, text
    assert len(bundled(work)) == 2 and record.is_file()


def test_a_rerun_with_no_doubt_removes_the_earlier_bundle(work: Path, invoke_cli: Callable) -> None:
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    no_doubt = "coverage=0,appearance=0,spill=0"  # the box teacher's masks: nothing else
    code, text = review(invoke_cli, work, "--weights", no_doubt)
    assert code == 0, text
    assert "bundle: none" in text
    assert not (work / "out" / "correct").exists()


def test_a_rerun_after_a_write_that_failed_halfway_leaves_no_stale_file(
    work: Path, invoke_cli: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from boxes2pixels.errors import WriteError
    from boxes2pixels.review import bundle

    code, text = review(invoke_cli, work, "--top", "1")
    assert code == 0, text
    first = bundled(work)
    copies = []
    real_copy = bundle.copy_file_atomic

    def copy_then_fail(source: Path, target: Path) -> None:
        copies.append(target)
        if len(copies) == 3:  # the third image: the disk is full
            raise WriteError(f"{target}: cannot write the file: no space left on the device")
        real_copy(source, target)

    monkeypatch.setattr(bundle, "copy_file_atomic", copy_then_fail)
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 1 and "no space left" in text, text
    assert len(bundled(work)) == 4  # two images and their masks made it
    monkeypatch.undo()
    code, text = review(invoke_cli, work, "--top", "1")
    assert code == 0, text
    assert bundled(work) == first


def test_a_rerun_with_a_smaller_top_keeps_only_the_pictures_its_gallery_shows(
    work: Path, invoke_cli: Callable
) -> None:
    files = work / "out" / "gallery_files"
    code, text = review(invoke_cli, work, "--top", "3")
    assert code == 0, text
    first = sorted(p.name for p in files.glob("*.png"))
    code, text = review(invoke_cli, work, "--top", "1")
    assert code == 0, text
    shown = (work / "out" / "gallery.md").read_text(encoding="utf-8")
    kept = sorted(p.name for p in files.glob("*.png"))
    assert len(kept) < len(first)
    assert kept and all(f"gallery_files/{name}" in shown for name in kept)
