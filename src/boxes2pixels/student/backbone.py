"""The student's ViT backbone: a timm model cut after the deepest feature block.

The paper takes features from blocks 1, 2, 4 and 7 (0-based) of DINOv2 ViT-S/14, each passed
through the backbone's final LayerNorm. Blocks after the deepest one never influence the
output, so they are removed (timm's ``prune_intermediate_layers``); checkpoints with all
blocks still load, the weights of the removed blocks are ignored.

Weights come from one explicit source, never silently from another:

- ``pretrained``: the timm hub weights of the model name (Hugging Face Hub or its local cache);
- ``file``: a local file, the official ``dinov2_vits14_pretrain.pth`` layout or timm's own
  state dict (``.safetensors``, ``.pth``, ``.bin``);
- ``random``: timm's random initialisation (tests, offline demos).

Inside :func:`no_backbone_weights` only the architecture is built (used when a saved student's
own safetensors file provides every weight).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, WeightsUnavailableError
from ..hub import hub_offline
from ..io import load_torch_weights
from .timm_family import checkpoint_filter, layerscale_parameter_names, patch_size_of

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "vit_small_patch14_dinov2.lvd142m"
PAPER_FEATURE_INDICES: tuple[int, ...] = (1, 2, 4, 7)
PAPER_DEPTH = 12
BACKBONE_MODES = ("bitfit", "frozen", "full")
BACKBONE_INITS = ("pretrained", "file", "random")

_SKIP_WEIGHTS: ContextVar[bool] = ContextVar("boxes2pixels_skip_backbone_weights", default=False)

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,
    nn.RMSNorm,
)


@contextmanager
def no_backbone_weights() -> Iterator[None]:
    """Build backbones without loading or downloading any weights inside this context.

    ``Student.from_pretrained`` uses it: the student's own safetensors file holds the backbone
    weights, so the original initialisation (hub download, weights file) is not repeated.
    """
    token = _SKIP_WEIGHTS.set(True)
    try:
        yield
    finally:
        _SKIP_WEIGHTS.reset(token)


def backbone_weights_skipped() -> bool:
    """True inside :func:`no_backbone_weights`."""
    return _SKIP_WEIGHTS.get()


def default_feature_indices(depth: int) -> tuple[int, ...]:
    """The paper's block indices (1, 2, 4, 7 of 12) scaled to a backbone of ``depth`` blocks.

    Index ``i`` of the 12-block model becomes ``round((i + 1) · depth / 12) − 1``, so the
    features keep their relative depth (ViT-L/14 with 24 blocks: 3, 5, 9, 15).
    """
    if depth < 1:
        raise ConfigError(f"backbone depth must be positive (got {depth})")
    scaled = {
        min(depth - 1, max(0, round((i + 1) * depth / PAPER_DEPTH) - 1))
        for i in PAPER_FEATURE_INDICES
    }
    return tuple(sorted(scaled))


def resolve_feature_indices(indices: Sequence[int] | None, depth: int) -> tuple[int, ...]:
    """Validate feature block indices (negative ones count from the end) for ``depth`` blocks.

    ``None`` gives :func:`default_feature_indices`. The result is sorted and unique.
    """
    if indices is None:
        return default_feature_indices(depth)
    if len(indices) == 0:
        raise ConfigError("feature_indices must name at least one backbone block")
    resolved = []
    for index in indices:
        value = int(index)
        if not -depth <= value < depth:
            raise ConfigError(
                f"feature index {value} is out of range for a backbone with {depth} blocks "
                f"(valid: 0..{depth - 1} or -{depth}..-1)"
            )
        resolved.append(value % depth)
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"feature_indices contain duplicates: {list(indices)}")
    return tuple(sorted(resolved))


def _weights_help(name: str) -> str:
    return (
        f"Pretrained weights for '{name}' could not be obtained. Provide them in one of these "
        "ways: (1) download the checkpoint on a machine with internet access (for DINOv2 "
        "ViT-S/14 the official 'dinov2_vits14_pretrain.pth' or timm's 'model.safetensors' "
        f"from the Hugging Face repository 'timm/{name}') and pass it with --backbone-weights "
        "FILE (Python: backbone_weights=FILE); (2) copy a Hugging Face cache that holds the "
        "model into HF_HOME (or HF_HUB_CACHE) on this machine and set HF_HUB_OFFLINE=1 so it "
        "is used without network access; or (3) for tests and offline demos only, choose "
        "random weights explicitly with --backbone-init random (Python: backbone_init='random')."
    )


def pretrained_unreachable(name: str) -> str:
    """Why timm's pretrained weights of ``name`` cannot be downloaded now ('' if they can).

    Cached weights are always reachable; otherwise the Hub is asked once (5 s timeout, no
    retries), so an offline machine answers at once instead of after timm's retry loop.
    """
    import huggingface_hub
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return ""  # weights from another source: let timm try
    repo = hub_id.split("@", 1)[0]
    files = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
    if any(isinstance(huggingface_hub.try_to_load_from_cache(repo, f), str) for f in files):
        return ""
    if hub_offline():
        return f"HF_HUB_OFFLINE is set and the weights of '{repo}' are not in the HF cache"
    try:
        huggingface_hub.HfApi().model_info(repo, timeout=5)
    except Exception as exc:  # any network or Hub failure means: not available now
        return (
            f"the weights of '{repo}' are not in the Hugging Face cache and the Hub is "
            f"unreachable ({type(exc).__name__})"
        )
    return ""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a backbone weights file (``.safetensors``, or a torch pickle read ``weights_only``).

    Raises:
        CheckpointError: the file is missing, unreadable or holds no tensor dictionary.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone weights file not found")
    expected = (
        "backbone weights: an official checkpoint (DINOv2 dinov2_vits14_pretrain.pth, DINOv3 "
        "dinov3_vits16_pretrain_*.pth) or timm's model.safetensors "
        "(e.g. https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m)."
    )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(
                f"{path}: cannot read backbone weights ({str(exc)[:160]}). Expected {expected}"
            ) from exc
    else:
        state = load_torch_weights(path, expected)
    for key in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dictionary of tensors (a model state dict)")
    return state


def collapse_warning(init: str, mode: str, train_layerscale: bool = False) -> str | None:
    """Why a random backbone that is not fully trained gives collapsed features, or None.

    The one rule behind every warning about it (``Student``, ``b2p train``, ``b2p benchmark``):
    DINOv2's LayerScale starts at 1e-5 in timm, so when the random blocks (and LayerScale) stay
    frozen they barely change their input and all feature maps are nearly identical.
    """
    if init != "random" or mode == "full" or train_layerscale:
        return None
    return (
        f"random backbone with backbone mode '{mode}': the backbone weights (and DINOv2's "
        "LayerScale, which starts at 1e-5) stay frozen, so its features collapse (the feature "
        "maps are nearly identical) and the student barely learns. To train from random "
        "weights use --backbone-mode full (backbone_mode='full' in Python, or "
        "train_layerscale=True); for real use load "
        "pretrained weights."
    )


class Backbone(nn.Module):
    """A timm ViT that returns normalised feature maps of chosen blocks (N×D×H/p×W/p each).

    Args:
        name: a timm model name with ``forward_intermediates`` (e.g. DINOv2 ViT-S/14, ViT-B/14,
            DINOv2 with registers).
        feature_indices: 0-based block indices; ``None`` scales the paper's 1, 2, 4, 7 to depth.
        init: ``pretrained``, ``file`` or ``random`` (see the module docstring).
        weights: the weights file for ``init="file"``.
        mode: ``bitfit`` (only biases and normalisation parameters train), ``frozen`` or ``full``.
        train_layerscale: also train LayerScale factors in ``bitfit``/``frozen`` mode.

    Raises:
        WeightsUnavailableError: ``pretrained`` weights cannot be had (offline, not cached).
        CheckpointError: the weights file is unreadable or does not fit the model.
    """

    def __init__(
        self,
        name: str = DEFAULT_BACKBONE,
        feature_indices: Sequence[int] | None = None,
        init: str = "pretrained",
        weights: str | Path | None = None,
        mode: str = "bitfit",
        train_layerscale: bool = False,
    ) -> None:
        super().__init__()
        import timm

        if init not in BACKBONE_INITS:
            raise ConfigError(f"unknown backbone init '{init}' (use {', '.join(BACKBONE_INITS)})")
        if mode not in BACKBONE_MODES:
            raise ConfigError(f"unknown backbone mode '{mode}' (use {', '.join(BACKBONE_MODES)})")
        if init == "file" and weights is None and not backbone_weights_skipped():
            raise ConfigError("backbone init 'file' needs a weights file (backbone_weights=FILE)")
        if not timm.is_model(name):
            raise ConfigError(
                f"'{name}' is not a timm model name (list them with timm.list_models('*vit*'))"
            )
        self.name = name
        self.init = init
        self.mode = mode
        self.train_layerscale = train_layerscale
        skip = backbone_weights_skipped()
        random_init = init == "random" and not skip
        if random_init:
            self.model, self.original_depth = self._create_random(timm, name, feature_indices)
        elif skip or init == "file":
            self.model = self._create_uninitialised(timm, name)
        else:
            self.model = self._create_pretrained(timm, name)
        for attr in ("forward_intermediates", "prune_intermediate_layers", "blocks"):
            if not hasattr(self.model, attr):
                raise ConfigError(
                    f"timm model '{name}' has no '{attr}'; choose a ViT-style backbone "
                    "(e.g. vit_small_patch14_dinov2.lvd142m)"
                )
        if not random_init:
            self.original_depth = len(self.model.blocks)
        self.feature_indices = resolve_feature_indices(feature_indices, self.original_depth)
        self.model.prune_intermediate_layers(
            list(self.feature_indices), prune_norm=False, prune_head=True
        )
        if init == "file" and not skip:
            self.load_weights_file(weights)  # type: ignore[arg-type]
        self.set_mode(mode, train_layerscale)

    @staticmethod
    def _create_pretrained(timm_module: Any, name: str) -> nn.Module:
        from huggingface_hub.utils import HfHubHTTPError  # .errors only from hub 0.25

        problem = pretrained_unreachable(name)
        if problem:  # say so at once instead of a minute of download retries
            raise WeightsUnavailableError(
                f"{_weights_help(name)} (cause: {problem})", cause=problem
            )
        try:
            return timm_module.create_model(name, pretrained=True, dynamic_img_size=True)
        except (OSError, ConnectionError, TimeoutError, HfHubHTTPError, RuntimeError) as exc:
            raise WeightsUnavailableError(
                f"{_weights_help(name)} (cause: {exc})", cause=str(exc)
            ) from exc

    @staticmethod
    def _create_random(
        timm_module: Any, name: str, feature_indices: Sequence[int] | None
    ) -> tuple[nn.Module, int]:
        """timm's random initialisation of only the blocks that are kept.

        Returns the model and the depth of the full architecture. Initialising the removed
        blocks would only cost time (timm's truncated-normal init is slow on a CPU).
        """
        try:
            with torch.device("meta"):
                meta = timm_module.create_model(name, pretrained=False, dynamic_img_size=True)
            depth = len(meta.blocks)
        except Exception:  # no meta support or no ``blocks``: build it whole, prune afterwards
            model = timm_module.create_model(name, pretrained=False, dynamic_img_size=True)
            return model, len(getattr(model, "blocks", ()))
        keep = max(resolve_feature_indices(feature_indices, depth)) + 1
        try:
            model = timm_module.create_model(
                name, pretrained=False, dynamic_img_size=True, depth=keep
            )
        except TypeError:  # an architecture without a ``depth`` argument
            model = timm_module.create_model(name, pretrained=False, dynamic_img_size=True)
        return model, depth

    @staticmethod
    def _create_uninitialised(timm_module: Any, name: str) -> nn.Module:
        """The architecture with zero weights, skipping timm's (slow) random initialisation.

        Used when every weight is loaded afterwards (a weights file, a saved student).
        """
        try:
            with torch.device("meta"):
                model = timm_module.create_model(name, pretrained=False, dynamic_img_size=True)
        except Exception:  # a model whose constructor cannot run on the meta device
            return timm_module.create_model(name, pretrained=False, dynamic_img_size=True)
        persistent = set(model.state_dict())
        if any(key not in persistent for key, _ in model.named_buffers()):
            # non-persistent buffers are computed in __init__ and never loaded: build normally
            return timm_module.create_model(name, pretrained=False, dynamic_img_size=True)
        model = model.to_empty(device="cpu")
        with torch.no_grad():
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.zero_()
        return model

    # ------------------------------------------------------------------ properties
    @property
    def embed_dim(self) -> int:
        """Channel count of each feature map."""
        return int(self.model.embed_dim)

    @property
    def patch_size(self) -> int:
        """Input sides must be multiples of this (from timm's patch embedding: 14 for DINOv2,
        16 for DINOv3)."""
        return patch_size_of(self.model)

    @property
    def depth(self) -> int:
        """Number of blocks actually computed (deepest feature index + 1)."""
        return len(self.model.blocks)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's pretrained configuration of the model name (mean, std, input size …)."""
        return dict(getattr(self.model, "pretrained_cfg", {}) or {})

    @property
    def has_layerscale(self) -> bool:
        """True when the blocks scale their residual branches by (trainable) LayerScale factors."""
        return bool(layerscale_parameter_names(self.model))

    # ------------------------------------------------------------------ weights
    def load_weights_file(self, path: str | Path) -> None:
        """Load a local weights file into the (pruned) model.

        Accepts the official layouts (``dinov2_vits14_pretrain.pth``, DINOv3's
        ``dinov3_vits16_pretrain_*.pth``), converted by the ``checkpoint_filter_fn`` of the
        model's own timm family, and timm state dicts (``.safetensors``/``.pth``). Weights of
        blocks beyond the deepest feature block and of classifier heads are ignored.

        Raises:
            CheckpointError: unreadable file, or keys/shapes that do not fit the model.
        """
        path = Path(path)
        state = read_state_dict(path)
        try:
            state = checkpoint_filter(self.model)(state, self.model)
        except Exception as exc:  # a foreign layout can fail anywhere in the converter
            raise CheckpointError(
                f"{path}: cannot convert these weights for '{self.name}' ({exc})"
            ) from exc
        own = self.model.state_dict()
        kept: dict[str, torch.Tensor] = {}
        unexpected = []
        for key, value in state.items():
            if key in own:
                kept[key] = value
            elif key.startswith(("head.", "fc_norm.", "head_drop.")) or self._is_pruned_block(key):
                continue
            else:
                unexpected.append(key)
        missing = sorted(set(own) - set(kept))
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: weights do not fit backbone '{self.name}': "
                f"missing {_preview(missing)}, unexpected {_preview(unexpected)}"
            )
        bad = [k for k, v in kept.items() if v.shape != own[k].shape]
        if bad:
            shapes = ", ".join(
                f"{k}: {tuple(kept[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:3]
            )
            raise CheckpointError(f"{path}: tensor shapes do not fit '{self.name}' ({shapes})")
        self.model.load_state_dict(kept, strict=True)
        logger.info("loaded backbone weights from %s", path)

    def _is_pruned_block(self, key: str) -> bool:
        parts = key.split(".")
        return (
            len(parts) > 1
            and parts[0] == "blocks"
            and parts[1].isdigit()
            and int(parts[1]) >= self.depth
        )

    # ------------------------------------------------------------------ training mode
    def set_mode(self, mode: str, train_layerscale: bool = False) -> None:
        """Choose which parameters train: ``bitfit``, ``frozen`` or ``full``."""
        if mode not in BACKBONE_MODES:
            raise ConfigError(f"unknown backbone mode '{mode}' (use {', '.join(BACKBONE_MODES)})")
        self.mode = mode
        self.train_layerscale = train_layerscale
        for param in self.model.parameters():
            param.requires_grad_(mode == "full")
        if mode == "bitfit":
            for module in self.model.modules():
                if isinstance(module, _NORM_TYPES):
                    for param in module.parameters(recurse=False):
                        param.requires_grad_(True)
            for name, param in self.model.named_parameters():
                if name.endswith("bias"):
                    param.requires_grad_(True)
        if mode != "full" and train_layerscale:
            for name in layerscale_parameter_names(self.model):
                self.model.get_parameter(name).requires_grad_(True)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps (N×D×H/p×W/p) of the chosen blocks, shallow to deep, final norm applied."""
        return self.model.forward_intermediates(
            x,
            indices=list(self.feature_indices),
            norm=True,
            intermediates_only=True,
            output_fmt="NCHW",
        )


def _preview(keys: Sequence[str], limit: int = 5) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown
