"""Every output file is written in full or not at all, and says so (issue 19): a full disk
or ``ulimit -f`` never leaves a truncated file behind a zero exit code."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boxes2pixels import atomic
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.errors import DatasetError, ImageReadError, WriteError
from boxes2pixels.io import write_rgb, write_text_atomic


def _noise(h: int = 120, w: int = 160) -> np.ndarray:
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


def test_pil_itself_truncates_a_jpeg_silently_at_the_size_limit(
    tmp_path: Path, file_size_limit: Callable
) -> None:
    """Why every image is encoded in memory first: PIL's encoder ignores a short write."""
    image = Image.fromarray(_noise())
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    full = len(buf.getvalue())
    silent = 0
    for limit in range(1000, full, 97):
        target = tmp_path / "x.jpg"
        try:
            with file_size_limit(limit):
                image.save(target)
        except OSError:
            continue
        silent += target.stat().st_size != full
    assert silent > 0


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_write_rgb_is_complete_or_an_error_at_every_size_limit(
    tmp_path: Path, suffix: str, file_size_limit: Callable
) -> None:
    image = _noise()
    reference = tmp_path / f"ref{suffix}"
    write_rgb(reference, image)
    full = reference.read_bytes()
    errors = 0
    for limit in range(1000, len(full) + 200, 97):
        target = tmp_path / f"out{suffix}"
        target.unlink(missing_ok=True)
        try:
            with file_size_limit(limit):
                write_rgb(target, image)
        except WriteError as exc:
            errors += 1
            assert str(target) in str(exc) and "size limit" in str(exc)
            assert not target.exists()
            continue
        assert target.read_bytes() == full, limit
    assert errors > 0
    assert not [p for p in os.listdir(tmp_path) if p.endswith(f".tmp{suffix}")]


def test_write_text_checks_the_bytes_that_reached_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    class ShortFile(io.FileIO):
        def write(self, data):  # a file system that takes only half and reports success
            return super().write(bytes(data)[: len(data) // 2]) and len(data)

    # only the atomic writer's own open() is replaced
    monkeypatch.setattr(atomic, "open", lambda path, mode: ShortFile(path, "w"), raising=False)
    with pytest.raises(WriteError, match=r"report\.json"):
        write_text_atomic(target, "x" * 10_000)
    monkeypatch.undo()
    assert target.read_text() == "old"


def test_predict_overlays_under_a_file_size_limit_are_whole_or_an_error(
    tmp_path: Path, model_dir_for_faults: Path, invoke_cli, tree_digest, file_size_limit
) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    Image.fromarray(_noise(200, 320)).save(images / "blade.png")
    code, output = invoke_cli("predict", model_dir_for_faults, images, "--out", tmp_path / "ref",
                              "--overlay", "--precision", "fp32")  # fmt: skip
    assert code == 0, output
    photos = tree_digest(images)
    reference = {p.name: p.read_bytes() for p in (tmp_path / "ref").rglob("*") if p.is_file()}
    overlay = next(n for n in reference if n.endswith("_overlay.jpg"))
    outcomes = set()
    for i, limit in enumerate(range(2000, len(reference[overlay]), 1500)):
        out = tmp_path / f"p{i}"
        with file_size_limit(limit):
            code, output = invoke_cli("predict", model_dir_for_faults, images, "--out", out,
                                      "--overlay", "--precision", "fp32")  # fmt: skip
        outcomes.add(code)
        if code == 0:  # the limit was not reached by any file: every file is whole
            for path in out.rglob("*"):
                if path.is_file() and path.name in reference and path.suffix != ".json":
                    assert path.read_bytes() == reference[path.name], path
        else:
            assert "size limit" in output and "_overlay.jpg" in output
            assert not (out / overlay).exists()
    assert 1 in outcomes
    assert tree_digest(images) == photos


@pytest.fixture(scope="module")
def model_dir_for_faults(tmp_path_factory: pytest.TempPathFactory, make_student) -> Path:
    folder = tmp_path_factory.mktemp("model") / "student"
    make_student(
        num_classes=3, class_names=["background", "dirt", "damage"], backbone="test_vit",
        backbone_mode="full", decoder_channels=32, imgsz=64,
    ).save_pretrained(folder)  # fmt: skip
    return folder


# ------------------------------------------------------------------------ 16-bit masks
def _mask16(path: Path, values: np.ndarray) -> None:
    Image.fromarray(values.astype(np.uint16)).save(path)


def test_a_16_bit_mask_with_values_above_255_is_refused_naming_the_file(tmp_path: Path) -> None:
    values = np.zeros((8, 8), np.uint16)
    values[2:4, 2:4] = 256  # wrapped to 8 bits this would read as background
    values[5, 5] = 512
    _mask16(tmp_path / "m.png", values)
    with pytest.raises(ImageReadError, match=r"m\.png.*16-bit.*512"):
        read_mask(tmp_path / "m.png")


def test_a_16_bit_mask_whose_values_fit_is_read_exactly(tmp_path: Path) -> None:
    values = np.zeros((8, 8), np.uint16)
    values[1, 1], values[2, 2] = 2, 255
    _mask16(tmp_path / "m.png", values)
    assert np.array_equal(read_mask(tmp_path / "m.png", num_classes=3), values.astype(np.uint8))
    with pytest.raises(DatasetError, match=r"m\.png.*value 2.*0\.\.1"):
        read_mask(tmp_path / "m.png", num_classes=2)


def test_training_on_a_16_bit_mask_stops_naming_it(
    tmp_path: Path, make_square_dataset, invoke_cli, tree_digest
) -> None:
    ds = make_square_dataset(tmp_path / "ds", n_train=2, n_val=1, size=28)
    bad = ds / "masks" / "train" / "im0.png"
    _mask16(bad, read_mask(bad).astype(np.uint16) * 256)
    before = tree_digest(ds)
    code, output = invoke_cli(
        "train", ds / "data.yaml", "--masks", ds / "masks", "--out", tmp_path / "run",
        "--epochs", "1", "--imgsz", "28", "--batch", "2", "--backbone-init", "random",
        "--device", "cpu", "--workers", "0",
    )  # fmt: skip
    assert code == 1
    assert str(bad) in output and "16-bit" in output
    assert tree_digest(ds) == before
    shutil.rmtree(tmp_path / "run", ignore_errors=True)
