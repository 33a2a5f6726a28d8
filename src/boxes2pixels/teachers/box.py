"""The ``box`` teacher: each mask is its filled box (the naive baseline; no weights)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import box_masks


class BoxTeacher:
    """Fills every box. A baseline that shows what a real teacher adds.

    Args:
        shrink: pixels removed from each side of a box before filling (0 keeps it as is).
    """

    name = "box"
    input_size: int | None = None  # works at the image's own resolution

    def __init__(self, shrink: float = 0.0) -> None:
        if shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}")
        self.shrink = float(shrink)

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """N×H×W boolean masks: the pixels whose centre lies inside each box."""
        height, width = image.shape[:2]
        return box_masks(np.asarray(boxes, dtype=np.float32), height, width, margin=-self.shrink)

    def describe(self) -> dict[str, Any]:
        """Options for the manifest."""
        return {"options": {"shrink": self.shrink}}
