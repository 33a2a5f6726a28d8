"""What a trained model adds to the review: its label map with per-pixel confidence, and the
confident defect regions that no box covers ("possible missed defects")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np

from ..inference import plan_inference, segment
from ..teachers.base import box_masks


@dataclass(frozen=True)
class ModelView:
    """A model's answer for one image: label map (H×W uint8) and softmax confidence (H×W)."""

    labels: np.ndarray
    confidence: np.ndarray


def model_view(model: Any, image: np.ndarray, imgsz: int | None = None) -> ModelView:
    """Run ``model`` (any :class:`~boxes2pixels.inference.SegmentationModel`) on one RGB image
    as ``b2p predict`` does at fp32: whole and letterboxed (long side ``imgsz`` or the
    model's own), or tiled at native resolution for a model trained on windows. Returns the
    label map and the winning class's softmax probability per pixel."""
    plan = plan_inference(model, imgsz=imgsz, precision="fp32")
    result = segment(model, image, plan, confidence=True)
    return ModelView(result.labels[0], cast("list[np.ndarray]", result.confidence)[0])


@dataclass(frozen=True)
class MissedDefect:
    """A confident predicted defect region outside every box."""

    cls: int
    box: tuple[int, int, int, int]
    area: int
    confidence: float


def missed_defects(
    view: ModelView,
    boxes: np.ndarray,
    *,
    min_confidence: float,
    min_area: int,
    margin: float,
) -> list[MissedDefect]:
    """Regions (8-connected) of confident defect pixels that touch no box grown by ``margin``.

    ``cls`` is the region's most frequent YOLO class (label value − 1); ``box`` its pixel
    ``x0, y0, x1, y1`` (end exclusive); ``confidence`` its mean softmax confidence.
    """
    height, width = view.labels.shape
    confident = (view.labels > 0) & (view.confidence >= min_confidence)
    count, regions, stats, _ = cv2.connectedComponentsWithStats(
        confident.astype(np.uint8), connectivity=8
    )
    if count <= 1:
        return []
    covered = box_masks(boxes, height, width, margin).any(axis=0) if len(boxes) else None
    found = []
    for r in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[r])
        if area < min_area:
            continue
        pixels = regions == r
        if covered is not None and covered[pixels].any():
            continue
        values = np.bincount(view.labels[pixels], minlength=2)
        found.append(
            MissedDefect(
                cls=int(values[1:].argmax()),
                box=(x, y, x + w, y + h),
                area=area,
                confidence=float(view.confidence[pixels].mean()),
            )
        )
    return sorted(found, key=lambda m: -m.confidence)
