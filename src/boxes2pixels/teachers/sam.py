"""SAM teachers: Segment Anything (vit_b/l/h) and MobileSAM (vit_t), prompted with boxes.

Per image the image encoder runs once; all of the image's boxes then go through the prompt
encoder and mask decoder together (``SamPredictor.predict_torch`` with boxes transformed by
``apply_boxes_torch``).
"""

from __future__ import annotations

import contextlib
import warnings
from importlib import metadata
from typing import Any

import numpy as np

from .base import clip_to_boxes, remove_small_regions, require
from .checkpoints import (
    check_model_type,
    infer_sam_model_type,
    load_into,
    load_state_dict,
    resolve_checkpoint,
)


class SamTeacher:
    """Box-prompted Segment Anything (package ``segment-anything``).

    Args:
        checkpoint: local path or ``hf://owner/repo/path/file[@revision]`` of an official-layout
            state dict (e.g. ``sam_vit_b_01ec64.pth``). Required: there is no silent fallback
            to random weights.
        model_type: ``vit_b``, ``vit_l`` or ``vit_h``; ``None`` reads it from the checkpoint.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``.
        precision: ``fp32`` | ``bf16`` | ``fp16`` | ``auto`` for the image encoder (autocast);
            ``None`` means fp16 on CUDA and fp32 elsewhere. The prompt decoder runs in fp32.
        multimask: ask SAM for its three candidate masks and keep the one with the highest
            predicted IoU (default: SAM's single-mask output, as in the paper).
        clip_margin: if set, remove mask pixels farther than this many pixels outside the box.
        min_area: drop connected regions smaller than this many pixels (0 keeps all).
        box_batch: most boxes per decoder call; bounds memory on images with many boxes.
        expected_sha256: if set, the checkpoint's sha256 must match.
    """

    name = "sam"
    model_types: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")
    default_model_type = "vit_b"
    package = "segment_anything"
    distribution = "segment-anything"

    def __init__(
        self,
        checkpoint: str | None = None,
        model_type: str | None = None,
        device: str = "auto",
        precision: str | None = None,
        multimask: bool = False,
        clip_margin: float | None = None,
        min_area: int = 0,
        box_batch: int = 64,
        expected_sha256: str | None = None,
    ) -> None:
        torch = require("torch", f"the {self.name} teacher")
        from ..device import resolve_device, resolve_precision
        from ..errors import CheckpointError

        if model_type is not None and model_type not in self.model_types:
            raise CheckpointError(
                f"The {self.name} teacher has model types {', '.join(self.model_types)}; "
                f"got '{model_type}'."
            )
        module = self._import_backend()
        self.device = resolve_device(device)
        if precision is None:
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.multimask = bool(multimask)
        self.clip_margin = None if clip_margin is None else float(clip_margin)
        self.min_area = int(min_area)
        self.box_batch = int(box_batch)

        wanted = model_type or self.default_model_type
        resolved = resolve_checkpoint(checkpoint, wanted, self.name, expected_sha256)
        state_dict = load_state_dict(resolved.path, wanted, self.name)
        if model_type is None:
            found = infer_sam_model_type(state_dict)
            model_type = found if found in self.model_types else self.default_model_type
        self.model_type = model_type
        self.checkpoint = resolved
        check_model_type(state_dict, resolved.path, model_type, self.name)
        model = module.sam_model_registry[model_type]()
        load_into(model, state_dict, resolved.path, model_type, self.name)
        del state_dict
        model.eval().to(self.device)
        self.torch = torch
        self.predictor = module.SamPredictor(model)

    def _import_backend(self) -> Any:
        return require(self.package, f"the {self.name} teacher")

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return self.torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """N×H×W boolean masks: one encoder pass, then all boxes in batched decoder calls."""
        torch = self.torch
        predictor = self.predictor
        height, width = image.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = np.zeros((len(boxes), height, width), dtype=bool)
        if len(boxes) == 0:
            return out
        with torch.inference_mode():
            with self._autocast():
                predictor.set_image(image)
            predictor.features = predictor.features.float()
            boxes_t = predictor.transform.apply_boxes_torch(
                torch.as_tensor(boxes, device=self.device), (height, width)
            )
            for start in range(0, len(boxes), self.box_batch):
                chunk = boxes_t[start : start + self.box_batch]
                masks, iou, _ = predictor.predict_torch(
                    point_coords=None,
                    point_labels=None,
                    boxes=chunk,
                    multimask_output=self.multimask,
                )
                if self.multimask:
                    best = iou.argmax(dim=1)
                    masks = masks[torch.arange(len(chunk), device=masks.device), best]
                else:
                    masks = masks[:, 0]
                out[start : start + len(chunk)] = masks.cpu().numpy()
        predictor.reset_image()
        if self.clip_margin is not None:
            out = clip_to_boxes(out, boxes, self.clip_margin)
        return remove_small_regions(out, self.min_area)

    def describe(self) -> dict[str, Any]:
        """Options, checkpoint, sha256 and backend version for the manifest."""
        try:
            backend = f"{self.distribution} {metadata.version(self.distribution)}"
        except metadata.PackageNotFoundError:
            backend = self.distribution
        return {
            "options": {
                "model_type": self.model_type,
                "device": str(self.device),
                "precision": self.precision,
                "multimask": self.multimask,
                "clip_margin": self.clip_margin,
                "min_area": self.min_area,
            },
            "checkpoint": self.checkpoint.spec,
            "sha256": self.checkpoint.sha256,
            "backend": backend,
        }


class MobileSamTeacher(SamTeacher):
    """Box-prompted MobileSAM (module ``mobile_sam`` from PyPI ``mobilesam-mirror``; vit_t).

    Same options as :class:`SamTeacher`; the checkpoint is ``mobile_sam.pt``.
    """

    name = "mobile-sam"
    model_types = ("vit_t",)
    default_model_type = "vit_t"
    package = "mobile_sam"
    distribution = "mobilesam-mirror"

    def _import_backend(self) -> Any:
        # mobile_sam re-registers TinyViT models in timm and imports deprecated timm paths.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super()._import_backend()
