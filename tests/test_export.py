"""ONNX export: outputs match PyTorch, metadata travels, onnxruntime predicts like the student."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime  # noqa: F401
import onnxscript  # noqa: F401
import pytest
import torch

from boxes2pixels.errors import Boxes2PixelsError, CheckpointError
from boxes2pixels.export import export_onnx
from boxes2pixels.inference import load_model
from boxes2pixels.inference.onnx_model import OnnxStudent


@pytest.fixture(scope="module")
def student(make_student):
    torch.manual_seed(0)
    model = make_student(
        num_classes=3,
        class_names=["background", "dirt", "damage"],
        backbone="test_vit",
        backbone_mode="full",
        decoder_channels=32,
        imgsz=64,
    )
    # non-trivial BatchNorm statistics, so a wrong eval/train mode would show
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def static_onnx(student, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "student.onnx"
    result = export_onnx(student, path, imgsz=64, dynamic=False, heads="all")
    return path, result


def images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
        rng.integers(0, 256, (80, 40, 3), dtype=np.uint8),
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
    ]


def test_static_export_matches_pytorch(student, static_onnx) -> None:
    path, result = static_onnx
    assert result.outputs == ("fine", "binary")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-3
    runner = OnnxStudent(path)
    x = torch.randn(1, 3, 64, 64)
    got = runner.run(x.numpy())
    with torch.inference_mode():
        ref = student(x)
    for name in ("fine", "binary"):
        assert got[name].shape == tuple(ref[name].shape)
        assert np.abs(got[name] - ref[name].numpy()).max() <= 1e-3


def test_metadata_travels_in_the_file(static_onnx) -> None:
    runner = OnnxStudent(static_onnx[0])
    assert runner.class_names == ["background", "dirt", "damage"]
    assert runner.num_classes == 3
    assert runner.multiple == 16  # test_vit's patch size
    assert runner.imgsz == 64
    assert runner.config["backbone_init"] == "random"
    assert not runner.dynamic


def test_static_export_runs_its_own_size_only(static_onnx) -> None:
    runner = OnnxStudent(static_onnx[0])
    with pytest.raises(Boxes2PixelsError, match=r"student\.onnx: a static export takes 64×64"):
        runner.run(np.zeros((1, 3, 48, 64), dtype=np.float32))
    # called like the student, a smaller input is padded (and its logits cropped back)
    assert runner(torch.zeros(1, 3, 48, 64), heads=("fine",))["fine"].shape == (1, 3, 48, 64)


@pytest.mark.slow
def test_dynamic_export_predicts_like_the_student(student, tmp_path) -> None:
    path = tmp_path / "dyn.onnx"
    result = export_onnx(student, path, imgsz=64, dynamic=True)
    assert result.outputs == ("fine",)
    runner = OnnxStudent(path)
    assert runner.output_names == ["fine"]  # the binary head is not in the graph
    expected = student.predict(images(), batch_size=2)
    got = runner.predict(images(), batch_size=2)
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert (g == e).mean() >= 0.999


def test_b2p_predict_runtime_onnx_writes_the_same_masks_as_torch(student, tmp_path) -> None:
    from typer.testing import CliRunner

    from boxes2pixels.cli.main import app
    from boxes2pixels.data.labelmaps import read_mask
    from boxes2pixels.io import write_rgb

    for i, image in enumerate(images()):
        write_rgb(tmp_path / "photos" / f"img{i}.png", image)
    student.save_pretrained(tmp_path / "model")
    onnx_file = tmp_path / "model.onnx"
    export_onnx(student, onnx_file, imgsz=64, dynamic=True)
    runner = CliRunner()
    for runtime, model in (("torch", tmp_path / "model"), ("onnx", onnx_file)):
        args = ["predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / runtime)]
        result = runner.invoke(app, [*args, "--runtime", runtime, "--precision", "fp32"])
        assert result.exit_code == 0, result.output
    for i in range(len(images())):
        torch_mask = read_mask(tmp_path / "torch" / f"img{i}.png")
        onnx_mask = read_mask(tmp_path / "onnx" / f"img{i}.png")
        assert torch_mask.shape == images()[i].shape[:2]
        assert (torch_mask == onnx_mask).mean() >= 0.999


def test_export_size_must_fit_patch(student, tmp_path) -> None:
    with pytest.raises(Boxes2PixelsError, match="not a multiple of the model's patch size 16"):
        export_onnx(student, tmp_path / "x.onnx", imgsz=60)
    assert not (tmp_path / "x.onnx").exists()


def test_foreign_or_missing_onnx_file(tmp_path) -> None:
    from onnx import TensorProto, helper

    with pytest.raises(CheckpointError, match="not found"):
        OnnxStudent(tmp_path / "none.onnx")
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match="no boxes2pixels metadata"):
        OnnxStudent(tmp_path / "foreign.onnx")


def test_load_model_and_cli_export(student, tmp_path) -> None:
    from typer.testing import CliRunner

    from boxes2pixels.cli.main import app

    student.save_pretrained(tmp_path / "run" / "best")
    assert type(load_model(tmp_path / "run", device="cpu")).__name__ == "Student"
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        app,
        ["export", str(tmp_path / "run"), "--format", "onnx", "--imgsz", "32", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "max |onnxruntime - PyTorch|" in result.output
    exported = OnnxStudent(out)
    assert exported.dynamic and exported.input_hw == (32, 32)  # dynamic unless --static
    assert exported.imgsz == 32  # --imgsz is the long side the file predicts at
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--format", "tflite"])
    assert bad.exit_code == 1
    assert "unknown export format 'tflite'" in bad.output


def test_baseline_export(tmp_path) -> None:
    from boxes2pixels.baselines import BaselineModel

    model = BaselineModel("unet", num_classes=3, encoder_init="random", imgsz=64)
    result = export_onnx(model, tmp_path / "unet.onnx", imgsz=64)
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-3
    assert OnnxStudent(tmp_path / "unet.onnx").multiple == 32


def test_failed_check_leaves_no_file(student, tmp_path) -> None:
    target = tmp_path / "bad.onnx"
    with pytest.raises(Boxes2PixelsError, match="differ from PyTorch"):
        # no difference passes a negative bound
        export_onnx(student, target, imgsz=32, dynamic=False, atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_dynamic_export_of_a_patch_14_student_serves_every_patch_multiple(
    make_student, tmp_path
) -> None:
    """Regression: with DINOv2's patch 14, sides that are odd multiples of 14 are not
    multiples of 4, so the decoder resizes its output; the graph must keep that resize."""
    model = make_student(backbone_mode="full", decoder_channels=32, imgsz=56).eval()
    path = tmp_path / "p14.onnx"
    export_onnx(model, path, imgsz=56, dynamic=True)  # its check also runs a 70×84 input
    runner = OnnxStudent(path)
    for h, w in ((42, 70), (98, 56)):
        x = torch.randn(1, 3, h, w)
        with torch.inference_mode():
            expected = model(x, heads=("fine",))["fine"].numpy()
        got = runner.run(x.numpy())["fine"]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-3
