"""A boxes2pixels teacher plugin: dark-on-light Otsu thresholding inside each box.

Install with ``pip install ./examples/threshold_teacher`` and run
``b2p label data.yaml --teacher threshold --out masks``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


class ThresholdTeacher:
    """Marks the pixels of each box that are darker than Otsu's threshold inside that box.

    Args:
        invert: mark the brighter pixels instead (light defects on a dark surface).
    """

    name = "threshold"

    def __init__(self, invert: bool = False) -> None:
        self.invert = bool(invert)

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """N×H×W boolean masks for an RGB uint8 image and N×4 xyxy pixel boxes."""
        height, width = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        masks = np.zeros((len(boxes), height, width), dtype=bool)
        mode = cv2.THRESH_BINARY if self.invert else cv2.THRESH_BINARY_INV
        for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float32)):
            c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            c1, r1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
            if c1 <= c0 or r1 <= r0:
                continue
            _, crop = cv2.threshold(gray[r0:r1, c0:c1], 0, 1, mode | cv2.THRESH_OTSU)
            masks[i, r0:r1, c0:c1] = crop.astype(bool)
        return masks

    def describe(self) -> dict[str, Any]:
        """What the labeling manifest records."""
        return {"options": {"invert": self.invert}}
