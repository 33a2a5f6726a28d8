"""Bad inputs a new user gives (issue 12): each gets a clear message naming the file, exit
code 1 when it is fatal, the run continues for the good files where that is safe, and no
file of the user's dataset changes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from boxes2pixels.atomic import atomic_path, remove_stale_temps
from boxes2pixels.cli.main import app
from boxes2pixels.data.dataset import PseudoMaskDataset
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.data.yolo import load_data_yaml, parse_label_text
from boxes2pixels.errors import CheckpointError, ImageReadError, WriteError
from boxes2pixels.io import load_torch_weights, read_image
from boxes2pixels.weights_file import SHA256_KEY, verify_weights

NAMES3 = ["background", "dirt", "damage"]


# ----------------------------------------------------------------------------- helpers
def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def invoke(*args: str | Path) -> tuple[int, str]:
    """``b2p ARGS`` in this process: exit code and the output as one line of words."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is what these tests rule out
    return result.exit_code, " ".join(result.output.split())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def label(ds: Path, out: Path, *more: str) -> tuple[int, str]:
    """``b2p label`` with the weight-free box teacher."""
    return invoke("label", ds / "data.yaml", "--teacher", "box", "--out", out, "-q", *more)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated dataset (2 train, 1 val images of 96×64), built once; tests copy it."""
    from boxes2pixels.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("bad-inputs") / "ds"
    generate_dataset(root, train=2, val=1, test=0, size=(96, 64), seed=0)
    return root


@pytest.fixture
def ds(base: Path, tmp_path: Path) -> Path:
    """A fresh copy of the dataset for one test."""
    return Path(shutil.copytree(base, tmp_path / "ds"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, make_student: Callable) -> Path:
    """A saved random-weight student (timm's tiny ``test_vit`` backbone)."""
    folder = tmp_path_factory.mktemp("model") / "student"
    model = make_student(
        num_classes=3,
        class_names=NAMES3,
        backbone="test_vit",
        backbone_mode="full",
        decoder_channels=32,
        imgsz=64,
    )
    model.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------- fatal: exit code 1
def _text_checkpoint(ds: Path, tmp: Path, model: Path) -> tuple[list, Path]:
    notes = ds / "notes.txt"
    notes.write_text("some notes\nline two\n", encoding="utf-8")
    args = ["label", ds / "data.yaml", "--teacher", "sam", "--checkpoint", notes]
    return [*args, "--out", tmp / "masks", "-q"], notes


def _not_a_teacher(ds: Path, tmp: Path, model: Path) -> tuple[list, str]:
    args = ["label", ds / "data.yaml", "--teacher", "os:system", "--out", tmp / "masks", "-q"]
    return args, "os:system is not a teacher class"


def _predict_out_is_file(ds: Path, tmp: Path, model: Path) -> tuple[list, Path]:
    notes = ds / "notes.txt"
    notes.write_text("keep me\n", encoding="utf-8")
    return ["predict", model, ds / "images" / "val", "--out", notes], notes


def _predict_out_above_source(ds: Path, tmp: Path, model: Path) -> tuple[list, Path]:
    return ["predict", model, ds / "images" / "val", "--out", ds / "images"], ds / "images"


def _masks_split_is_file(ds: Path, tmp: Path, model: Path) -> tuple[list, Path]:
    (tmp / "masks").mkdir()
    (tmp / "masks" / "train").write_text("not a folder\n", encoding="utf-8")
    args = ["label", ds / "data.yaml", "--teacher", "box", "--out", tmp / "masks", "-q"]
    return args, tmp / "masks" / "train"


def _damaged_weights(ds: Path, tmp: Path, model: Path) -> tuple[list, Path]:
    copy = Path(shutil.copytree(model, tmp / "damaged"))
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # a payload byte; the header stays intact
    weights.write_bytes(bytes(data))
    return ["predict", copy, ds / "images" / "val", "--out", tmp / "pred"], weights


def _markup_in_path(ds: Path, tmp: Path, model: Path) -> tuple[list, str]:
    odd = Path(shutil.copytree(ds, tmp / "x[left][/bold]"))
    (odd / "data.yaml").write_text("names: [dirt, damage\ntrain: [images/train\n", "utf-8")
    args = ["label", odd / "data.yaml", "--teacher", "box", "--out", tmp / "masks", "-q"]
    return args, f"{odd / 'data.yaml'}: not valid YAML"


FATAL = {
    "text file as --checkpoint": _text_checkpoint,
    "--teacher os:system": _not_a_teacher,
    "predict --out is a file": _predict_out_is_file,
    "predict --out above the source folder": _predict_out_above_source,
    "masks/<split> is a file": _masks_split_is_file,
    "damaged model.safetensors payload": _damaged_weights,
    "Rich markup in a path, invalid YAML": _markup_in_path,
}


@pytest.mark.parametrize("case", list(FATAL))
def test_fatal_input_is_one_message_naming_the_file(
    case: str, ds: Path, tmp_path: Path, model_dir: Path
) -> None:
    args, named = FATAL[case](ds, tmp_path, model_dir)
    before = digest(ds)
    code, output = invoke(*args)
    assert code == 1, output
    assert output.startswith("error: "), output
    assert str(named) in output, output
    assert digest(ds) == before  # no user file changed (nor was any added)
    assert not (tmp_path / "masks" / ".parts").exists()  # a refused label run leaves nothing


# ------------------------------------------------------------------- disk full
def test_disk_full_in_label_names_the_mask_and_leaves_no_temp_file(
    ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from boxes2pixels import atomic

    class FullDisk(io.FileIO):
        def write(self, data: object) -> int:
            super().write(b"\x89PNG")  # a few bytes made it to the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # the disk fills while the atomic writer writes a file's bytes
    monkeypatch.setattr(atomic, "open", lambda path, mode: FullDisk(path, "w"), raising=False)
    before = digest(ds)
    code, output = label(ds, tmp_path / "masks")
    assert code == 1, output
    assert "no space left on the device" in output
    assert str(tmp_path / "masks" / "train" / "train_00000.png") in output
    assert not [p for p in (tmp_path / "masks").rglob("*") if ".tmp" in p.name]
    assert not list((tmp_path / "masks").rglob("*.png"))
    assert digest(ds) == before


def test_disk_full_in_train_names_the_file_and_keeps_the_last_best(
    model_dir: Path, tmp_path: Path, file_size_limit: Callable
) -> None:
    from boxes2pixels.distill.checkpoint import save_best
    from boxes2pixels.student import Student

    run = tmp_path / "run"
    model = Student.from_pretrained(model_dir)
    save_best(model, run, {"epoch": 1})
    before = digest(run / "best")
    limit = (model_dir / "model.safetensors").stat().st_size // 2
    with file_size_limit(limit), pytest.raises(WriteError) as info:
        save_best(model, run, {"epoch": 2})
    message = str(info.value)
    assert message.startswith(f"{run}") and "model.safetensors" in message
    assert "file size limit" in message
    assert not (run / ".best.tmp").exists()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    assert digest(run / "best") == before  # the previous best model is intact


def test_disk_full_writing_the_training_checkpoint_names_it(
    tmp_path: Path, file_size_limit: Callable
) -> None:
    import torch

    path = tmp_path / "last.ckpt"
    with (
        file_size_limit(4096),
        pytest.raises(WriteError, match=re.escape(str(path))),
        atomic_path(path) as tmp,
        open(tmp, "wb") as fh,
    ):
        torch.save({"w": torch.zeros(10_000)}, fh)  # torch wraps the OSError
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_is_flushed_to_disk_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boxes2pixels.atomic as atomic

    synced: list[bool] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}") if sys.platform == "linux" else True)
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x", encoding="utf-8")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "x"
    assert len(synced) == 2 and synced[-1]  # the file, then its folder


def test_a_file_in_the_way_of_an_output_folder_is_a_write_error(tmp_path: Path) -> None:
    (tmp_path / "preds").write_text("x", encoding="utf-8")
    target = tmp_path / "preds" / "a.png"
    message = re.escape(f"{tmp_path / 'preds'} is a file")
    with pytest.raises(WriteError, match=message), atomic_path(target) as tmp:
        tmp.write_bytes(b"")


# ------------------------------------------------------------------- label: runs continue
def test_utf8_bom_in_label_files_keeps_every_box(ds: Path, tmp_path: Path) -> None:
    labels = ds / "labels" / "train"
    (labels / "train_00001.txt").write_bytes(
        "\ufeff0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n".encode()
    )
    (ds / "labels" / "val" / "val_00000.txt").write_bytes("\ufeff".encode())
    before = digest(ds)
    code, output = label(ds, tmp_path / "masks")
    assert code == 0, output
    assert "label issues: 0" in output
    mask = read_mask(tmp_path / "masks" / "train" / "train_00001.png")
    assert {1, 2} <= set(np.unique(mask).tolist())  # both boxes of the BOM file survived
    assert digest(ds) == before
    assert len(parse_label_text("\ufeff0 0.5 0.5 0.2 0.2\n", 2)) == 1


def test_decompression_bomb_is_skipped_by_label_and_predict(
    ds: Path, tmp_path: Path, model_dir: Path
) -> None:
    bomb = ds / "images" / "train" / "bomb.png"
    bomb.write_bytes(png_header_only(40_000, 40_000))
    with pytest.raises(ImageReadError, match=r"bomb\.png"):
        read_image(bomb)
    before = digest(ds)
    code, output = label(ds, tmp_path / "masks")
    assert code == 0, output
    assert f"skipped: {bomb}" in output and "images skipped: 1" in output
    assert (tmp_path / "masks" / "train" / "train_00000.png").is_file()
    code, output = invoke("predict", model_dir, ds / "images" / "train", "--out", tmp_path / "p")
    assert code == 0, output
    assert f"skipped {bomb}" in output and "2 masks written" in output
    assert digest(ds) == before


def test_same_stem_images_get_distinct_masks_in_label_train_and_predict(
    ds: Path, tmp_path: Path, model_dir: Path
) -> None:
    train = ds / "images" / "train"
    Image.open(train / "train_00000.jpg").save(train / "train_00000.png")  # same stem
    before = digest(ds)
    masks = tmp_path / "masks"
    code, output = label(ds, masks)
    assert code == 0, output
    names = sorted(p.name for p in (masks / "train").glob("*.png"))
    assert names == ["train_00000.jpg.png", "train_00000.png.png", "train_00001.png"]
    # training pairs every image with its own mask
    data = PseudoMaskDataset(ds / "data.yaml", masks, "train", imgsz=28)
    assert sorted((i.name, m.name) for i, m in data.samples) == [
        ("train_00000.jpg", "train_00000.jpg.png"),
        ("train_00000.png", "train_00000.png.png"),
        ("train_00001.jpg", "train_00001.png"),
    ]
    code, output = invoke("predict", model_dir, train, "--out", tmp_path / "pred")
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == names
    assert digest(ds) == before


def test_label_file_without_image_is_reported_once(ds: Path, tmp_path: Path) -> None:
    ghost = ds / "labels" / "train" / "ghost.txt"
    ghost.write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    (ds / "labels" / "train" / "classes.txt").write_text("dirt\ndamage\n", encoding="utf-8")
    code, output = label(ds, tmp_path / "masks")
    assert code == 0, output
    assert f"1 label file without an image, e.g. {ghost}" in output
    assert load_data_yaml(ds / "data.yaml").label_files_without_image("val") == []


def test_photos_of_a_type_it_does_not_read_are_named_not_just_their_labels(
    ds: Path, tmp_path: Path
) -> None:
    """An iPhone photo's boxes were reported only as a label file without an image."""
    (ds / "images" / "train" / "phone.HEIC").write_bytes(b"heif")
    (ds / "labels" / "train" / "phone.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    code, output = label(ds, tmp_path / "masks")
    assert code == 0, output
    text = " ".join(output.split())
    assert "1 label file without an image" in text
    assert "1 file of image types b2p does not take left out (1 .heic)" in text


def test_jpeg_suffixes_are_taken_and_a_heic_named_alone_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    from boxes2pixels.io import list_images, unsupported_images

    for name in ("a.jfif", "b.JPE", "c.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="JPEG")
    (tmp_path / "d.heic").write_bytes(b"heif")
    assert [p.name for p in list_images(tmp_path)] == ["a.jfif", "b.JPE", "c.jpg"]
    assert read_image(tmp_path / "a.jfif").shape == (8, 8, 3)
    assert unsupported_images([tmp_path, tmp_path / "c.jpg"]) == {".heic": 1}
    with pytest.raises(ImageReadError, match=r"\.heic is not a type b2p reads: convert it"):
        read_image(tmp_path / "d.heic")


def test_rerun_removes_temp_files_left_by_a_kill(ds: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    assert label(ds, masks)[0] == 0
    stale = masks / "train" / ".train_00000.k1ll3d_x.tmp.png"
    fresh = masks / "train" / ".train_00001.w0rk1ng_.tmp.png"  # another shard still writing
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert label(ds, masks)[0] == 0
    assert not stale.exists() and fresh.exists()
    assert remove_stale_temps(masks, older_than=0) == [fresh]
    assert (masks / "manifest.json").is_file()


# ------------------------------------------------------------------- weights
def test_saved_weights_are_reproducible_and_carry_their_sha256(
    model_dir: Path, tmp_path: Path, make_student: Callable
) -> None:
    from boxes2pixels.student import Student

    model = Student.from_pretrained(model_dir)
    model.save_pretrained(tmp_path / "again")
    first = (model_dir / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == first
    size = int.from_bytes(first[:8], "little")
    metadata = json.loads(first[8 : 8 + size])["__metadata__"]
    assert list(metadata) == sorted(metadata)  # written in one order, whatever the process
    assert metadata[SHA256_KEY] == verify_weights(model_dir / "model.safetensors")


def test_weights_saved_without_sha256_still_load(model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from boxes2pixels.student import Student

    legacy = Path(shutil.copytree(model_dir, tmp_path / "legacy"))
    state = load_file(str(legacy / "model.safetensors"))
    save_file(state, str(legacy / "model.safetensors"), metadata={"format": "pt"})
    assert verify_weights(legacy / "model.safetensors") is None
    Student.from_pretrained(legacy)


@pytest.mark.parametrize(
    "content", [b"hello world\n", b"some notes\nline two\n", b"", b"0 0.5 0.5 0.1 0.1\n"]
)
def test_text_file_as_torch_weights_is_a_checkpoint_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_torch_weights(path, "a SAM checkpoint")


def test_unreadable_image_in_training_names_it_even_from_a_worker(ds: Path) -> None:
    from torch.utils.data import DataLoader

    from boxes2pixels.cli._common import error_text
    from boxes2pixels.data.labelmaps import write_mask

    assert label(ds, ds / "masks")[0] == 0
    bomb = ds / "images" / "train" / "bomb.png"
    bomb.write_bytes(png_header_only(40_000, 40_000))
    write_mask(ds / "masks" / "train" / "bomb.png", np.zeros((4, 4), np.uint8))
    data = PseudoMaskDataset(ds / "data.yaml", ds / "masks", "train", imgsz=28)
    with pytest.raises(ImageReadError) as info:
        list(DataLoader(data, batch_size=1, num_workers=1))
    assert "Traceback" in str(info.value)  # how PyTorch re-raises a worker's error
    assert error_text(info.value).startswith(f"{bomb}: cannot read image")


def test_train_run_folder_is_repaired_after_a_kill_between_renames(
    tmp_path: Path, model_dir: Path
) -> None:
    from boxes2pixels.distill.checkpoint import clean_run_dir

    run = tmp_path / "run"
    shutil.copytree(model_dir, run / ".best.old")  # killed after best/ → .best.old
    (run / ".best.tmp").mkdir()
    (run / ".best.tmp" / "model.safetensors").write_bytes(b"")
    (run / ".last.k1ll3d_x.tmp.ckpt").write_bytes(b"")
    clean_run_dir(run)
    assert [p.name for p in run.iterdir()] == ["best"]
    assert digest(run / "best") == digest(model_dir)
