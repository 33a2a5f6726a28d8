"""The ``grabcut`` teacher: OpenCV GrabCut initialised with each box (no weights)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import box_pixel_ranges, remove_small_regions, require


class GrabCutTeacher:
    """Segments each box with OpenCV's GrabCut, started from the box rectangle.

    Each box is processed in a crop around it (the box grown by ``context`` times its size on
    every side), so the cost depends on the box size, not on the image size. Pixels outside
    the box are background by construction. Where GrabCut cannot run (a box that leaves no
    background around it, or a box a few pixels wide) or finds nothing, the filled box is
    used, so a box never ends up without a mask.

    Args:
        iterations: GrabCut iterations per box.
        context: crop margin around a box, as a fraction of the box's width and height.
        min_area: drop connected regions smaller than this many pixels (0 keeps all).
        seed: OpenCV random seed; GrabCut's GMM initialisation is random.
    """

    name = "grabcut"
    input_size: int | None = None  # works at the image's own resolution (crops per box)

    def __init__(
        self, iterations: int = 5, context: float = 0.5, min_area: int = 0, seed: int = 0
    ) -> None:
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.cv2 = require("cv2", "the grabcut teacher")
        self.iterations = int(iterations)
        self.context = float(context)
        self.min_area = int(min_area)
        self.seed = int(seed)
        self.fallbacks = 0

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """N×H×W boolean masks, one GrabCut run per box."""
        cv2 = self.cv2
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])
        out = np.zeros((len(boxes), height, width), dtype=bool)
        for i, box in enumerate(np.asarray(boxes, dtype=np.float64)):
            x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
            bw, bh = x1 - x0, y1 - y0
            cx0 = max(0, int(x0 - self.context * bw) - 1)
            cy0 = max(0, int(y0 - self.context * bh) - 1)
            cx1 = min(width, int(np.ceil(x1 + self.context * bw)) + 1)
            cy1 = min(height, int(np.ceil(y1 + self.context * bh)) + 1)
            crop = bgr[cy0:cy1, cx0:cx1]
            rect = (x0 - cx0, y0 - cy0, bw, bh)
            has_background = (bw, bh) != (crop.shape[1], crop.shape[0])
            mask = None
            if has_background and bw >= 3 and bh >= 3:
                gc_mask = np.zeros(crop.shape[:2], dtype=np.uint8)
                bgd = np.zeros((1, 65), dtype=np.float64)
                fgd = np.zeros((1, 65), dtype=np.float64)
                cv2.setRNGSeed(self.seed)
                try:
                    cv2.grabCut(
                        crop, gc_mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT
                    )
                    fg = (gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)
                    if fg.any():
                        mask = fg
                except cv2.error:
                    mask = None
            if mask is None:
                self.fallbacks += 1
                out[i, y0:y1, x0:x1] = True
            else:
                out[i, cy0:cy1, cx0:cx1] = mask
        return remove_small_regions(out, self.min_area)

    def describe(self) -> dict[str, Any]:
        """Options and the OpenCV version for the manifest."""
        return {
            "options": {
                "iterations": self.iterations,
                "context": self.context,
                "min_area": self.min_area,
                "seed": self.seed,
            },
            "backend": f"opencv {self.cv2.__version__}",
        }
