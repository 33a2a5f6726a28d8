"""Baselines: smp models behind the student's interface, explicit encoder initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import segmentation_models_pytorch  # noqa: F401  (the dev extra installs it)
import torch

from boxes2pixels.baselines import (
    BASELINES,
    BaselineModel,
    baseline_spec,
    nearest_multiple,
    read_baseline_config,
)
from boxes2pixels.errors import (
    Boxes2PixelsError,
    CheckpointError,
    WeightsUnavailableError,
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(518, 512), (512, 512), (500, 512), (543, 544), (48, 32), (10, 32), (80, 64)],
    ids=["518", "exact", "up", "up-543", "tie-goes-down", "tiny", "tie-80"],
)
def test_nearest_multiple(size: int, expected: int) -> None:
    assert nearest_multiple(size, 32) == expected


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_forward_any_size_returns_fine_logits(name: str) -> None:
    model = BaselineModel(name, num_classes=3, encoder_init="random").eval()
    x = torch.randn(2, 3, 70, 45)  # not multiples of 32: padded inside, cropped back
    with torch.inference_mode():
        out = model(x)
    assert set(out) == {"fine"}
    assert out["fine"].shape == (2, 3, 70, 45)
    assert torch.isfinite(out["fine"]).all()


def test_backward_reaches_encoder() -> None:
    model = BaselineModel("unet", num_classes=2, encoder_init="random").train()
    out = model(torch.randn(2, 3, 64, 64))["fine"]
    out.mean().backward()
    grads = [p.grad for p in model.net.encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_unknown_name_and_init_are_errors() -> None:
    with pytest.raises(Boxes2PixelsError, match="unknown baseline 'pspnet'"):
        baseline_spec("pspnet")
    with pytest.raises(Boxes2PixelsError, match="unknown encoder_init"):
        BaselineModel("unet", encoder_init="pretrained")
    with pytest.raises(Boxes2PixelsError, match="only used with encoder_init='imagenet'"):
        BaselineModel("unet", encoder_init="random", encoder_weights="w.safetensors")


def test_imagenet_unavailable_raises_never_random(monkeypatch: pytest.MonkeyPatch) -> None:
    import segmentation_models_pytorch.encoders as encoders
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args: object, **kwargs: object) -> str:
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr(encoders, "hf_hub_download", offline)
    with pytest.raises(WeightsUnavailableError, match=r"smp-hub/resnet34\.imagenet"):
        BaselineModel("unet", encoder_init="imagenet")


def test_local_encoder_weights_load_in_smp_format(tmp_path) -> None:
    from safetensors.torch import save_file

    source = BaselineModel("unet", num_classes=3, encoder_init="random")
    weights = tmp_path / "model.safetensors"  # the file smp-hub/resnet34.imagenet holds
    save_file({k: v.contiguous() for k, v in source.net.encoder.state_dict().items()}, weights)
    model = BaselineModel("unet", num_classes=3, encoder_init="imagenet", encoder_weights=weights)
    for key, value in source.net.encoder.state_dict().items():
        assert torch.equal(model.net.encoder.state_dict()[key], value), key
    assert model.encoder_init == "imagenet"


def test_local_encoder_weights_that_do_not_fit(tmp_path) -> None:
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"conv1.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        BaselineModel("unet", encoder_init="imagenet", encoder_weights=bad)
    with pytest.raises(CheckpointError, match="not found"):
        BaselineModel("unet", encoder_init="imagenet", encoder_weights=tmp_path / "none.pth")


def test_save_and_load_round_trip(tmp_path) -> None:
    model = BaselineModel(
        "unet", num_classes=3, class_names=["background", "dirt", "damage"], encoder_init="random"
    ).eval()
    model.save_pretrained(tmp_path / "m", metrics={"val_miou": 0.5})
    config = read_baseline_config(tmp_path / "m")
    assert config is not None and config["name"] == "unet"
    assert config["encoder_init"] == "random"
    loaded = BaselineModel.from_pretrained(tmp_path / "m")
    assert loaded.class_names == ["background", "dirt", "damage"]
    assert loaded.random_backbone  # the recorded encoder_init, not the rebuild's
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x)["fine"], model(x)["fine"])
    assert read_baseline_config(tmp_path) is None
    with pytest.raises(CheckpointError, match=r"no baseline config\.json"):
        BaselineModel.from_pretrained(tmp_path)


def test_predict_returns_label_maps_at_image_size() -> None:
    model = BaselineModel("unet", num_classes=3, encoder_init="random", imgsz=64)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (50, 90, 3), dtype=np.uint8),
        rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
    ]
    preds = model.predict(images, batch_size=2)
    assert [p.shape for p in preds] == [(50, 90), (40, 30)]
    assert all(p.dtype == np.uint8 and p.max() < 3 for p in preds)
    # the same as argmax of forward on the letterboxed image when no resize is needed
    from boxes2pixels.geometry import letterbox, normalize

    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    padded, _ = letterbox(image, 64, multiple=32)
    with torch.inference_mode():
        expected = model.eval()(normalize(padded[None], model.mean, model.std))["fine"].argmax(1)[0]
    assert np.array_equal(model.predict(image)[0], expected.numpy().astype(np.uint8))
