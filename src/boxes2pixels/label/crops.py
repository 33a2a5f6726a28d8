"""Box-centred crops for teachers that shrink what they see (``b2p label --crop``).

A SAM-family teacher resizes its input to 1024 px on the long side and answers on a
256-cell mask grid, so in a 5280×2970 photo one mask cell covers about 20×20 pixels and a
2-px crack cannot survive. Given a crop around the box instead, the teacher looks at the
defect at (or above) its native resolution.

The plan for one image (:func:`plan_crops`):

- each box gets a crop: the box grown by ``context`` times its width and height on each
  side, widened to at least ``min_size`` pixels per side (centred on the box where the
  image allows), clamped to the image;
- boxes whose crops overlap share one crop (the bounding rectangle of their crops,
  repeated until no two crops overlap), so one encoder pass serves them all;
- each crop is one teacher call with the crop's boxes (shifted into the crop); the masks
  are pasted back at full resolution (:func:`segment_in_crops`); outside its crop a box's
  mask is empty. The teacher's own options (``clip_margin``, ``min_area``) apply inside
  the crop; the overlap policy applies afterwards, on the full-resolution masks.

Modes (:class:`CropPolicy`): ``off`` gives the teacher the whole photo (the paper's way);
``on`` crops for every teacher; ``auto`` (the default) crops for teachers that declare a
working resolution (``input_size``, see :class:`~boxes2pixels.teachers.base.Teacher`)
and leaves full-resolution teachers (``grabcut``, ``box``, plugins without the attribute)
on the whole photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..teachers.base import box_pixel_ranges, teacher_input_size

CROP_MODES = ("auto", "on", "off")
CROP_CONTEXT = 0.1
"""Margin around a box on each side, as a fraction of the box's width (height)."""
CROP_MIN_SIZE = 256
"""Smallest crop side in pixels: a SAM-family teacher's 256-cell mask grid then has one
cell per pixel or finer, and the teacher still sees the defect's surroundings."""

Segment = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``segment(image, boxes) -> N×h×w bool``: the teacher call on one (cropped) image."""


@dataclass(frozen=True)
class CropPolicy:
    """When and how the labelling layer gives a teacher crops instead of the whole photo.

    Attributes:
        mode: ``auto`` (crop for teachers with an ``input_size``), ``on`` or ``off``.
        context: margin on each side of a box, as a fraction of its width and height.
        min_size: smallest crop side in pixels.
    """

    mode: str = "auto"
    context: float = CROP_CONTEXT
    min_size: int = CROP_MIN_SIZE

    def __post_init__(self) -> None:
        if self.mode not in CROP_MODES:
            raise ConfigError(f"unknown crop mode '{self.mode}' (use {', '.join(CROP_MODES)})")
        if self.context < 0:
            raise ConfigError(f"crop context must be >= 0, got {self.context}")
        if self.min_size < 1:
            raise ConfigError(f"crop min_size must be >= 1, got {self.min_size}")

    def applies_to(self, teacher: Any) -> bool:
        """Whether ``teacher`` gets crops under this policy."""
        if self.mode == "auto":
            return teacher_input_size(teacher) is not None
        return self.mode == "on"

    def describe(self, teacher: Any) -> dict[str, Any]:
        """What the manifest records: the mode, whether it applies, its sizes, the teacher's
        ``input_size``."""
        return {
            "mode": self.mode,
            "applied": self.applies_to(teacher),
            "context": self.context,
            "min_size": self.min_size,
            "teacher_input_size": teacher_input_size(teacher),
        }


def as_policy(crop: str | CropPolicy | None) -> CropPolicy:
    """``crop`` as a :class:`CropPolicy` (a mode name gets the default sizes; ``None``: off).

    Raises:
        ConfigError: an unknown mode.
    """
    if isinstance(crop, CropPolicy):
        return crop
    return CropPolicy(mode="off" if crop is None else str(crop))


@dataclass(frozen=True)
class Crop:
    """One teacher call: a window ``x0, y0, x1, y1`` (end exclusive) and the boxes it serves."""

    x0: int
    y0: int
    x1: int
    y1: int
    boxes: tuple[int, ...]


def _span(lo: int, hi: int, grow: float, min_len: int, limit: int) -> tuple[int, int]:
    """``lo..hi`` grown by ``grow`` on each side, at least ``min_len`` long, within 0..limit."""
    a, b = int(np.floor(lo - grow)), int(np.ceil(hi + grow))
    short = min_len - (b - a)
    if short > 0:
        a, b = a - short // 2, b + short - short // 2
    if a < 0:
        a, b = 0, b - a
    if b > limit:
        a, b = a - (b - limit), limit
    return max(a, 0), min(b, limit)


def box_crop(
    box: np.ndarray, width: int, height: int, policy: CropPolicy
) -> tuple[int, int, int, int]:
    """The crop window ``x0, y0, x1, y1`` of one box (see the module's rules)."""
    x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
    cx0, cx1 = _span(x0, x1, policy.context * (x1 - x0), policy.min_size, width)
    cy0, cy1 = _span(y0, y1, policy.context * (y1 - y0), policy.min_size, height)
    return cx0, cy0, cx1, cy1


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def plan_crops(boxes: np.ndarray, width: int, height: int, policy: CropPolicy) -> list[Crop]:
    """The crops of one image's boxes (N×4 pixel xyxy): one per group of overlapping crops.

    Deterministic; every box is in exactly one crop; crops are ordered top-left first.
    """
    groups = [
        (box_crop(box, width, height, policy), [i])
        for i, box in enumerate(np.asarray(boxes, np.float64))
    ]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                (a, ia), (b, ib) = groups[i], groups[j]
                if _overlap(a, b):
                    rect = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    groups[i] = (rect, ia + ib)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    crops = [Crop(*rect, boxes=tuple(sorted(idx))) for rect, idx in groups]
    return sorted(crops, key=lambda c: (c.y0, c.x0, c.boxes))


def segment_in_crops(
    segment: Segment, image: np.ndarray, boxes: np.ndarray, crops: list[Crop]
) -> np.ndarray:
    """N×H×W masks of ``boxes``: one ``segment`` call per crop, pasted back in place."""
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, np.float32)
    out = np.zeros((len(boxes), height, width), dtype=bool)
    for crop in crops:
        idx = list(crop.boxes)
        shift = np.array([crop.x0, crop.y0, crop.x0, crop.y0], np.float32)
        window = np.ascontiguousarray(image[crop.y0 : crop.y1, crop.x0 : crop.x1])
        out[idx, crop.y0 : crop.y1, crop.x0 : crop.x1] = segment(window, boxes[idx] - shift)
    return out
