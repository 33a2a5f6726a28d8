"""Baseline segmentation models from segmentation-models-pytorch (optional extra ``baselines``).

The paper compares the student with three fully trainable segmenters trained on the same
pseudo-masks, with the same schedule, augmentation and EMA:

==============  =============================  ===================
name            architecture                   smp encoder
==============  =============================  ===================
``unet``        U-Net                          ``resnet34``
``deeplabv3``   DeepLabV3                      ``efficientnet-b2``
``segformer``   SegFormer-B2                   ``mit_b2``
==============  =============================  ===================

:class:`BaselineModel` wraps one of them so that it looks like the student to the training
loop and to prediction: ``forward(x)`` returns ``{"fine": logits}`` (B×C×H×W) for any input
size (sides are padded to multiples of 32 inside and the logits cropped back), and it has
``save_pretrained`` / ``from_pretrained`` (safetensors + ``config.json``) and ``predict``.

Baselines have no binary head. The research code trained them with the same criterion as the
student, whose single-output branch is the fine loss only (class-weighted cross-entropy with
online self-correction); the asymmetric-Dice binary term needs the student's second head.
So a baseline is trained exactly like the student's "without binary head" ablation.

The encoder initialisation is explicit: ``encoder_init="imagenet"`` loads smp's ImageNet
weights (from the Hub, or from a local ``encoder_weights`` file in the same format) and fails
with :class:`~boxes2pixels.errors.WeightsUnavailableError` when they cannot be had;
``encoder_init="random"`` is a deliberate choice, recorded in the saved config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import Boxes2PixelsError, CheckpointError, WeightsUnavailableError
from .io import atomic_path, write_json_atomic
from .weights_file import load_weights, write_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMP_INSTALL_HINT = (
    "the baselines need segmentation-models-pytorch: pip install 'boxes2pixels[baselines]'"
)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "boxes2pixels-baseline"
ENCODER_INITS = ("imagenet", "random")


@dataclass(frozen=True)
class BaselineSpec:
    """What a baseline name stands for."""

    name: str
    title: str
    arch: str  # smp class name
    encoder: str  # smp encoder name
    divisor: int = 32


BASELINES: dict[str, BaselineSpec] = {
    "unet": BaselineSpec("unet", "U-Net (ResNet34)", "Unet", "resnet34"),
    "deeplabv3": BaselineSpec(
        "deeplabv3", "DeepLabV3 (EfficientNet-B2)", "DeepLabV3", "efficientnet-b2"
    ),
    "segformer": BaselineSpec("segformer", "SegFormer-B2 (MiT-B2)", "Segformer", "mit_b2"),
}


def _import_smp() -> Any:
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise Boxes2PixelsError(SMP_INSTALL_HINT) from exc
    return smp


def smp_available() -> bool:
    """True when segmentation-models-pytorch can be imported."""
    try:
        _import_smp()
    except Boxes2PixelsError:
        return False
    return True


def baseline_spec(name: str) -> BaselineSpec:
    """The :class:`BaselineSpec` of ``name`` (``unet``, ``deeplabv3`` or ``segformer``)."""
    key = name.lower()
    if key not in BASELINES:
        raise Boxes2PixelsError(f"unknown baseline '{name}' (choose from {', '.join(BASELINES)})")
    return BASELINES[key]


def nearest_multiple(size: int, divisor: int = 32) -> int:
    """The multiple of ``divisor`` nearest to ``size`` (ties go down; at least ``divisor``).

    Example: ``nearest_multiple(518) == 512``.
    """
    low = max(divisor, (size // divisor) * divisor)
    high = low + divisor
    return low if size - low <= high - size else high


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        return load_weights(path)  # checks the recorded sha256
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many different types
        raise CheckpointError(f"{path}: cannot read weights ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


class BaselineModel(nn.Module):
    """A smp segmentation model behind the student's interface.

    Args:
        name: ``unet``, ``deeplabv3`` or ``segformer``.
        num_classes: label values including background (``len(names) + 1``).
        class_names: names of values ``0..num_classes-1`` (default ``background, class_1, ...``).
        encoder_init: ``imagenet`` (smp's pretrained encoder; never silently replaced) or
            ``random``.
        encoder_weights: with ``encoder_init="imagenet"``, a local file holding the encoder's
            state dict in smp's format (the ``model.safetensors`` of ``smp-hub/<encoder>.imagenet``
            or a ``.pth``) used instead of downloading it.
        imgsz: default inference side (any size works; sides are padded to multiples of 32).
        mean: normalisation mean (RGB, 0..1 scale).
        std: normalisation std.

    Raises:
        WeightsUnavailableError: ImageNet weights were requested but cannot be obtained.
    """

    binary_head = False

    def __init__(
        self,
        name: str = "unet",
        num_classes: int = 3,
        class_names: Sequence[str] | None = None,
        encoder_init: str = "imagenet",
        encoder_weights: str | Path | None = None,
        imgsz: int = 512,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        spec = baseline_spec(name)
        if encoder_init not in ENCODER_INITS:
            raise Boxes2PixelsError(
                f"unknown encoder_init '{encoder_init}' (use {' or '.join(ENCODER_INITS)})"
            )
        if encoder_weights is not None and encoder_init != "imagenet":
            raise Boxes2PixelsError("encoder_weights is only used with encoder_init='imagenet'")
        if num_classes < 2:
            raise Boxes2PixelsError("num_classes must be at least 2 (background + one class)")
        names = list(class_names) if class_names is not None else None
        if names is not None and len(names) != num_classes:
            raise Boxes2PixelsError(f"{len(names)} class names for {num_classes} classes")
        self.spec = spec
        self.name = spec.name
        self.num_classes = int(num_classes)
        self.class_names = names or ["background"] + [f"class_{i}" for i in range(1, num_classes)]
        self.encoder_init = encoder_init
        self.imgsz = int(imgsz)
        self.divisor = spec.divisor
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        download = encoder_init == "imagenet" and encoder_weights is None
        self.net = self._build(spec, download)
        if encoder_weights is not None:
            self.load_encoder_weights(encoder_weights)

    def _build(self, spec: BaselineSpec, download: bool) -> nn.Module:
        smp = _import_smp()
        ctor = getattr(smp, spec.arch)
        kwargs: dict[str, Any] = {"encoder_weights": "imagenet" if download else None}
        if not download:
            return ctor(spec.encoder, classes=self.num_classes, **kwargs)
        try:
            return ctor(spec.encoder, classes=self.num_classes, **kwargs)
        except Exception as exc:  # network, cache and hub errors all mean "not available"
            from segmentation_models_pytorch.encoders import encoders

            repo = encoders[spec.encoder]["pretrained_settings"]["imagenet"]["repo_id"]
            raise WeightsUnavailableError(
                f"cannot obtain the ImageNet weights of the {spec.title} encoder from the "
                f"Hugging Face Hub repo '{repo}' ({type(exc).__name__}: {exc}). Download its "
                f"model.safetensors elsewhere and pass it as encoder_weights "
                f"(--encoder-weights), or choose encoder_init='random' deliberately."
            ) from exc

    def load_encoder_weights(self, path: str | Path) -> None:
        """Load the encoder's state dict (smp format, safetensors or ``.pth``) from ``path``.

        Raises:
            CheckpointError: the file is missing, unreadable or does not fit the encoder.
        """
        path = Path(path)
        state = _read_weights(path)
        try:
            self.net.encoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path}: not an smp '{self.spec.encoder}' encoder state dict ({exc})"
            ) from exc

    def forward(
        self, x: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits ``{"fine": B×C×H×W}`` for a normalised B×3×H×W batch of any size.

        ``heads`` follows the student's contract; a baseline has only the fine head.
        """
        if heads is not None and set(heads) - {"fine"}:
            raise ValueError(
                f"a baseline has only the 'fine' head, not {sorted(set(heads) - {'fine'})}"
            )
        h, w = x.shape[-2:]
        pad_h = (-h) % self.divisor
        pad_w = (-w) % self.divisor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.net(x)
        if pad_h or pad_w:
            logits = logits[..., :h, :w]
        return {"fine": logits}

    @property
    def patch_size(self) -> int:
        """Multiple that :meth:`predict` letterboxes to (other sizes are padded inside)."""
        return self.divisor

    @property
    def random_backbone(self) -> bool:
        """True when the encoder was initialised randomly (``encoder_init="random"``)."""
        return self.encoder_init == "random"

    @property
    def config(self) -> dict[str, Any]:
        """JSON-friendly constructor arguments (plus the model type), as saved."""
        return {
            "model_type": MODEL_TYPE,
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "encoder_init": self.encoder_init,
            "imgsz": self.imgsz,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def save_pretrained(
        self, directory: str | Path, *, metrics: dict[str, Any] | None = None
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically).

        ``metrics`` (e.g. the validation scores of the saved epoch) go to ``metrics.json``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            write_weights(tmp, state, {"format": "pt"})  # with its sha256, reproducible
        write_json_atomic(directory / CONFIG_NAME, self.config)
        if metrics is not None:
            write_json_atomic(directory / "metrics.json", metrics)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> BaselineModel:
        """Load a model written by :meth:`save_pretrained` (no download: all weights are local).

        Raises:
            CheckpointError: the folder is not a saved baseline or its weights do not fit.
        """
        directory = Path(directory)
        config = read_baseline_config(directory)
        if config is None:
            raise CheckpointError(f"{directory}: no baseline {CONFIG_NAME} found")
        kwargs = {k: v for k, v in config.items() if k != "model_type"}
        recorded_init = kwargs.pop("encoder_init", "random")
        model = cls(**kwargs, encoder_init="random")
        model.encoder_init = recorded_init
        weights = directory / WEIGHTS_NAME
        state = _read_weights(weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{weights}: weights do not fit {cls.__name__} ({exc})") from exc
        return model.to(map_location).eval()

    def predict(
        self,
        images: Any,
        *,
        imgsz: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        device: str | torch.device | None = None,
    ) -> list[np.ndarray]:
        """Label maps for images, with the same arguments and results as ``Student.predict``."""
        from .inference.segmentation import predict_images

        return predict_images(
            self, images, imgsz=imgsz, batch_size=batch_size, precision=precision, device=device
        )


def read_baseline_config(directory: str | Path) -> dict[str, Any] | None:
    """The saved config of a baseline folder, or ``None`` when it holds something else."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("model_type") != MODEL_TYPE:
        return None
    return config


def build_baseline(
    name: str,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    encoder_init: str = "imagenet",
    encoder_weights: str | Path | None = None,
    imgsz: int = 512,
) -> BaselineModel:
    """Build a baseline by name; see :class:`BaselineModel` for the arguments."""
    return BaselineModel(
        name,
        num_classes=num_classes,
        class_names=class_names,
        encoder_init=encoder_init,
        encoder_weights=encoder_weights,
        imgsz=imgsz,
    )
