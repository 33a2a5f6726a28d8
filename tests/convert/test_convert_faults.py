"""`b2p convert` never gives a wrong result with exit code 0 (issue 19): an --out in or around
the dataset or the masks is refused, an empty input is an error, a mask of no image is named,
and the user's files stay byte for byte the same."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from boxes2pixels.data.labelmaps import write_mask

FORMATS = [("yolo-seg", ()), ("yolo-seg", ("--copy-images",)), ("coco", ())]
FORMAT_IDS = ["yolo-seg-links", "yolo-seg-copies", "coco"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, labelled_dataset: Callable) -> Path:
    """``ds/`` (2 train, 1 val images of 96×64, ground truth in ``ds/gt_masks``) and the box
    teacher's ``masks/``, built once; tests copy them."""
    return labelled_dataset(tmp_path_factory.mktemp("convert-faults"), train=2, val=1)


@pytest.fixture
def work(base: Path, tmp_path: Path, fresh_copy: Callable) -> Path:
    """A fresh copy of ``base`` in this test's folder."""
    return fresh_copy(base, tmp_path)


def convert(invoke_cli: Callable, masks: Path | str, out: Path | str, to: str, *more: str):
    """``b2p convert MASKS --to TO --data ds/data.yaml --out OUT``; the data.yaml is found next
    to the masks folder's parent."""
    data = Path(masks).resolve().parent / "ds" / "data.yaml"
    return invoke_cli("convert", masks, "--to", to, "--data", data, "--out", out, *more)


# (name, --out relative to the work folder, the folder the message must name)
COLLISIONS = [
    ("the-dataset", "ds", "ds"),
    ("the-images-train-folder", "ds/images/train", "ds/images/train"),
    ("inside-images-train", "ds/images/train/converted", "ds/images/train"),
    ("inside-the-dataset", "ds/converted", "ds"),
    ("the-labels-folder", "ds/labels/val", "ds/labels/val"),
    ("the-masks-folder", "masks", "masks"),
    ("inside-the-masks", "masks/train/out", "masks"),
    ("a-parent-of-both", ".", "ds"),
    ("dotdot-to-the-dataset", "masks/../ds", "ds"),
    ("symlink-to-the-dataset", "link", "ds"),
]


@pytest.mark.parametrize("case", COLLISIONS, ids=[c[0] for c in COLLISIONS])
@pytest.mark.parametrize(("to", "more"), FORMATS, ids=FORMAT_IDS)
def test_out_in_or_around_the_sources_is_refused(
    case: tuple[str, str, str],
    to: str,
    more: tuple[str, ...],
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    invoke_cli: Callable,
    tree_digest: Callable,
) -> None:
    _, out, named = case
    (work / "link").symlink_to(work / "ds", target_is_directory=True)
    monkeypatch.chdir(work)  # relative --out paths, as a user types them
    before = tree_digest(work)
    code, text = convert(invoke_cli, "masks", out, to, *more)
    assert code == 1, text
    assert f"--out {out} " in text
    assert f"({(work / named).resolve()})" in text  # the folder it collides with
    assert "Nothing was written" in text
    assert tree_digest(work) == before


@pytest.mark.parametrize(("to", "more"), FORMATS, ids=FORMAT_IDS)
def test_an_out_beside_the_dataset_converts(
    to: str, more: tuple[str, ...], work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    before = {name: tree_digest(work / name) for name in ("ds", "masks")}
    code, text = convert(invoke_cli, work / "masks", work / "ds-converted", to, *more)
    assert code == 0, text
    assert {name: tree_digest(work / name) for name in ("ds", "masks")} == before


def test_a_second_conversion_into_the_same_folder_needs_overwrite_and_leaves_nothing_stale(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    """A rerun into an earlier --out is refused (its stale label files would train like
    current ones); with --overwrite the earlier outputs are replaced whole: a mask removed
    since leaves no label behind, copies replace the links, files the user added stay."""
    before = tree_digest(work / "ds")
    out = work / "yolo"
    assert convert(invoke_cli, work / "masks", out, "yolo-seg")[0] == 0
    image = out / "images" / "train" / "train_00000.jpg"
    stale = out / "labels" / "train" / "train_00001.txt"
    assert image.is_symlink() and stale.is_file()
    (out / "notes.txt").write_text("mine\n")
    (work / "masks" / "train" / "train_00001.png").unlink()
    earlier = tree_digest(out)
    code, text = convert(invoke_cli, work / "masks", out, "yolo-seg", "--copy-images")
    assert code == 1 and "--overwrite" in text and "labels" in text and str(out) in text
    assert tree_digest(out) == earlier  # refused before writing anything
    code, text = convert(
        invoke_cli, work / "masks", out, "yolo-seg", "--copy-images", "--overwrite"
    )
    assert code == 0, text
    assert not stale.exists() and not (out / "images" / "train" / "train_00001.jpg").exists()
    assert not image.is_symlink()
    assert image.read_bytes() == (work / "ds" / "images" / "train" / "train_00000.jpg").read_bytes()
    assert (out / "notes.txt").read_text() == "mine\n"
    assert tree_digest(work / "ds") == before


@pytest.mark.parametrize("to", ["coco", "yolo-seg"])
def test_empty_split_folders_are_an_error(
    to: str, work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    empty = work / "empty"
    for split in ("train", "val"):
        (empty / split).mkdir(parents=True)
    before = tree_digest(work)
    code, text = convert(invoke_cli, empty, work / "out", to)
    assert code == 1, text
    assert "no masks found" in text
    assert str(empty / "train") in text and str(empty / "val") in text
    assert not (work / "out").exists()
    assert tree_digest(work) == before


def test_split_folder_of_split_folders_is_an_error(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    before = tree_digest(work)
    code, text = convert(invoke_cli, work / "masks", work / "out", "coco", "--split", "train")
    assert code == 1, text
    assert "no masks found" in text and "leave out --split" in text
    assert not (work / "out").exists()
    assert tree_digest(work) == before


@pytest.mark.parametrize("to", ["coco", "yolo-seg"])
def test_masks_of_another_size_only_are_an_error(
    to: str, work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    for mask in sorted((work / "masks").rglob("*.png")):
        write_mask(mask, np.zeros((32, 48), np.uint8))
    before = tree_digest(work)
    code, text = convert(invoke_cli, work / "masks", work / "out", to)
    assert code == 1, text
    assert str(work / "masks" / "train" / "train_00000.png") in text
    assert "48×32" in text and "96×64" in text
    assert not (work / "out").exists()
    assert tree_digest(work) == before


@pytest.mark.parametrize("to", ["coco", "yolo-seg"])
def test_a_mask_of_no_image_is_named_and_the_rest_converted(
    to: str, work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    ghost = work / "masks" / "train" / "deleted_image.png"
    write_mask(ghost, np.zeros((64, 96), np.uint8))
    before = tree_digest(work / "ds"), tree_digest(work / "masks")
    code, text = convert(invoke_cli, work / "masks", work / "out", to)
    assert code == 0, text
    assert "warning: 1 mask(s) belong to no image" in text and str(ghost) in text
    assert "train 2, val 1" in text
    if to == "coco":
        coco = json.loads((work / "out" / "annotations" / "instances_train.json").read_text())
        assert sorted(i["file_name"] for i in coco["images"]) == [
            "train_00000.jpg",
            "train_00001.jpg",
        ]
    else:
        labels = sorted(p.name for p in (work / "out" / "labels" / "train").iterdir())
        assert labels == ["train_00000.txt", "train_00001.txt"]
    assert (tree_digest(work / "ds"), tree_digest(work / "masks")) == before


def test_a_split_without_masks_gets_no_empty_file(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    (work / "masks" / "val" / "val_00000.png").unlink()
    before = tree_digest(work)
    code, text = convert(invoke_cli, work / "masks", work / "out", "coco")
    assert code == 0, text
    assert "skipped" in text and "split val: no image converted, no file written" in text
    assert sorted(p.name for p in (work / "out" / "annotations").iterdir()) == [
        "instances_train.json"
    ]
    assert {k: v for k, v in tree_digest(work).items() if not k.startswith("out/")} == before
