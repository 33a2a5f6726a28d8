"""The Boxes2Pixels student: DINOv2 ViT-S/14 features + hierarchical decoder, Hub save/load."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..errors import Boxes2PixelsError, CheckpointError, ConfigError, HubError
from ..hub import describe_location, hub_download
from ..inference.segmentation import predict_images
from ..io import atomic_path, write_text_atomic
from ..weights_file import load_weights, write_weights
from .backbone import (
    BACKBONE_INITS,
    DEFAULT_BACKBONE,
    Backbone,
    backbone_weights_skipped,
    collapse_warning,
    no_backbone_weights,
)
from .decoder import Decoder

logger = logging.getLogger(__name__)

DEFAULT_CLASS_NAMES_3 = ["background", "dirt", "damage"]
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def backbone_weights_record(weights: str | Path | dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``config.json`` keeps of a backbone weights file: its name and sha256, no path.

    A record (a dict) is accepted only while a saved student is loaded (inside
    :func:`no_backbone_weights`); an older config's path becomes a record of its name.

    Raises:
        ConfigError: a record where a new student needs the weights file itself.
    """
    if weights is None:
        return None
    if isinstance(weights, dict):
        if not backbone_weights_skipped():
            raise ConfigError(
                f"backbone_weights {weights} records a weights file, it is not one: pass the "
                "file itself to build a new student"
            )
        return {"name": str(weights.get("name")), "sha256": weights.get("sha256")}
    path = Path(weights)
    if not path.is_file():
        return {"name": path.name, "sha256": None}
    from huggingface_hub.utils.sha import sha_fileobj

    with open(path, "rb") as fh:
        return {"name": path.name, "sha256": sha_fileobj(fh).hex()}


class RandomBackboneWarning(UserWarning):
    """A randomly initialised backbone is (mostly) frozen, so its features collapse."""


class Student(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="boxes2pixels",
    tags=["image-segmentation", "boxes2pixels", "weak-supervision", "defect-detection"],
    pipeline_tag="image-segmentation",
    license="mit",
):
    """Compact segmentation student of Boxes2Pixels (paper defaults).

    DINOv2 ViT-S/14 features of blocks 1, 2, 4, 7 (final LayerNorm applied, blocks 8–11 not
    computed), a top-down fusion decoder with PixelShuffle upsampling, a CNN detail branch, and
    two heads: ``binary`` (defect vs background) and ``fine`` (``num_classes`` classes).

    Args:
        num_classes: classes of the fine head, background included (YOLO names + 1).
        class_names: names of the classes, background first; defaults to
            ``["background", "dirt", "damage"]`` for 3 classes, ``class_k`` otherwise.
        backbone: timm ViT model name.
        feature_indices: backbone blocks whose outputs feed the decoder; ``None`` gives the
            paper's 1, 2, 4, 7 scaled to the backbone's depth.
        decoder_channels: width of laterals and fusion blocks.
        detail_branch: use the CNN detail branch (ablation switch).
        binary_head: use the binary defect head (ablation switch).
        backbone_mode: ``bitfit`` (biases and norms train), ``frozen`` or ``full``.
        backbone_init: ``pretrained`` (timm hub weights), ``file`` (``backbone_weights``) or
            ``random``. Passing ``backbone_weights`` with the default ``pretrained`` means ``file``.
        backbone_weights: local weights file (official DINOv2 / DINOv3 ``.pth`` or timm
            ``.safetensors``). ``config.json`` records only its file name and sha256 (never a
            local path); such a record is accepted when a saved student is loaded.
        imgsz: long side of the letterboxed input used by :meth:`predict`.
        mean: normalisation mean; ``None`` takes the backbone's timm ``pretrained_cfg``.
        std: normalisation std; ``None`` takes the backbone's timm ``pretrained_cfg``.
        train_layerscale: also train LayerScale factors in ``bitfit``/``frozen`` mode (needed
            to train from a random backbone without ``full`` mode).
        crop_size: the window side it was trained on at native resolution (``b2p train
            --crop-size``); when positive, ``b2p predict`` and ``evaluate`` segment images
            tiled at their own resolution with windows of this size. 0 (the default, and
            what configs saved before it existed mean): whole images resized to ``imgsz``.

    Raises:
        WeightsUnavailableError: ``pretrained`` weights cannot be had here.
        CheckpointError: ``backbone_weights`` is unreadable or does not fit.
    """

    def __init__(
        self,
        num_classes: int = 3,
        class_names: list[str] | None = None,
        backbone: str = DEFAULT_BACKBONE,
        feature_indices: list[int] | None = None,
        decoder_channels: int = 256,
        detail_branch: bool = True,
        binary_head: bool = True,
        backbone_mode: str = "bitfit",
        backbone_init: str = "pretrained",
        backbone_weights: str | Path | dict[str, Any] | None = None,
        imgsz: int = 518,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        train_layerscale: bool = False,
        crop_size: int = 0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2 (background + 1), got {num_classes}")
        if class_names is None:
            class_names = (
                list(DEFAULT_CLASS_NAMES_3)
                if num_classes == 3
                else ["background", *(f"class_{k}" for k in range(num_classes - 1))]
            )
        class_names = [str(n) for n in class_names]
        if len(class_names) != num_classes:
            raise ConfigError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        if backbone_weights is not None and backbone_init == "pretrained":
            backbone_init = "file"
        if backbone_init not in BACKBONE_INITS:
            raise ConfigError(
                f"unknown backbone_init '{backbone_init}' (use {', '.join(BACKBONE_INITS)})"
            )
        if backbone_init == "random" and backbone_weights is not None:
            raise ConfigError("backbone_init='random' contradicts backbone_weights; choose one")
        if imgsz < 1:
            raise ConfigError(f"imgsz must be positive (got {imgsz})")
        if crop_size < 0:
            raise ConfigError(f"crop_size must be 0 or positive (got {crop_size})")
        weights_record = backbone_weights_record(backbone_weights)
        if isinstance(backbone_weights, dict):  # a record from config.json, no file to read
            backbone_weights = None

        self.backbone = Backbone(
            backbone,
            feature_indices=feature_indices,
            init=backbone_init,
            weights=backbone_weights,
            mode=backbone_mode,
            train_layerscale=train_layerscale,
        )
        self.decoder = Decoder(
            self.backbone.embed_dim,
            len(self.backbone.feature_indices),
            num_classes,
            channels=decoder_channels,
            detail_branch=detail_branch,
            binary_head=binary_head,
        )
        cfg = self.backbone.pretrained_cfg
        self.mean = [float(v) for v in (mean if mean is not None else cfg.get("mean", (0.5,) * 3))]
        self.std = [float(v) for v in (std if std is not None else cfg.get("std", (0.5,) * 3))]
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("mean and std need three values (R, G, B)")
        self.num_classes = num_classes
        self.class_names = class_names
        self.imgsz = int(imgsz)
        self.crop_size = int(crop_size)
        self.backbone_init = backbone_init
        self.metrics: dict[str, Any] | None = None
        # The full, resolved configuration: what save_pretrained writes to config.json.
        self._hub_mixin_config = {
            "num_classes": num_classes,
            "class_names": class_names,
            "backbone": backbone,
            "feature_indices": list(self.backbone.feature_indices),
            "decoder_channels": decoder_channels,
            "detail_branch": detail_branch,
            "binary_head": binary_head,
            "backbone_mode": backbone_mode,
            "backbone_init": backbone_init,
            "backbone_weights": weights_record,
            "imgsz": self.imgsz,
            "mean": self.mean,
            "std": self.std,
            "train_layerscale": train_layerscale,
            "crop_size": self.crop_size,
        }
        problem = collapse_warning(backbone_init, backbone_mode, train_layerscale)
        if problem and self.backbone.has_layerscale and not backbone_weights_skipped():
            warnings.warn(problem, RandomBackboneWarning, stacklevel=2)

    # ------------------------------------------------------------------ description
    @property
    def config(self) -> dict[str, Any]:
        """The resolved constructor arguments (a copy of what ``config.json`` holds)."""
        return json.loads(json.dumps(self._hub_mixin_config))

    @property
    def patch_size(self) -> int:
        """Input sides must be multiples of this (14 for DINOv2)."""
        return self.backbone.patch_size

    @property
    def random_backbone(self) -> bool:
        """True when the backbone was originally initialised with random weights."""
        return self.backbone_init == "random"

    @property
    def has_binary_head(self) -> bool:
        """True when the binary defect head is present."""
        return self.decoder.binary_head is not None

    @property
    def num_parameters(self) -> int:
        """Total number of parameters."""
        return sum(p.numel() for p in self.parameters())

    @property
    def num_trainable_parameters(self) -> int:
        """Number of parameters with ``requires_grad``."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary: architecture, initialisation and parameter counts."""
        return {
            "backbone": self.backbone.name,
            "backbone_init": self.backbone_init,
            "backbone_weights": self._hub_mixin_config["backbone_weights"],
            "random_backbone": self.random_backbone,
            "backbone_mode": self.backbone.mode,
            "backbone_blocks": f"{self.backbone.depth} of {self.backbone.original_depth}",
            "feature_indices": list(self.backbone.feature_indices),
            "detail_branch": self.decoder.detail is not None,
            "binary_head": self.has_binary_head,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "imgsz": self.imgsz,
            "crop_size": self.crop_size,
            "patch_size": self.patch_size,
            "parameters": self.num_parameters,
            "trainable_parameters": self.num_trainable_parameters,
        }

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits for a normalised batch N×3×H×W (H and W multiples of the patch size).

        Args:
            x: the normalised batch.
            heads: heads to compute (default: all). Inference asks for ``("fine",)`` only,
                which skips the binary head's work.

        Returns:
            ``{"fine": N×C×H×W}`` and, with the binary head, ``"binary"``: N×2×H×W.

        Raises:
            ConfigError: wrong shape, or sides that are not multiples of the patch size.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(f"expected a float tensor N×3×H×W, got shape {tuple(x.shape)}")
        p = self.patch_size
        height, width = int(x.shape[-2]), int(x.shape[-1])
        if height % p or width % p:
            raise ConfigError(
                f"input height and width must be multiples of the patch size {p}, got "
                f"{height}×{width}; letterbox the image first "
                "(boxes2pixels.geometry.letterbox pads to multiples of 14)"
            )
        return self.decoder(self.backbone(x), x, heads)

    # ------------------------------------------------------------------ inference
    def predict(
        self,
        images: np.ndarray | list[np.ndarray],
        *,
        imgsz: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        device: str | torch.device | None = None,
    ) -> list[np.ndarray]:
        """Label maps (argmax of the fine head) for RGB images, each at its own size.

        Each image is letterboxed (long side ``imgsz``, aspect ratio kept, padded to patch
        multiples); the logits are cropped, resized bilinearly to the original size and
        argmaxed. A student trained on native-resolution windows (``crop_size``) is run
        tiled at the image's own resolution instead, as ``b2p predict`` runs it (see
        :func:`~boxes2pixels.inference.plan_inference`).

        Args:
            images: an H×W×3 ``uint8`` RGB array, a batch N×H×W×3, or a list of any sizes.
            imgsz: long side for inference; defaults to the model's ``imgsz``.
            batch_size: images per forward pass (images of equal letterboxed size are batched);
                ``None``: 16 on a GPU, 4 on the CPU (``plan_inference``).
            precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast).
            device: run on this device (the model is moved there); default: where the model is.

        Returns:
            One H×W ``uint8`` label map per image (0 background, k+1 class k).
        """
        if self.num_classes > 255:
            raise ConfigError("label maps are uint8: at most 255 classes can be predicted")
        return predict_images(
            self, images, imgsz=imgsz, batch_size=batch_size, precision=precision, device=device
        )

    # ------------------------------------------------------------------ saving
    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | Path,
        *,
        metrics: dict[str, Any] | None = None,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card.

        Each file is replaced atomically. ``metrics`` (e.g. ``SegmentationScores.to_dict()``)
        are shown in the model card and kept for a later :meth:`push_to_hub`.

        Args:
            save_directory: folder to write (created if needed).
            metrics: evaluation figures for the model card.
            config: override of the configuration (defaults to the resolved constructor args).
            repo_id: repository for ``push_to_hub=True``.
            push_to_hub: also upload the folder to the Hugging Face Hub.
            model_card_kwargs: extra values for the model card (``dataset``, ``notes``).
            **push_to_hub_kwargs: passed to :meth:`push_to_hub`.
        """
        if metrics is not None:
            self.metrics = dict(metrics)
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        config = dict(config if config is not None else self._hub_mixin_config)
        with atomic_path(save_directory / WEIGHTS_NAME) as tmp_path:
            self._write_weights(tmp_path)
        write_text_atomic(save_directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        write_text_atomic(save_directory / CARD_NAME, self.model_card(**(model_card_kwargs or {})))
        if push_to_hub:
            kwargs = dict(push_to_hub_kwargs)
            kwargs["config"] = config
            return self.push_to_hub(
                repo_id=repo_id or save_directory.name,
                model_card_kwargs=model_card_kwargs,
                **kwargs,
            )
        return None

    def _write_weights(self, path: Path) -> None:
        """Write the weights (with their sha256, byte-reproducible; see ``weights_file``)."""
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        write_weights(path, state, {"format": "pt", "library": "boxes2pixels"})

    def _save_pretrained(self, save_directory: Path) -> None:
        self._write_weights(Path(save_directory) / WEIGHTS_NAME)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        """The model card as a ``huggingface_hub.ModelCard`` (used by ``push_to_hub``)."""
        from huggingface_hub import ModelCard

        return ModelCard(self.model_card(**kwargs))

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:  # type: ignore[override]
        """Upload the model (weights, config, card) to the Hugging Face Hub repository
        ``repo_id``; the arguments are ``PyTorchModelHubMixin.push_to_hub``'s.

        Raises:
            HubError: the Hub cannot be reached (offline, no network), the token is missing
                or refused, or the upload failed; the message names ``repo_id``.
        """
        from ..hub import hub_offline

        try:
            return super().push_to_hub(repo_id, **kwargs)
        except Boxes2PixelsError:
            raise
        except Exception as exc:  # network, offline mode, auth, refused upload
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            offline = " HF_HUB_OFFLINE is set." if hub_offline() else ""
            raise HubError(
                f"cannot push the model to the Hugging Face Hub repository '{repo_id}' "
                f"({type(exc).__name__}: {first[:200]}).{offline} Check the network, "
                "`hf auth login` (or HF_TOKEN) and the repository name; the model folder "
                "written by save_pretrained is unaffected."
            ) from exc

    def model_card(self, dataset: str | None = None, notes: str | None = None, **_: Any) -> str:
        """Markdown model card: architecture, initialisation, classes, usage and metrics."""
        from .card import model_card

        return model_card(self, dataset=dataset, notes=notes)

    # ------------------------------------------------------------------ loading
    @classmethod
    def _from_pretrained(  # type: ignore[override]
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        config: dict | None = None,
        proxies: dict | None = None,
        resume_download: bool | None = None,
        **model_kwargs: Any,
    ) -> Student:
        """Build the architecture from ``config.json`` and load ``model.safetensors``.

        The backbone's original initialisation (hub download, weights file) is not repeated:
        every weight comes from the student's own safetensors file, whose recorded sha256
        is checked (a damaged file is a ``CheckpointError``). ``proxies`` and
        ``resume_download`` are what ``huggingface_hub`` < 1.0 passes (``proxies`` is
        forwarded to the download there; ``resume_download`` is deprecated and ignored).
        """
        if os.path.isdir(model_id):
            if config is None:
                raise CheckpointError(f"{Path(model_id) / CONFIG_NAME}: model config not found")
            weights_file = Path(model_id) / WEIGHTS_NAME
            if not weights_file.is_file():
                raise CheckpointError(f"{weights_file}: model weights not found")
        else:
            if config is None:
                raise CheckpointError(
                    f"cannot load a student from the Hugging Face Hub: the "
                    f"{describe_location(model_id, CONFIG_NAME, revision, 'model')} is missing"
                )
            extra = {"proxies": proxies} if proxies is not None else {}
            weights_file = hub_download(
                model_id,
                WEIGHTS_NAME,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
                **extra,
            )
        with no_backbone_weights():
            model = cls(**model_kwargs)
        state = load_weights(weights_file, device=str(map_location))
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise CheckpointError(f"{weights_file}: weights do not fit the config ({exc})") from exc
        if strict and (result.missing_keys or result.unexpected_keys):
            raise CheckpointError(
                f"{weights_file}: weights do not fit the config: missing "
                f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        model.to(map_location)
        model.eval()
        return model
