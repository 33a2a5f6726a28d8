"""One image's boxes → one label map: the teacher call, its checks, coverage, overlap policy.

:func:`label_image` is the per-image step of :func:`boxes2pixels.label.label_dataset`; work
that changes how one image is labelled (a teacher run on crops, per-box scores) belongs here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.yolo import ImageLabels
from ..errors import ConfigError
from ..teachers.base import Teacher, box_pixel_ranges
from .boxscores import BoxRecord, CropScores, box_records, checked_output, mark_ignored
from .crops import CropPolicy, plan_crops, segment_in_crops

OVERLAP_POLICIES = ("smaller", "larger", "class-order")


@dataclass
class LabeledImage:
    """What labelling one image produced.

    Attributes:
        mask: H×W ``uint8`` label map: 0 background, k+1 YOLO class k.
        boxes_per_class: int64 count of boxes per YOLO class.
        coverage_sum: per YOLO class, the sum over its boxes of the fraction of the box's
            pixels that the box's own mask covers (divide by ``boxes_per_class`` for a mean).
        passes: teacher calls (encoder passes) the image took: 0 without boxes, 1 on the
            whole photo, one per crop with ``--crop``.
        box_records: per box, in label-file order: class, box, mask area, coverage, the
            teacher's scores and whether ``min_score`` marked it ignore
            (:class:`~boxes2pixels.label.boxscores.BoxRecord`).
    """

    mask: np.ndarray
    boxes_per_class: np.ndarray
    coverage_sum: np.ndarray
    passes: int = 0
    box_records: list[BoxRecord] = field(default_factory=list)

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


def label_image(
    teacher: Teacher,
    image: np.ndarray,
    labels: ImageLabels,
    num_classes: int,
    overlap: str = "smaller",
    crop: CropPolicy | None = None,
    min_score: float | None = None,
) -> LabeledImage:
    """Label one image: its boxes through the teacher, merged with the ``overlap`` policy.

    An image without boxes gets an all-background map without calling the teacher. With
    ``min_score``, boxes whose teacher score is below it are marked ignore (255) instead of
    painted (:mod:`boxes2pixels.label.boxscores`).

    Args:
        teacher: the teacher that turns boxes into masks.
        image: RGB ``uint8`` H×W×3.
        labels: the image's boxes.
        num_classes: number of YOLO classes (``len(names)``).
        overlap: ``smaller`` | ``larger`` | ``class-order`` (see :func:`combine_masks`).
        crop: give the teacher box-centred crops when the policy applies to it
            (:mod:`boxes2pixels.label.crops`); ``None`` or ``off``: the whole photo.
        min_score: ignore boxes whose score (the lower of predicted IoU and stability) is
            below this; ``None`` trusts every mask.
    """
    height, width = image.shape[:2]
    per_class = np.bincount(labels.classes, minlength=num_classes).astype(np.int64)
    cov = np.zeros(num_classes)
    if len(labels) == 0:
        return LabeledImage(np.zeros((height, width), dtype=np.uint8), per_class, cov)
    boxes = labels.xyxy(width, height)
    if crop is not None and crop.applies_to(teacher):
        crops = plan_crops(boxes, width, height, crop)
        scored = CropScores(teacher, len(boxes), crops)
        output = scored.output(segment_in_crops(scored, image, boxes, crops))
        passes = len(crops)
    else:
        output, passes = checked_output(teacher, image, boxes), 1
    masks = output.masks
    coverage = box_coverage(masks, boxes)
    np.add.at(cov, labels.classes, coverage)
    records = box_records(output, boxes, labels.classes, coverage, min_score)
    ignored = np.array([r.ignored for r in records])
    if ignored.any():
        label_map = combine_masks(masks[~ignored], labels.classes[~ignored], overlap)
        mark_ignored(label_map, boxes, records)
    else:
        label_map = combine_masks(masks, labels.classes, overlap)
    return LabeledImage(label_map, per_class, cov, passes, records)
