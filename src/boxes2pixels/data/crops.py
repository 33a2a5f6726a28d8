"""Training windows at native resolution (``b2p train --crop-size N``).

Instead of the whole photo resized to ``imgsz`` (where a 2-px crack in a 5280×2970 photo
shrinks to a tenth of a pixel), each training sample is one N×N window of the photo at
(about) its own resolution:

- the window covers ``N·s`` source pixels per side, the scale ``s`` drawn uniformly from
  ``[1 − jitter, 1 + jitter]`` (default ±25 %), and is resized to N×N;
- with probability ``defect_prob`` (default 0.5) it holds a randomly chosen defect pixel
  of the mask within its central half (centred on it, shifted by at most a quarter of the
  window), otherwise (and on images without defects) it lies anywhere in the image, so
  defect-free photos still teach background;
- where the window runs past the image the image is black and the mask 255 (ignored), as
  letterbox padding is.

Every draw comes from the generator the caller passes, so a sample is reproducible from its
seed (and resuming a run gives the same windows).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError
from .labelmaps import IGNORE, defect_pixels


@dataclass(frozen=True)
class WindowSampler:
    """Draws N×N training windows from an image and its label map (see the module doc).

    Attributes:
        size: window side N in pixels after resizing.
        defect_prob: probability that the window is placed on a defect pixel.
        jitter: relative range of the window's source side (``N·[1 − j, 1 + j]``).
    """

    size: int
    defect_prob: float = 0.5
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"crop size must be positive, got {self.size}")
        if not 0.0 <= self.defect_prob <= 1.0:
            raise ConfigError(f"crop defect probability must lie in [0, 1], got {self.defect_prob}")
        if not 0.0 <= self.jitter < 1.0:
            raise ConfigError(f"crop jitter must lie in [0, 1), got {self.jitter}")

    def _origin(self, mask: np.ndarray, side: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner ``(y0, x0)`` of a ``side``-pixel window (may be negative)."""
        h, w = mask.shape
        on_defect = rng.random() < self.defect_prob
        if on_defect:
            defects = np.flatnonzero(defect_pixels(mask))
            if defects.size:
                cy, cx = divmod(int(defects[rng.integers(defects.size)]), w)
                dy, dx = rng.integers(-(side // 4), side // 4 + 1, 2)
                y0 = min(max(cy - side // 2 + int(dy), min(0, h - side)), max(0, h - side))
                x0 = min(max(cx - side // 2 + int(dx), min(0, w - side)), max(0, w - side))
                return y0, x0
        y0 = int(rng.integers(0, h - side + 1)) if h > side else 0
        x0 = int(rng.integers(0, w - side + 1)) if w > side else 0
        return y0, x0

    def sample(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """One window: RGB ``uint8`` N×N×3 and its label map N×N (255 outside the image)."""
        if image.shape[:2] != mask.shape:
            raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
        scale = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        side = max(1, round(self.size * scale))
        y0, x0 = self._origin(mask, side, rng)
        h, w = mask.shape
        win = np.zeros((side, side, 3), np.uint8)
        win_mask = np.full((side, side), IGNORE, np.uint8)
        sy0, sx0 = max(y0, 0), max(x0, 0)
        sy1, sx1 = min(y0 + side, h), min(x0 + side, w)
        win[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        win_mask[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = mask[sy0:sy1, sx0:sx1]
        if side != self.size:
            shrink = side > self.size
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            win = cv2.resize(win, (self.size, self.size), interpolation=interp)
            win_mask = cv2.resize(win_mask, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        return win, win_mask
