"""What the student needs to know about a timm ViT family, read from timm itself.

Patch size, embedding width, depth, prefix tokens (class + register / storage tokens) and the
names of the LayerScale factors differ between DINOv2 (``VisionTransformer``: ``ls1.gamma``),
DINOv2 with registers and DINOv3 (``Eva``: ``gamma_1``/``gamma_2``, patch 16, storage tokens).
Nothing here is a constant: it comes from the model timm builds, or from the module that
defines its class (each timm family has its own ``checkpoint_filter_fn`` that converts the
official checkpoint layout into timm's).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

# LayerScale factors that some timm blocks hold directly (Eva / BEiT: ``gamma_1``, ``gamma_2``);
# ViT-style blocks hold them in ``LayerScale`` modules instead (``timm.layers.LayerScale``, or
# a class of that name in the model's own module in timm < 1.0.20).
_BLOCK_LAYERSCALE = ("gamma_1", "gamma_2")
_LAYERSCALE_MODULES = ("LayerScale", "LayerScale2d")


@dataclass(frozen=True)
class BackboneInfo:
    """Geometry of a timm ViT model name.

    Attributes:
        name: the timm model name.
        family: the timm module defining its class (``vision_transformer``, ``eva``, ...).
        patch_size: input sides must be multiples of this.
        embed_dim: channels of every feature map.
        depth: number of blocks.
        num_prefix_tokens: class token plus register (storage) tokens.
    """

    name: str
    family: str
    patch_size: int
    embed_dim: int
    depth: int
    num_prefix_tokens: int


def patch_size_of(model: nn.Module) -> int:
    """The (square) patch size of a timm ViT's patch embedding."""
    size = model.patch_embed.patch_size  # type: ignore[union-attr]
    return int(size[0] if isinstance(size, (tuple, list)) else size)


@functools.lru_cache(maxsize=32)
def backbone_info(name: str) -> BackboneInfo:
    """Read a timm ViT's geometry without weights (built on the meta device, cached).

    Raises:
        ConfigError: not a timm model name, or not a ViT with a patch embedding and blocks.
    """
    import timm

    if not timm.is_model(name):
        raise ConfigError(
            f"'{name}' is not a timm model name in the installed timm {timm.__version__} "
            "(list them with timm.list_models('*dinov*'); DINOv3 needs timm >= 1.0.20)"
        )
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, dynamic_img_size=True)
    except Exception:  # a constructor that cannot run on the meta device
        model = timm.create_model(name, pretrained=False, dynamic_img_size=True)
    if not hasattr(model, "patch_embed") or not hasattr(model, "blocks"):
        raise ConfigError(
            f"timm model '{name}' is not a ViT with a patch embedding and blocks; choose a "
            "ViT-style backbone (e.g. vit_small_patch14_dinov2.lvd142m)"
        )
    return BackboneInfo(
        name=name,
        family=type(model).__module__.rsplit(".", 1)[-1],
        patch_size=patch_size_of(model),
        embed_dim=int(model.embed_dim),
        depth=len(model.blocks),
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 1)),
    )


def layerscale_parameter_names(model: nn.Module) -> list[str]:
    """Names of the LayerScale factors of a timm model (``ls1.gamma`` or ``gamma_1`` style)."""
    names = []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if type(module).__name__ in _LAYERSCALE_MODULES:
            names.extend(prefix + n for n, _ in module.named_parameters(recurse=False))
        else:
            names.extend(
                prefix + n
                for n, _ in module.named_parameters(recurse=False)
                if n in _BLOCK_LAYERSCALE
            )
    return names


def checkpoint_filter(model: nn.Module) -> Callable[[dict[str, Any], nn.Module], dict[str, Any]]:
    """The ``checkpoint_filter_fn`` of the timm module that defines ``model``'s class.

    timm converts official layouts with it when it loads pretrained weights (DINOv2's
    ``dinov2_vits14_pretrain.pth`` through ``vision_transformer``, DINOv3's through ``eva``);
    a family without one gets its state dict unchanged. Converters that print diagnostics to
    stdout are kept quiet.
    """
    module = importlib.import_module(type(model).__module__)
    convert = getattr(module, "checkpoint_filter_fn", None)
    if convert is None:
        return lambda state, _model: state

    def quiet(state: dict[str, Any], target: nn.Module) -> dict[str, Any]:
        with contextlib.redirect_stdout(io.StringIO()):
            return convert(state, target)

    return quiet
