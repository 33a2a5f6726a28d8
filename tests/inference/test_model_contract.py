"""The contract every segmentation model meets: Student, each baseline, the ONNX export run by
onnxruntime and by OpenVINO.

One shared tester (like segmentation_models_pytorch's ``tests/models/base.py``): each case
builds a tiny random model once, saves it the way its users do (``save_pretrained``, or
``export_onnx`` for the ONNX case), and every test runs on every case: the protocol, forward
at several sizes, the save/load round trip and prediction through ``load_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from boxes2pixels.baselines import BASELINES, BaselineModel
from boxes2pixels.inference import SegmentationModel, load_model

NAMES = ["background", "dirt", "damage"]
CASES = ["student", *BASELINES, "onnx"]


@dataclass
class Case:
    """A model under test and what saving it wrote.

    Attributes:
        model: the model the forward and protocol tests run on.
        reference: the PyTorch model that was saved (``model`` itself, except for ONNX).
        artefact: the saved folder, or the ``.onnx`` file.
        heads: the heads ``model(x)`` returns without a ``heads`` argument.
        atol: largest logit difference accepted after a round trip (0: identical).
        agreement: smallest fraction of equal pixels between the predictions of the
            reloaded model and ``reference``.
        runtime: the ``load_model`` runtime that loads ``artefact``.
    """

    model: Any
    reference: Any
    artefact: Path
    heads: set[str]
    atol: float = 0.0
    agreement: float = 1.0
    runtime: str = "auto"


def _student(make_student: Any) -> Any:
    torch.manual_seed(0)
    return make_student(
        class_names=NAMES, backbone="test_vit", backbone_mode="full", decoder_channels=32, imgsz=64
    ).eval()


def _build(name: str, folder: Path, make_student: Any) -> Case:
    if name in ("onnx", "openvino"):
        from boxes2pixels.export import export_onnx

        student = _student(make_student)
        path = folder / "student.onnx"
        export_onnx(student, path, imgsz=64, dynamic=True)
        exported = load_model(path, device="cpu", runtime=name)
        assert exported.runtime == name
        return Case(exported, student, path, {"fine"}, atol=1e-3, agreement=0.99, runtime=name)
    if name == "student":
        model = _student(make_student)
        heads = {"fine", "binary"}
    else:
        torch.manual_seed(0)
        model = BaselineModel(
            name, num_classes=3, class_names=NAMES, encoder_init="random", imgsz=64
        ).eval()
        heads = {"fine"}
    model.save_pretrained(folder / "best")
    return Case(model, model, folder, heads)


@pytest.fixture(scope="module", params=CASES)
def case(request: pytest.FixtureRequest, make_student: Any, tmp_path_factory: Any) -> Case:
    return _build(request.param, tmp_path_factory.mktemp(request.param), make_student)


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 70), (64, 30))]


def test_meets_the_protocol(case: Case) -> None:
    model = case.model
    assert isinstance(model, SegmentationModel)
    assert model.class_names == NAMES and model.num_classes == len(NAMES)
    assert len(model.mean) == len(model.std) == 3
    assert model.imgsz == 64 and model.imgsz % model.patch_size == 0
    assert model.random_backbone is True


def test_forward_at_several_sizes(case: Case) -> None:
    d = case.model.patch_size
    s = d * max(1, 32 // d)  # the smallest multiple of the divisor from 32 px: fast on a CPU
    for batch, (h, w) in ((1, (s, 2 * s)), (2, (s, s)), (1, (2 * s, s))):
        x = torch.randn(batch, 3, h, w)
        with torch.inference_mode():
            out = case.model(x)
            fine_only = case.model(x, heads=("fine",))
        assert set(out) == case.heads
        assert set(fine_only) == {"fine"}
        assert out["fine"].shape == (batch, len(NAMES), h, w)
        assert out["fine"].dtype == torch.float32
        if "binary" in out:
            assert out["binary"].shape == (batch, 2, h, w)
        assert torch.isfinite(out["fine"]).all()


def test_save_load_round_trip_keeps_the_logits(case: Case) -> None:
    loaded = load_model(case.artefact, device="cpu", runtime=case.runtime)
    assert type(loaded) is type(case.model)
    assert loaded.class_names == NAMES
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        got = loaded(x, heads=("fine",))["fine"]
        expected = case.reference(x, heads=("fine",))["fine"]
    if case.atol == 0:
        assert torch.equal(got, expected)
    else:
        assert (got - expected).abs().max() <= case.atol


def test_predict_through_load_model(case: Case) -> None:
    loaded = load_model(str(case.artefact), device="cpu", runtime=case.runtime)
    images = _images()
    preds = loaded.predict(images, batch_size=2)
    expected = case.reference.predict(images, batch_size=2)
    assert [p.shape for p in preds] == [i.shape[:2] for i in images]
    for pred, ref in zip(preds, expected, strict=True):
        assert pred.dtype == np.uint8 and pred.max() < len(NAMES)
        assert (pred == ref).mean() >= case.agreement


# ------------------------------------------------------------------ the segment() matrix
@pytest.mark.parametrize("precision", ["fp32", "auto"])
@pytest.mark.parametrize("tile", [False, True], ids=["whole", "tiled"])
def test_segment_matches_torch_fp32_on_a_non_square_photo(
    case: Case, tile: bool, precision: str
) -> None:
    """Every model kind and runtime, whole and tiled, fp32 and auto, against the PyTorch fp32
    result of the model that was saved; the plan records what ran."""
    from boxes2pixels.inference import choose_precision, plan_inference, segment

    photo = np.random.default_rng(1).integers(0, 256, (90, 150, 3), dtype=np.uint8)
    loaded = load_model(case.artefact, device="cpu", runtime=case.runtime)
    asked = {"tile": tile, "tile_size": 56 if tile else None}
    reference = segment(case.reference, photo, precision="fp32", **asked)
    plan = plan_inference(loaded, precision=precision, **asked)
    result = segment(loaded, photo, plan, batch_size=2)
    assert result.labels[0].shape == (90, 150) and result.labels[0].dtype == np.uint8
    assert plan.tiled is tile and result.windows == reference.windows
    auto = choose_precision(torch.device("cpu")).precision
    runs = "fp32" if precision == "fp32" or plan.runtime == "onnx" else auto
    assert plan.precision == runs
    agreement = (result.labels[0] == reference.labels[0]).mean()
    # fp32 is the same computation (ONNX: up to float rounding); bf16 may flip near-ties of
    # these random-weight models
    assert agreement >= (case.agreement if runs == "fp32" else 0.8)
