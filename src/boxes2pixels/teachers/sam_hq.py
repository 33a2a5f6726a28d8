"""HQ-SAM teacher (Segment Anything in High Quality, PyPI ``segment-anything-hq``).

HQ-SAM keeps SAM's image encoder and prompt encoder and adds a high-quality output token to
the mask decoder, fed with early encoder features, for finer boundaries and thin structures.
The teacher works like :class:`~boxes2pixels.teachers.sam.SamTeacher`: one encoder pass per
image (which also yields the intermediate features, kept in fp32 like the embedding), then
all boxes in batched decoder calls.

Install with ``pip install "boxes2pixels[sam-hq]"``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .sam import SamTeacher


class SamHqTeacher(SamTeacher):
    """Box-prompted HQ-SAM (module ``segment_anything_hq``).

    ``device``, ``precision``, ``multimask``, ``clip_margin``, ``min_area``, ``box_batch``,
    ``expected_sha256`` and ``runtime`` are as for
    :class:`~boxes2pixels.teachers.sam.SamTeacher` (the encoder runs in PyTorch: ``auto``
    means ``torch``, ``openvino`` is an error). HQ-SAM's decoder already picks its best
    candidate, so ``multimask`` changes which SAM mask is mixed in.

    Args:
        checkpoint: local path or ``hf://`` address of an official HQ-SAM state dict
            (``sam_hq_vit_b.pth``, ``sam_hq_vit_l.pth``, ``sam_hq_vit_h.pth``,
            ``sam_hq_vit_tiny.pth``; e.g. ``hf://lkeab/hq-sam/sam_hq_vit_b.pth``).
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``vit_tiny`` (Light HQ-SAM, a TinyViT
            encoder); ``None`` reads it from the checkpoint.
        hq_token_only: use only the HQ token's mask (default: the SAM mask plus the HQ
            mask's logits, HQ-SAM's own default for box prompts).
    """

    name = "sam-hq"
    model_types = ("vit_b", "vit_l", "vit_h", "vit_tiny")
    default_model_type = "vit_b"
    package = "segment_anything_hq"
    distribution = "segment-anything-hq"
    encoder_runtimes = ("torch",)
    extra = "sam-hq"  # pip install "boxes2pixels[sam-hq]"

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
        hq_token_only: bool = False,
        runtime: str | None = None,
    ) -> None:
        self.hq_token_only = bool(hq_token_only)
        super().__init__(
            checkpoint=checkpoint,
            model_type=model_type,
            device=device,
            precision=precision,
            multimask=multimask,
            clip_margin=clip_margin,
            min_area=min_area,
            box_batch=box_batch,
            expected_sha256=expected_sha256,
            runtime=runtime,
        )

    def _import_backend(self) -> Any:
        # the light model's TinyViT re-registers timm models and imports deprecated timm paths
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super()._import_backend()

    def _encode(self, image: np.ndarray) -> None:
        super()._encode(image)
        self.predictor.interm_features = [f.float() for f in self.predictor.interm_features]

    def _decode(self, boxes: np.ndarray, size: tuple[int, int]) -> tuple[Any, Any]:
        predictor = self.predictor
        boxes_t = predictor.transform.apply_boxes_torch(
            self.torch.as_tensor(boxes, device=self.device), size
        )
        logits, iou, _ = predictor.predict_torch(
            point_coords=None,
            point_labels=None,
            boxes=boxes_t,
            multimask_output=self.multimask,
            return_logits=True,
            hq_token_only=self.hq_token_only,
        )
        return logits, iou

    def _release(self) -> None:
        super()._release()
        self.predictor.interm_features = None

    def describe(self) -> dict[str, Any]:
        """As :meth:`SamTeacher.describe`, with ``hq_token_only`` among the options."""
        described = super().describe()
        described["options"]["hq_token_only"] = self.hq_token_only
        return described
