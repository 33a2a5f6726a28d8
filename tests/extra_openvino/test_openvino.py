"""The OpenVINO runtime of exported files: same logits as PyTorch at fp32, bf16 on request,
chosen by ``runtime auto`` on the CPU, tiling at the exported size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.errors import Boxes2PixelsError
from boxes2pixels.export import export_onnx
from boxes2pixels.inference import load_model
from boxes2pixels.inference.onnx_model import OnnxStudent
from boxes2pixels.inference.openvino_model import OpenVinoStudent
from boxes2pixels.io import write_rgb

NAMES = ["background", "dirt", "damage"]


def without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if OpenVINO were not installed. Its module stays loaded: hiding it from
    ``sys.modules`` while OpenVINO objects are alive crashes the interpreter later."""
    from boxes2pixels.inference import openvino_cache, openvino_model

    def missing() -> None:
        raise Boxes2PixelsError(openvino_cache.OPENVINO_INSTALL_HINT)

    for module in (openvino_cache, openvino_model):
        monkeypatch.setattr(module, "import_openvino", missing)


@pytest.fixture(scope="module")
def student(make_student):
    torch.manual_seed(0)
    return make_student(
        class_names=NAMES, backbone="test_vit", backbone_mode="full", decoder_channels=32,
        imgsz=64,
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def static_file(student, tmp_path_factory):
    path = tmp_path_factory.mktemp("ov") / "static.onnx"
    export_onnx(student, path, imgsz=64, dynamic=False)
    return path


def test_fp32_matches_pytorch_and_bf16_runs_on_request(student, static_file) -> None:
    model = OpenVinoStudent(static_file)
    assert (model.runtime, model.precision, model.class_names) == ("openvino", "fp32", NAMES)
    assert model.batch == 1 and not model.dynamic
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        ref = student(x, heads=("fine",))["fine"].numpy()
    fp32 = model.run(x.numpy())["fine"]
    assert fp32.shape == ref.shape and np.abs(fp32 - ref).max() <= 1e-3
    bf16 = model.run(x.numpy(), precision="bf16")["fine"]
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    assert np.abs(bf16 - ref).max() <= 0.05 * np.abs(ref).max()  # bf16: 8 mantissa bits
    assert not np.array_equal(bf16, fp32)  # another precision really ran
    assert set(model._compiled) == {"fp32", "bf16"}
    with pytest.raises(Boxes2PixelsError, match="without --static"):
        model.run(np.zeros((1, 3, 48, 64), np.float32))


def test_compiled_models_are_cached_for_the_next_load(static_file, tmp_path, monkeypatch) -> None:
    from boxes2pixels.inference.openvino_cache import cache_dir, compile_config

    monkeypatch.setenv("B2P_CACHE_DIR", str(tmp_path / "cache"))
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    model = OpenVinoStudent(static_file)
    first = model.run(x)["fine"]
    blobs = list((cache_dir() / "compiled").rglob("*.blob"))
    assert [p.parent.parent.name for p in blobs] == ["fp32-all-threads"]  # then the content
    written = blobs[0].stat().st_mtime_ns
    again = OpenVinoStudent(static_file).run(x)["fine"]  # read from the cache, not a new blob
    assert list((cache_dir() / "compiled").rglob("*.blob")) == blobs
    assert blobs[0].stat().st_mtime_ns == written
    assert np.array_equal(first, again)
    # fp32 then bf16 in one process: the bf16 model is compiled for bf16, in its own folder
    bf16 = model.run(x, precision="bf16")["fine"]
    assert not np.array_equal(bf16, first)
    assert len(list((cache_dir() / "compiled").rglob("*.blob"))) == 2
    (tmp_path / "file").write_text("in the way")
    monkeypatch.setenv("B2P_CACHE_DIR", str(tmp_path / "file"))
    assert "CACHE_DIR" not in compile_config("fp32")  # no cache, still runs
    assert np.array_equal(OpenVinoStudent(static_file).run(x)["fine"], first)


def test_runtime_auto_prefers_openvino_on_the_cpu(onnx_file, tmp_path, monkeypatch) -> None:
    assert isinstance(load_model(onnx_file, device="cpu"), OpenVinoStudent)
    assert isinstance(load_model(onnx_file, device="cpu", runtime="onnx"), OnnxStudent)
    with pytest.raises(Boxes2PixelsError, match="runs on the CPU"):
        load_model(onnx_file, device="cuda", runtime="openvino")
    with pytest.raises(Boxes2PixelsError, match=r"needs an \.onnx file"):
        load_model(tmp_path, runtime="openvino")
    with pytest.raises(Boxes2PixelsError, match="not runtime torch"):
        load_model(OpenVinoStudent(onnx_file), runtime="torch")
    without_openvino(monkeypatch)
    assert isinstance(load_model(onnx_file, device="cpu"), OnnxStudent)
    with pytest.raises(Boxes2PixelsError, match=r"pip install 'boxes2pixels\[openvino\]'"):
        load_model(onnx_file, runtime="openvino")


def test_b2p_predict_tiles_an_exported_file_at_its_size(student, static_file, tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    write_rgb(tmp_path / "photos" / "big.png", image)
    student.save_pretrained(tmp_path / "model")
    runner = CliRunner()
    outs = {}
    for model, runtime in ((tmp_path / "model", "torch"), (static_file, "openvino")):
        args = ["predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / runtime)]
        args += ["--tile", "--tile-size", "64", "--runtime", runtime, "--precision", "fp32"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outs[runtime] = read_mask(tmp_path / runtime / "big.png")
    assert outs["torch"].shape == image.shape[:2]
    assert (outs["torch"] == outs["openvino"]).mean() >= 0.999
    # a window larger than the file takes is resolved from its metadata, not refused
    args = ["predict", str(static_file), str(tmp_path / "photos"), "--out", str(tmp_path / "x")]
    result = runner.invoke(app, [*args, "--tile", "--tile-size", "96", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_mask(tmp_path / "x" / "big.png"), outs["openvino"])
    ran = json.loads((tmp_path / "x" / "b2p_predict.json").read_text())["settings"]["ran"]
    assert (ran["tile_size"], ran["runtime"], ran["precision"]) == (64, "openvino", "fp32")


# ----------------------------------------------------------------- the SAM teachers' encoder
def test_mobile_sam_encoder_in_openvino_matches_pytorch_and_is_cached(
    sam_checkpoint, tmp_path, monkeypatch
) -> None:
    from boxes2pixels.inference.openvino_cache import cache_dir
    from boxes2pixels.teachers import load_teacher, openvino_encoder

    monkeypatch.setenv("B2P_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = str(sam_checkpoint("vit_t"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 60, 50], [70, 20, 150, 85]], np.float32)
    options = dict(checkpoint=ckpt, device="cpu", precision="fp32")
    torch_teacher = load_teacher("mobile-sam", runtime="torch", **options)
    ov_teacher = load_teacher("mobile-sam", runtime="openvino", **options)
    assert (torch_teacher.runtime, ov_teacher.runtime) == ("torch", "openvino")
    assert ov_teacher.describe()["options"]["runtime"] == "openvino"
    [converted] = (cache_dir() / "encoders").iterdir()
    assert sorted(p.name for p in converted.iterdir()) == [
        "encoder.bin",
        "encoder.xml",
        "manifest.json",
    ]
    assert len(list((cache_dir() / "compiled").rglob("*.blob"))) == 1  # the compiled encoder
    expected, got = (
        torch_teacher.segment_scored(image, boxes),
        ov_teacher.segment_scored(image, boxes),
    )
    assert (expected.masks == got.masks).mean() >= 0.999
    assert np.allclose(expected.predicted_iou, got.predicted_iou, atol=1e-3)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(openvino_encoder.subprocess, "run", no_conversion)
    again = load_teacher("mobile-sam", runtime="openvino", **options)
    assert np.array_equal(again.segment(image, boxes), got.masks)


def test_training_workers_after_the_openvino_encoder_leave_torch_working(tmp_path) -> None:
    """Meant to run after the MobileSAM test above, in the same process (the crash needed
    OpenVINO to have run that encoder). Loader workers forked from this process, one of
    which fails, crashed the interpreter in the next PyTorch convolution (DeepLabV3's); the
    loaders now start them from a fork server. Run alone, it checks the loader's errors."""
    from torch.utils.data import DataLoader

    from boxes2pixels.baselines import BaselineModel
    from boxes2pixels.data.dataset import PseudoMaskDataset
    from boxes2pixels.data.labelmaps import write_mask
    from boxes2pixels.data.synth import generate_dataset
    from boxes2pixels.distill.loop import worker_context
    from boxes2pixels.errors import ImageReadError

    ds = tmp_path / "ds"
    generate_dataset(ds, train=2, val=1, test=0, size=(96, 64), seed=0)
    runner = CliRunner()
    label = ["label", str(ds / "data.yaml"), "--teacher", "box", "--out", str(ds / "masks")]
    assert runner.invoke(app, [*label, "-q"]).exit_code == 0
    (ds / "images" / "train" / "bad.png").write_bytes(b"not a png")
    write_mask(ds / "masks" / "train" / "bad.png", np.zeros((4, 4), np.uint8))
    args = ["train", str(ds / "data.yaml"), "--masks", str(ds / "masks"), "--out",
            str(tmp_path / "run"), "--epochs", "1", "--imgsz", "32", "--batch", "1",
            "--backbone", "test_vit", "--backbone-init", "random", "--backbone-mode", "full",
            "--device", "cpu", "--workers", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "bad.png" in result.output, result.output
    assert worker_context([], 1).get_start_method() == "forkserver"
    assert worker_context([], 0) is None
    data = PseudoMaskDataset(ds / "data.yaml", ds / "masks", "train", imgsz=32)
    loader = DataLoader(
        data, batch_size=1, num_workers=1, multiprocessing_context=worker_context(data, 1)
    )
    with pytest.raises(ImageReadError):  # a bare loader with the same context
        list(loader)
    model = BaselineModel("deeplabv3", num_classes=3, encoder_init="random").eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 70, 45))["fine"].shape == (2, 3, 70, 45)


def test_encoder_runtime_choice_and_errors(sam_checkpoint, teacher_checkpoint, monkeypatch) -> None:
    from boxes2pixels.errors import ConfigError
    from boxes2pixels.teachers import load_teacher
    from boxes2pixels.teachers.sam2 import Sam2Teacher
    from boxes2pixels.teachers.sam_hq import SamHqTeacher

    assert SamHqTeacher.encoder_runtimes == Sam2Teacher.encoder_runtimes == ("torch",)
    ckpt = str(sam_checkpoint("vit_t"))
    with pytest.raises(ConfigError, match="unknown runtime 'onnx'"):
        load_teacher("mobile-sam", checkpoint=ckpt, device="cpu", runtime="onnx")
    sam2 = str(teacher_checkpoint("sam2", "tiny"))
    assert load_teacher("sam2", checkpoint=sam2, device="cpu").runtime == "torch"
    with pytest.raises(ConfigError, match="cannot run its image encoder with OpenVINO"):
        load_teacher("sam2", checkpoint=sam2, device="cpu", runtime="openvino")
    without_openvino(monkeypatch)
    teacher = load_teacher("mobile-sam", checkpoint=ckpt, device="cpu", precision="fp32")
    assert teacher.runtime == "torch"  # auto falls back to PyTorch
    with pytest.raises(Boxes2PixelsError, match=r"boxes2pixels\[openvino\]"):
        load_teacher("mobile-sam", checkpoint=ckpt, device="cpu", runtime="openvino")


def test_profile_has_an_openvino_row(make_student) -> None:
    from boxes2pixels.profile import profile_models

    student = make_student(backbone="test_vit", backbone_mode="full", decoder_channels=32, imgsz=32)
    rows = profile_models(
        "student,student-openvino", imgsz=32, repeats=1, warmup=0, student=student
    )
    assert [(r.name, r.runtime, r.precision) for r in rows] == [
        ("student", "torch", "fp32"),
        ("student-openvino", "openvino", "fp32"),
    ]
    assert rows[1].gmacs == pytest.approx(rows[0].gmacs) and rows[1].latency_ms > 0
    with pytest.raises(Boxes2PixelsError, match="fp32 and bf16 on the CPU only"):
        profile_models("student-openvino", imgsz=32, precision="fp16", student=student)
