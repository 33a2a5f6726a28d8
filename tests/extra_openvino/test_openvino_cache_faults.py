"""Issue 19, OpenVINO caches: a corrupted compiled blob, a truncated converted encoder and an
``.onnx`` file replaced by another model of the same size and time are each noticed, rebuilt
and never served: the output equals a fresh, uncached run's."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from boxes2pixels.export import export_onnx
from boxes2pixels.inference.openvino_cache import (
    MANIFEST,
    CacheMismatch,
    cache_dir,
    compile_cached,
    compile_config,
    import_openvino,
    verify_folder,
)
from boxes2pixels.inference.openvino_model import OpenVinoStudent

NAMES = ["background", "dirt", "damage"]
X = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def two_files(make_student, tmp_path_factory) -> tuple[Path, Path]:
    """Two exported students of one architecture, different weights, the same file size."""
    folder = tmp_path_factory.mktemp("ov-faults")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        student = make_student(
            class_names=NAMES, backbone="test_vit", backbone_mode="full", decoder_channels=32,
            imgsz=64,
        ).eval()  # fmt: skip
        paths.append(folder / f"seed{seed}.onnx")
        export_onnx(student, paths[-1], imgsz=64)
    assert paths[0].stat().st_size == paths[1].stat().st_size
    return paths[0], paths[1]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache of this test's own."""
    monkeypatch.setenv("B2P_CACHE_DIR", str(tmp_path / "cache"))
    return cache_dir()


def uncached(path: Path) -> np.ndarray:
    """The fine logits of ``path`` for ``X``, compiled without any cache."""
    compiled = import_openvino().Core().compile_model(str(path), "CPU", compile_config("fp32"))
    return np.asarray(compiled(X, share_inputs=False, share_outputs=False)[0])


def blobs(cache: Path) -> list[Path]:
    return sorted((cache / "compiled").rglob("*.blob"))


def test_a_corrupted_compiled_blob_is_rebuilt_not_served(two_files, cache, caplog) -> None:
    path = two_files[0]
    fresh = uncached(path)
    assert np.array_equal(OpenVinoStudent(path).run(X)["fine"], fresh)
    [blob] = blobs(cache)
    assert MANIFEST in os.listdir(blob.parent)
    data = bytearray(blob.read_bytes())
    middle = len(data) // 2  # the weights: OpenVINO itself loads such a blob without a word
    data[middle : middle + 4096] = bytes(b ^ 0x5A for b in data[middle : middle + 4096])
    blob.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, "boxes2pixels"):
        again = OpenVinoStudent(path).run(X)["fine"]
    assert np.array_equal(again, fresh)
    [warning] = caplog.messages
    assert str(blob) in warning and "compiling" in warning
    assert [p.name for p in blobs(cache)] == [blob.name]  # rebuilt, and recorded again
    assert list(verify_folder(blob.parent)) == [blob.name]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "boxes2pixels"):
        assert np.array_equal(OpenVinoStudent(path).run(X)["fine"], fresh)
    assert caplog.messages == []  # the rebuilt blob is trusted


def test_an_onnx_file_replaced_with_same_size_and_time_is_compiled_anew(
    two_files, cache, tmp_path
) -> None:
    first, second = two_files
    path = tmp_path / "model.onnx"
    shutil.copyfile(first, path)
    assert np.array_equal(OpenVinoStudent(path).run(X)["fine"], uncached(first))
    stat = path.stat()
    path.write_bytes(second.read_bytes())  # same file, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    fresh = uncached(second)
    assert not np.array_equal(fresh, uncached(first))
    assert np.array_equal(OpenVinoStudent(path).run(X)["fine"], fresh)
    assert len(blobs(cache)) == 2  # one per content, in folders of their own
    assert len({p.parent for p in blobs(cache)}) == 2


def test_cache_folders_are_verified_against_their_manifest(tmp_path, caplog) -> None:
    from boxes2pixels.inference.openvino_cache import clear_folder, record_folder

    folder = tmp_path / "entry"
    assert verify_folder(folder) == {}  # nothing cached yet
    folder.mkdir()
    (folder / "a.blob").write_bytes(b"0123456789")
    with pytest.raises(CacheMismatch, match=r"a\.blob: not recorded \(.*manifest\.json is missing"):
        verify_folder(folder)
    record_folder(folder)
    assert verify_folder(folder)["a.blob"]["size"] == 10
    (folder / "b.blob").write_bytes(b"x")
    with pytest.raises(CacheMismatch, match=r"b\.blob: not recorded"):
        verify_folder(folder)
    (folder / "b.blob").unlink()
    (folder / "a.blob").write_bytes(b"012345678")
    with pytest.raises(CacheMismatch, match=r"a\.blob: 9 bytes where 10 were written"):
        verify_folder(folder)
    (folder / "a.blob").unlink()
    with pytest.raises(CacheMismatch, match=r"a\.blob: recorded in .* but missing"):
        verify_folder(folder)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(CacheMismatch, match=r"manifest\.json: unreadable"):
        verify_folder(folder)
    clear_folder(folder)
    assert list(folder.iterdir()) == [] and verify_folder(folder) == {}


def test_a_cached_blob_openvino_cannot_load_is_deleted_and_compiled_again(
    two_files, cache, caplog
) -> None:
    from boxes2pixels.errors import CheckpointError

    path = two_files[0]
    core = import_openvino().Core()
    key = "0" * 64
    compile_cached(core, path, "fp32", None, key)
    [blob] = blobs(cache)
    calls = []

    class FailsOnCachedBlob:
        """A core whose first load of the cached blob fails, as a blob of another build's."""

        def compile_model(self, *args):
            calls.append(sorted(p.name for p in blob.parent.iterdir()))
            if len(calls) == 1:
                raise RuntimeError("cannot import the blob\nsecond line")
            return core.compile_model(*args)

    with caplog.at_level(logging.WARNING, "boxes2pixels"):
        compiled = compile_cached(FailsOnCachedBlob(), path, "fp32", None, key)
    assert calls == [[blob.name, MANIFEST], []]  # deleted before the second compile
    assert np.array_equal(compiled(X)[0], uncached(path))
    [warning] = caplog.messages
    assert "cannot load the cached compiled model (cannot import the blob)" in warning
    assert list(verify_folder(blob.parent)) == [blob.name]
    broken = path.parent / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"broken\.onnx: OpenVINO cannot compile it"):
        compile_cached(core, broken, "fp32", None, "1" * 64)


def test_a_truncated_converted_encoder_is_converted_again(sam_checkpoint, cache, caplog) -> None:
    from boxes2pixels.teachers import load_teacher

    options = dict(checkpoint=str(sam_checkpoint("vit_t")), device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 60, 50], [70, 20, 150, 85]], np.float32)
    fresh = load_teacher("mobile-sam", runtime="openvino", **options).segment_scored(image, boxes)
    [folder] = (cache / "encoders").iterdir()
    assert sorted(os.listdir(folder)) == ["encoder.bin", "encoder.xml", MANIFEST]
    weights = folder / "encoder.bin"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:
        fh.truncate(size // 2)
    shutil.rmtree(cache / "compiled")  # as for another precision: OpenVINO reads the .bin
    with caplog.at_level(logging.WARNING, "boxes2pixels"):
        got = load_teacher("mobile-sam", runtime="openvino", **options).segment_scored(image, boxes)
    assert np.array_equal(got.masks, fresh.masks)
    assert np.array_equal(got.predicted_iou, fresh.predicted_iou)
    [warning] = caplog.messages
    assert f"{weights}: {size // 2} bytes where {size} were written" in warning
    assert weights.stat().st_size == size and len(verify_folder(folder)) == 2
