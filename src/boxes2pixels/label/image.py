"""One image's boxes → one label map: the teacher call, its checks, coverage, overlap policy.

:func:`label_image` is the per-image step of :func:`boxes2pixels.label.label_dataset`; work
that changes how one image is labelled (a teacher run on crops, per-box scores) belongs here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.yolo import ImageLabels
from ..errors import Boxes2PixelsError, ConfigError
from ..teachers.base import Teacher, box_pixel_ranges

OVERLAP_POLICIES = ("smaller", "larger", "class-order")


@dataclass
class LabeledImage:
    """What labelling one image produced.

    Attributes:
        mask: H×W ``uint8`` label map: 0 background, k+1 YOLO class k.
        boxes_per_class: int64 count of boxes per YOLO class.
        coverage_sum: per YOLO class, the sum over its boxes of the fraction of the box's
            pixels that the box's own mask covers (divide by ``boxes_per_class`` for a mean).
    """

    mask: np.ndarray
    boxes_per_class: np.ndarray
    coverage_sum: np.ndarray

    @property
    def boxes(self) -> int:
        """Number of boxes of the image."""
        return int(self.boxes_per_class.sum())


def check_overlap(overlap: str) -> None:
    """Raise ``ConfigError`` unless ``overlap`` is one of :data:`OVERLAP_POLICIES`."""
    if overlap not in OVERLAP_POLICIES:
        raise ConfigError(f"unknown overlap policy '{overlap}' (use {', '.join(OVERLAP_POLICIES)})")


def combine_masks(masks: np.ndarray, classes: np.ndarray, overlap: str = "smaller") -> np.ndarray:
    """Rasterise per-box masks (N×H×W bool) of YOLO classes into one label map (H×W uint8).

    Overlap policies, all deterministic:
      * ``smaller`` (default): where masks overlap, the smaller mask wins, so a crack inside a
        large dirt region survives;
      * ``larger``: the larger mask wins;
      * ``class-order``: the higher class id wins (the class listed later in ``names``).
    Ties keep the order of the label file (the later box wins).
    """
    check_overlap(overlap)
    n = masks.shape[0]
    out = np.zeros(masks.shape[1:], dtype=np.uint8)
    if n == 0:
        return out
    if overlap == "class-order":
        key = np.asarray(classes, dtype=np.int64)
    else:
        areas = masks.reshape(n, -1).sum(axis=1).astype(np.int64)
        key = -areas if overlap == "smaller" else areas
    for i in np.argsort(key, kind="stable"):  # painted in order: the last one wins
        out[masks[i]] = int(classes[i]) + 1
    return out


def box_coverage(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Fraction of each box's pixels that its own mask covers (N floats)."""
    height, width = masks.shape[1:]
    cov = np.zeros(len(boxes), dtype=np.float64)
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
        cov[i] = float(masks[i, y0:y1, x0:x1].mean())
    return cov


def teacher_masks(teacher: Teacher, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The teacher's masks for ``boxes`` (N×4 pixel xyxy) as an N×H×W bool array.

    Raises:
        Boxes2PixelsError: the teacher returned another shape than N×H×W.
    """
    height, width = image.shape[:2]
    masks = np.asarray(teacher.segment(image, boxes))
    if masks.shape != (len(boxes), height, width):
        name = getattr(teacher, "name", type(teacher).__name__)
        raise Boxes2PixelsError(
            f"teacher '{name}' returned masks of shape {masks.shape} for "
            f"{len(boxes)} boxes on a {height}×{width} image (expected N×H×W)"
        )
    return masks.astype(bool, copy=False)


def label_image(
    teacher: Teacher,
    image: np.ndarray,
    labels: ImageLabels,
    num_classes: int,
    overlap: str = "smaller",
) -> LabeledImage:
    """Label one image: its boxes through the teacher, merged with the ``overlap`` policy.

    An image without boxes gets an all-background map without calling the teacher.

    Args:
        teacher: the teacher that turns boxes into masks.
        image: RGB ``uint8`` H×W×3.
        labels: the image's boxes.
        num_classes: number of YOLO classes (``len(names)``).
        overlap: ``smaller`` | ``larger`` | ``class-order`` (see :func:`combine_masks`).
    """
    height, width = image.shape[:2]
    per_class = np.bincount(labels.classes, minlength=num_classes).astype(np.int64)
    cov = np.zeros(num_classes)
    if len(labels) == 0:
        return LabeledImage(np.zeros((height, width), dtype=np.uint8), per_class, cov)
    boxes = labels.xyxy(width, height)
    masks = teacher_masks(teacher, image, boxes)
    np.add.at(cov, labels.classes, box_coverage(masks, boxes))
    return LabeledImage(combine_masks(masks, labels.classes, overlap), per_class, cov)
