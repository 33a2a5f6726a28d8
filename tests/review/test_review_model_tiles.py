"""``b2p review --model`` runs a crop-trained model as ``b2p predict`` does: tiled at the
photo's own resolution, never on the shrunk photo (issue 20)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import boxes2pixels.inference.segmentation as segment_module
from boxes2pixels.inference import segment
from boxes2pixels.review import model_view

NAMES = ["background", "dirt", "damage"]


@pytest.fixture(scope="module")
def crop_model(make_student, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crop") / "student"
    make_student(
        num_classes=3, class_names=NAMES, backbone="test_vit", backbone_mode="full",
        decoder_channels=16, imgsz=28, crop_size=28,
    ).save_pretrained(folder)  # fmt: skip
    return folder


def test_model_view_of_a_crop_trained_model_is_the_tiled_prediction(crop_model: Path) -> None:
    from boxes2pixels.inference import load_model

    model = load_model(crop_model, device="cpu")
    photo = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    view = model_view(model, photo)
    tiled = segment(model, photo, tile=True, tile_size=28, precision="fp32", confidence=True)
    assert np.array_equal(view.labels, tiled.labels[0])
    assert tiled.confidence is not None and np.allclose(view.confidence, tiled.confidence[0])
    assert ((view.confidence > 1 / 3 - 1e-6) & (view.confidence <= 1 + 1e-6)).all()
    # tile=False does not turn it off: the model only ever saw native-resolution windows
    assert segment(model, photo, tile=False, precision="fp32").windows == tiled.windows > 1


def test_b2p_review_with_a_crop_trained_model_tiles(
    crop_model: Path, tmp_path: Path, invoke_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from boxes2pixels.data.synth import generate_dataset

    generate_dataset(tmp_path / "ds", train=2, val=1, test=0, size=(96, 64), seed=0)
    code, output = invoke_cli("label", tmp_path / "ds" / "data.yaml", "--teacher", "box",
                              "--out", tmp_path / "masks", "-q")  # fmt: skip
    assert code == 0, output
    tiles: list[tuple[int, int]] = []
    real = segment_module.predict_tiled

    def spy(model, image, **kwargs):
        tiles.append(image.shape[:2])
        return real(model, image, **kwargs)

    monkeypatch.setattr(segment_module, "predict_tiled", spy)
    code, output = invoke_cli("review", tmp_path / "ds" / "data.yaml", "--masks",
                              tmp_path / "masks", "--out", tmp_path / "review", "--model",
                              crop_model, "--split", "train")  # fmt: skip
    assert code == 0, output
    assert tiles and all(shape == (64, 96) for shape in tiles)  # each photo at its own size
