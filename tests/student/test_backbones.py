"""Other DINO backbones: DINOv2 ViT-S/14 (+ registers), ViT-B/14 and DINOv3 ViT-S/16.

Each family trains one step (random weights, two blocks, tiny inputs) and loads a random
state dict saved in the family's official checkpoint layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import timm
import torch

from boxes2pixels.config import TrainConfig
from boxes2pixels.errors import ConfigError
from boxes2pixels.student import Student
from boxes2pixels.student.model import RandomBackboneWarning
from boxes2pixels.student.timm_family import backbone_info, layerscale_parameter_names

DINOV2_S = "vit_small_patch14_dinov2.lvd142m"
DINOV2_S_REG = "vit_small_patch14_reg4_dinov2.lvd142m"
DINOV2_B = "vit_base_patch14_dinov2.lvd142m"
DINOV3_S = "vit_small_patch16_dinov3.lvd1689m"
FAMILIES = {
    # name: (patch, width, prefix tokens, LayerScale parameter of block 0)
    DINOV2_S: (14, 384, 1, "blocks.0.ls1.gamma"),
    DINOV2_S_REG: (14, 384, 5, "blocks.0.ls1.gamma"),
    DINOV2_B: (14, 768, 1, "blocks.0.ls1.gamma"),
    DINOV3_S: (16, 384, 5, "blocks.0.gamma_1"),
}
KEPT_BLOCKS = 2


def _student(name: str, **kwargs) -> Student:
    kwargs.setdefault("backbone_init", "random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomBackboneWarning)
        return Student(
            num_classes=3,
            backbone=name,
            feature_indices=list(range(KEPT_BLOCKS)),
            decoder_channels=16,
            imgsz=64,
            train_layerscale=True,
            **kwargs,
        )


@pytest.mark.parametrize("name", list(FAMILIES))
def test_geometry_comes_from_timm(name: str) -> None:
    patch, width, prefix, _ = FAMILIES[name]
    info = backbone_info(name)
    assert (info.patch_size, info.embed_dim, info.num_prefix_tokens) == (patch, width, prefix)
    assert info.depth == 12


@pytest.mark.parametrize("name", list(FAMILIES))
def test_one_training_step(name: str) -> None:
    patch, width, _, layerscale = FAMILIES[name]
    torch.manual_seed(0)
    model = _student(name).train()
    assert (model.patch_size, model.backbone.embed_dim) == (patch, width)
    assert layerscale in layerscale_parameter_names(model.backbone.model)
    gamma = model.backbone.model.get_parameter(layerscale)
    assert gamma.requires_grad  # train_layerscale finds this family's LayerScale names
    before = gamma.detach().clone()
    x = torch.randn(2, 3, 2 * patch, 3 * patch)
    target = torch.randint(0, 3, (2, 2 * patch, 3 * patch))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = torch.nn.functional.cross_entropy(model(x)["fine"], target)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, gamma.detach())
    with pytest.raises(ConfigError, match=f"multiples of the patch size {patch}"):
        model(torch.randn(1, 3, patch + 1, patch))


def _random_state(name: str, blocks: int) -> dict[str, torch.Tensor]:
    """Random tensors for the timm state dict of ``name`` with its first ``blocks`` blocks."""
    model = timm.create_model(name, pretrained=False, depth=blocks)
    generator = torch.Generator().manual_seed(3)
    return {
        k: torch.randn(v.shape, generator=generator)
        for k, v in model.state_dict().items()
        if not k.startswith("head")
    }


def _official_dinov2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """facebookresearch/dinov2 layout (``dinov2_vit*14*_pretrain.pth``; with registers, the
    position embedding also has the class token's position, here zero)."""
    out = {("register_tokens" if k == "reg_token" else k): v for k, v in state.items()}
    width = state["cls_token"].shape[-1]
    if "reg_token" in state:
        out["pos_embed"] = torch.cat([torch.zeros(1, 1, width), state["pos_embed"]], dim=1)
    out["mask_token"] = torch.zeros(1, width)
    return out


def _official_dinov3(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """facebookresearch/dinov3 layout (``dinov3_vits16_pretrain_lvd1689m-*.pth``): storage
    tokens, ``ls1``/``ls2`` LayerScale, q/k/v bias with its mask, RoPE periods, mask token."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.replace("reg_token", "storage_tokens")
        key = key.replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        out[key] = value
        if key.endswith("attn.qkv.weight"):
            out[key.replace("weight", "bias")] = torch.zeros(value.shape[0])
            out[key.replace("weight", "bias_mask")] = torch.ones(value.shape[0])
    width = state["cls_token"].shape[-1]
    out["mask_token"] = torch.zeros(1, width)
    out["rope_embed.periods"] = torch.arange(1, width // 24 + 1, dtype=torch.float32)
    return out


@pytest.mark.parametrize(
    ("name", "official"),
    [
        (DINOV2_S, _official_dinov2),
        (DINOV2_S_REG, _official_dinov2),
        (DINOV2_B, _official_dinov2),
        (DINOV3_S, _official_dinov3),
    ],
)
def test_official_checkpoint_layout_loads(name: str, official, tmp_path: Path) -> None:
    state = _random_state(name, KEPT_BLOCKS + 1)  # one more block than kept: ignored
    path = tmp_path / "official_pretrain.pth"
    torch.save(official(state), path)
    model = _student(name, backbone_init="file", backbone_weights=str(path))
    own = model.backbone.model.state_dict()
    assert set(own) <= set(state)
    for key, value in own.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_config_checks_imgsz_against_the_backbone_patch() -> None:
    assert TrainConfig(backbone=DINOV3_S, imgsz=512).imgsz == 512
    with pytest.raises(ConfigError, match=r"multiple of 16 .*e\.g\. imgsz 512"):
        TrainConfig(backbone=DINOV3_S, imgsz=518)
    with pytest.raises(ConfigError, match="not a timm model name"):
        TrainConfig(backbone="no_such_vit")
