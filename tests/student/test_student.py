"""Tests of the student model: size, fidelity to the 12-block backbone, weights, Hub save/load."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

import boxes2pixels.student.backbone as backbone_module
from boxes2pixels.errors import CheckpointError, WeightsUnavailableError
from boxes2pixels.student import (
    RandomBackboneWarning,
    Student,
    default_feature_indices,
    letterbox,
    letterbox_mask,
    normalize,
    unletterbox_logits,
)

NAME = "vit_small_patch14_dinov2.lvd142m"


def _student(**kwargs) -> Student:
    if "backbone_weights" not in kwargs:
        kwargs.setdefault("backbone_init", "random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomBackboneWarning)
        return Student(**kwargs)


def _perturb_layerscale(model: torch.nn.Module) -> None:
    """Random LayerScale values, so every block changes its input noticeably."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".gamma"):
                param.uniform_(0.5, 1.5)


@pytest.fixture(scope="module")
def student() -> Student:
    torch.manual_seed(0)
    model = _student()
    _perturb_layerscale(model)
    return model.eval()


@pytest.fixture(scope="module")
def timm_full_state() -> dict[str, torch.Tensor]:
    """State dict of a randomly initialised 12-block timm DINOv2 ViT-S/14."""
    torch.manual_seed(1)
    model = timm.create_model(NAME, pretrained=False)
    _perturb_layerscale(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- size and compute
def test_paper_size_and_macs_at_518(student: Student) -> None:
    # DESIGN.md: 5.6 M trainable (2 %), about 20.5 M total, 33.3 G MACs at 518² (3 %).
    assert student.num_trainable_parameters == pytest.approx(5.6e6, rel=0.02)
    assert student.num_parameters == pytest.approx(20.5e6, rel=0.01)
    assert student.backbone.depth == 8
    assert student.backbone.original_depth == 12
    x = torch.zeros(1, 3, 518, 518)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = student(x)
    macs = counter.get_total_flops() / 2
    assert macs == pytest.approx(33.3e9, rel=0.03)
    assert out["fine"].shape == (1, 3, 518, 518)
    assert out["binary"].shape == (1, 2, 518, 518)


def test_outputs_identical_to_full_12_block_backbone(student: Student) -> None:
    full = timm.create_model(NAME, pretrained=False, dynamic_img_size=True).eval()
    result = full.load_state_dict(student.backbone.model.state_dict(), strict=False)
    assert sorted({k.split(".")[1] for k in result.missing_keys}) == ["10", "11", "8", "9"]
    assert result.unexpected_keys == []
    x = torch.randn(2, 3, 56, 70)
    with torch.inference_mode():
        features = full.forward_intermediates(
            x, indices=[1, 2, 4, 7], norm=True, intermediates_only=True, output_fmt="NCHW"
        )
        expected = student.decoder(features, x)
        got = student(x)
    assert set(got) == {"fine", "binary"}
    for key in got:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    # the deepest feature map really depends on the blocks (not a collapsed identity)
    assert not torch.allclose(features[0], features[-1], atol=1e-3)


# --------------------------------------------------------------------------- forward
def test_forward_non_square(student: Student) -> None:
    with torch.inference_mode():
        out = student(torch.randn(1, 3, 56, 84))
    assert out["fine"].shape == (1, 3, 56, 84)
    assert out["binary"].shape == (1, 2, 56, 84)
    assert torch.isfinite(out["fine"]).all()


@pytest.mark.parametrize("shape", [(1, 3, 57, 56), (1, 3, 56, 50)])
def test_forward_rejects_sides_not_multiple_of_patch(student: Student, shape) -> None:
    with pytest.raises(ValueError, match="multiples of the patch size 14"):
        student(torch.zeros(shape))


def test_forward_rejects_wrong_channels(student: Student) -> None:
    with pytest.raises(ValueError, match="N×3×H×W"):
        student(torch.zeros(1, 1, 56, 56))


# --------------------------------------------------------------------------- switches
def test_ablation_switches_change_outputs_and_parameters() -> None:
    student = _student(feature_indices=[0, 1])
    no_binary = _student(feature_indices=[0, 1], binary_head=False)
    no_detail = _student(feature_indices=[0, 1], detail_branch=False)
    x = torch.randn(1, 3, 28, 28)
    with torch.inference_mode():
        assert set(no_binary.eval()(x)) == {"fine"}
        assert set(no_detail.eval()(x)) == {"fine", "binary"}
    # binary head: Conv3×3 64→32 (no bias) + BN(32) + Conv1×1 32→2 with bias
    assert student.num_parameters - no_binary.num_parameters == 64 * 32 * 9 + 64 + 32 * 2 + 2
    # detail: Conv 3→24 + BN + Conv 24→32 + BN; mixer input shrinks by 32 channels
    detail = 3 * 24 * 9 + 48 + 24 * 32 * 9 + 64
    assert student.num_parameters - no_detail.num_parameters == detail + 32 * 64 * 9
    assert no_detail.describe()["detail_branch"] is False


def test_backbone_modes_choose_trainable_parameters(student: Student) -> None:
    trainable = {n for n, p in student.backbone.model.named_parameters() if p.requires_grad}
    assert "blocks.0.attn.qkv.bias" in trainable
    assert "blocks.3.norm1.weight" in trainable
    assert "norm.weight" in trainable
    assert "blocks.0.attn.qkv.weight" not in trainable
    assert "blocks.0.ls1.gamma" not in trainable
    assert all(n.endswith("bias") or "norm" in n for n in trainable)
    assert all(p.requires_grad for p in student.decoder.parameters())

    model = copy.deepcopy(student)
    model.backbone.set_mode("frozen")
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.backbone.set_mode("full")
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert model.num_trainable_parameters == model.num_parameters
    model.backbone.set_mode("bitfit", train_layerscale=True)
    assert model.backbone.model.blocks[0].ls1.gamma.requires_grad
    assert not model.backbone.model.blocks[0].attn.qkv.weight.requires_grad
    assert model.num_trainable_parameters == student.num_trainable_parameters + 8 * 2 * 384


def test_random_bitfit_warns_about_layerscale_and_full_mode_does_not() -> None:
    with pytest.warns(RandomBackboneWarning, match="backbone_mode='full'"):
        Student(backbone_init="random", feature_indices=[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomBackboneWarning)
        full = Student(backbone_init="random", backbone_mode="full", feature_indices=[0])
    assert full.num_trainable_parameters == full.num_parameters
    assert full.config["backbone_mode"] == "full"


def test_default_feature_indices_scale_with_depth() -> None:
    assert default_feature_indices(12) == (1, 2, 4, 7)
    assert default_feature_indices(24) == (3, 5, 9, 15)
    assert default_feature_indices(40) == (6, 9, 16, 26)


def test_other_timm_vit_by_name_with_registers() -> None:
    model = _student(backbone="vit_small_patch14_reg4_dinov2.lvd142m", num_classes=2)
    assert model.backbone.feature_indices == (1, 2, 4, 7)
    assert model.backbone.depth == 8
    assert model.class_names == ["background", "class_0"]
    with torch.inference_mode():
        out = model.eval()(torch.randn(1, 3, 42, 56))
    assert out["fine"].shape == (1, 2, 42, 56)


def test_explicit_feature_indices_prune_to_deepest() -> None:
    model = _student(feature_indices=[3, -12])
    assert model.backbone.feature_indices == (0, 3)
    assert model.backbone.depth == 4
    assert len(model.decoder.laterals) == 2
    assert model.config["feature_indices"] == [0, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "no_such_vit"}, "not a timm model"),
        ({"backbone_mode": "partial"}, "unknown backbone mode"),
        ({"backbone_init": "magic"}, "unknown backbone_init"),
        ({"num_classes": 3, "class_names": ["a", "b"]}, "class_names has 2"),
        ({"feature_indices": [1, 12]}, "out of range"),
    ],
)
def test_invalid_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        _student(**kwargs)


# --------------------------------------------------------------------------- backbone weights
def _assert_backbone_matches(model: Student, state: dict[str, torch.Tensor]) -> None:
    own = model.backbone.model.state_dict()
    for key, value in own.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_official_dinov2_pth_layout_loads(tmp_path: Path, timm_full_state) -> None:
    official = {k: v for k, v in timm_full_state.items() if not k.startswith("head")}
    official["mask_token"] = torch.zeros(1, 384)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(official, path)
    model = _student(backbone_weights=str(path))
    assert model.backbone_init == "file"
    assert model.config["backbone_weights"]["name"] == path.name  # name + sha256, no path
    _assert_backbone_matches(model, timm_full_state)


def test_timm_safetensors_loads(tmp_path: Path, timm_full_state) -> None:
    path = tmp_path / "model.safetensors"
    save_file(timm_full_state, str(path))
    model = _student(backbone_init="file", backbone_weights=str(path))
    _assert_backbone_matches(model, timm_full_state)


def test_weights_file_that_does_not_fit_names_the_file(tmp_path: Path, timm_full_state) -> None:
    broken = dict(timm_full_state)
    del broken["blocks.3.mlp.fc1.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path))
    with pytest.raises(CheckpointError, match=r"broken\.safetensors.*blocks\.3\.mlp\.fc1\.weight"):
        _student(backbone_weights=str(path))
    with pytest.raises(CheckpointError, match="not found"):
        _student(backbone_weights=str(tmp_path / "missing.pth"))


def test_pretrained_unavailable_offline_raises_helpful_error(tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsUnavailableError) as info:
        Student(backbone_init="pretrained")
    message = str(info.value)
    assert "--backbone-weights" in message
    assert "HF_HUB_OFFLINE" in message
    assert NAME in message


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip_never_loads_backbone_weights(tmp_path: Path, monkeypatch) -> None:
    real_create = timm.create_model
    calls: list[bool] = []

    def fake_hub_create(name, pretrained=False, **kwargs):
        calls.append(pretrained)
        model = real_create(name, pretrained=False, **kwargs)  # stands in for hub weights
        _perturb_layerscale(model)
        return model

    monkeypatch.setattr(timm, "create_model", fake_hub_create)
    monkeypatch.setattr(backbone_module, "pretrained_unreachable", lambda name: "")
    model = Student(num_classes=4, class_names=["bg", "a", "b", "c"], imgsz=112)
    assert calls == [True]
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their defaults
        model(torch.randn(2, 3, 28, 28))
    model.eval()
    x = torch.randn(1, 3, 42, 28)
    with torch.inference_mode():
        expected = model(x)
    metrics = {"miou": 0.7661, "anomaly_miou": 0.6523, "per_class": {"a": {"iou": 0.5}}}
    model.save_pretrained(tmp_path / "saved", metrics=metrics)
    # readable by others, like any file the user writes (not mkstemp's 0600)
    assert all(p.stat().st_mode & 0o044 for p in (tmp_path / "saved").iterdir())

    def no_weights(name, pretrained=False, **kwargs):
        if pretrained:
            raise AssertionError("from_pretrained must not load backbone weights")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_weights)
    loaded = Student.from_pretrained(tmp_path / "saved")
    assert not loaded.training
    with torch.inference_mode():
        got = loaded(x)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)

    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["backbone_init"] == "pretrained"
    assert config["class_names"] == ["bg", "a", "b", "c"]
    assert config["imgsz"] == 112
    assert config["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert loaded.backbone_init == "pretrained"
    assert loaded.class_names == ["bg", "a", "b", "c"]
    assert loaded.imgsz == 112
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "0.7661" in card and "0.6523" in card
    assert "Random backbone" not in card
    assert not list((tmp_path / "saved").glob(".*tmp"))


def test_random_backbone_is_recorded_and_reported(tmp_path: Path) -> None:
    model = _student(num_classes=2, feature_indices=[0])
    model.save_pretrained(tmp_path)
    assert "Random backbone" in (tmp_path / "README.md").read_text()
    loaded = Student.from_pretrained(tmp_path)
    assert loaded.random_backbone
    assert loaded.describe()["backbone_init"] == "random"


def test_from_pretrained_missing_weights_is_a_checkpoint_error(tmp_path: Path) -> None:
    _student(num_classes=2, feature_indices=[0]).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        Student.from_pretrained(tmp_path)


def test_from_pretrained_mismatched_weights_is_a_checkpoint_error(tmp_path: Path) -> None:
    _student(num_classes=2, feature_indices=[0]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(num_classes=3, class_names=["a", "b", "c"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit"):
        Student.from_pretrained(tmp_path)


# --------------------------------------------------------------------------- predict
def test_predict_returns_maps_at_original_sizes(student: Student) -> None:
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (40, 60, 3), dtype=np.uint8),
        rng.integers(0, 256, (30, 30, 3), dtype=np.uint8),
        rng.integers(0, 256, (61, 23, 3), dtype=np.uint8),
    ]
    maps = student.predict(images, imgsz=56, batch_size=2)
    assert [m.shape for m in maps] == [(40, 60), (30, 30), (61, 23)]
    assert all(m.dtype == np.uint8 and m.max() < 3 for m in maps)
    # the same as the documented pipeline: letterbox, normalise, forward, crop, resize, argmax
    padded, content = letterbox(images[0], 56)
    with torch.inference_mode():
        logits = student(normalize(padded, student.mean, student.std)[None])["fine"]
    expected = unletterbox_logits(logits, content, (40, 60)).argmax(1)[0].numpy()
    np.testing.assert_array_equal(maps[0], expected)
    # one image alone gives the same map as inside a batch
    np.testing.assert_array_equal(student.predict(images[2], imgsz=56)[0], maps[2])
    assert not student.training


def test_predict_bf16_on_cpu_restores_memory_format(student: Student, tmp_path: Path) -> None:
    image = np.full((28, 42, 3), 127, dtype=np.uint8)
    maps = student.predict(image, imgsz=42, precision="bf16")
    assert maps[0].shape == (28, 42)
    conv = student.decoder.fine_head.conv[0].weight
    assert conv.is_contiguous()
    student.save_pretrained(tmp_path)  # safetensors needs contiguous tensors


# --------------------------------------------------------------------------- preprocessing
def test_letterbox_keeps_aspect_and_pads_bottom_right() -> None:
    image = np.full((100, 60, 3), 200, dtype=np.uint8)
    padded, content = letterbox(image, 56)
    assert content == (56, 34)
    assert padded.shape == (56, 42, 3)
    assert (padded[:, :34] == 200).all()
    assert (padded[:, 34:] == 0).all()
    square, content = letterbox(image, 50, square=True)
    assert square.shape == (56, 56, 3)
    assert content == (50, 30)


def test_letterbox_mask_nearest_and_ignore_padding() -> None:
    mask = np.zeros((90, 30), dtype=np.uint8)
    mask[:45] = 2
    mask[45:, :15] = 1
    padded, content = letterbox_mask(mask, 28)
    assert content == (28, 9)
    assert padded.shape == (28, 14)
    assert set(np.unique(padded[:, :9])) == {0, 1, 2}
    assert (padded[:, 9:] == 255).all()
    assert (padded[:14, :9] == 2).all()


def test_normalize_uses_mean_and_std() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[..., 0] = 255
    tensor = normalize(image, (0.5, 0.5, 0.0), (0.5, 0.25, 1.0))
    assert tensor.shape == (3, 2, 3)
    assert torch.allclose(tensor[0], torch.ones(2, 3))
    assert torch.allclose(tensor[1], torch.full((2, 3), -2.0))
    assert torch.allclose(tensor[2], torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("image", "mean", "std", "message"),
    [
        (torch.zeros(2, 3, 3, dtype=torch.uint8), (0.5,) * 3, (0.5,) * 3, "numpy uint8 image"),
        (np.zeros((2, 3, 3), np.uint8), (0.5,), (0.5,), "3 means and 3 positive stds"),
        (np.zeros((2, 3, 3), np.uint8), (0.5,) * 3, (0.5, 0.0, 0.5), "3 positive stds"),
    ],
)
def test_normalize_names_what_is_wrong_with_its_input(image, mean, std, message) -> None:
    with pytest.raises(ValueError, match=message):
        normalize(image, mean, std)


def test_fine_only_inference_matches_the_full_forward(student: Student) -> None:
    student.eval()
    x = torch.randn(1, 3, 56, 70)
    with torch.inference_mode():
        full = student(x)
        fine_only = student(x, heads=("fine",))
    assert set(fine_only) == {"fine"}
    assert torch.equal(full["fine"], fine_only["fine"])
    with pytest.raises(ValueError, match="head"):
        student(x, heads=("mask",))


def test_head_classifies_before_the_last_upsample_without_changing_the_result() -> None:
    from boxes2pixels.student.decoder import SegmentationHead

    head = SegmentationHead(8, 3).eval()
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        hidden = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear")
        hidden = torch.nn.functional.interpolate(
            head.conv(hidden), scale_factor=2.0, mode="bilinear"
        )
        reference = head.classifier(hidden)  # the paper's order: upsample, then 1×1 conv
        torch.testing.assert_close(head(x), reference, atol=1e-5, rtol=1e-5)


def test_bf16_masks_agree_with_fp32_on_generated_images() -> None:
    """bf16 autocast (the CPU ``auto`` precision here) changes at most 0.5 % of the pixels of a
    trained model's masks. The model is a tiny student fitted to a few generated blade images,
    so its masks hold defects with real margins (a random model's near-ties would not)."""
    from boxes2pixels.data.synth import SynthConfig, render_scene, scene_rng
    from boxes2pixels.distill.losses import class_weights
    from boxes2pixels.geometry import letterbox, letterbox_mask, normalize

    config = SynthConfig(defect_free_fraction=0.0, defect_scale=5.0)
    scenes = [render_scene(scene_rng(0, "train", i), (128, 96), config) for i in range(4)]
    images = [scene.image for scene in scenes]
    model = _student(backbone="test_vit", backbone_mode="full", decoder_channels=32, imgsz=64)
    x = normalize(
        np.stack([letterbox(i, 64, multiple=16, square=True)[0] for i in images]),
        model.mean,
        model.std,
    )
    y = np.stack([letterbox_mask(s.mask, 64, multiple=16, square=True)[0] for s in scenes])
    target = torch.from_numpy(y).long()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(
            model(x)["fine"], target, weight=class_weights(3), ignore_index=255
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    fp32 = model.predict(images, precision="fp32")
    bf16 = model.predict(images, precision="bf16")
    assert sum(int((m > 0).sum()) for m in fp32) > 0.01 * sum(m.size for m in fp32)
    for a, b in zip(fp32, bf16, strict=True):
        assert a.shape == b.shape
        assert (a == b).mean() >= 0.995
