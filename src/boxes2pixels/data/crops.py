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
seed (and resuming a run gives the same windows). The defect pixel is chosen through a
:class:`DefectIndex`: from the whole label map (:meth:`DefectIndex.of_mask`), or from per-row
defect counts that the decoded-image cache keeps (:mod:`boxes2pixels.data.cache`), which
then reads one row of a memory-mapped mask instead of all of it. Both choose the same pixel
for the same draw, so training with and without the cache sees the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError
from .labelmaps import IGNORE, defect_pixels


class DefectIndex:
    """The defect pixels of a label map in row-major order, counted per row.

    ``index[k]`` is the flat index (``y · W + x``) of the ``k``-th defect pixel, the same as
    ``np.flatnonzero(defect_pixels(mask))[k]``; finding it reads only row ``y`` of the mask.

    Args:
        mask: the H×W label map (an array or a read-only memory map).
        row_ends: H + 1 cumulative defect counts (``row_ends[y + 1]``: defect pixels in rows
            ``0..y``), as :meth:`row_counts` computes them.
    """

    def __init__(self, mask: np.ndarray, row_ends: np.ndarray) -> None:
        if row_ends.shape != (mask.shape[0] + 1,):
            raise ValueError(f"row_ends must hold {mask.shape[0] + 1} counts, got {row_ends.shape}")
        self.mask = mask
        self.row_ends = row_ends
        self.size = int(row_ends[-1])

    @staticmethod
    def row_counts(mask: np.ndarray) -> np.ndarray:
        """The ``row_ends`` of ``mask``: int64, H + 1 values starting at 0."""
        per_row = defect_pixels(mask).sum(axis=1, dtype=np.int64)
        return np.concatenate([np.zeros(1, np.int64), np.cumsum(per_row)])

    @classmethod
    def of_mask(cls, mask: np.ndarray) -> DefectIndex:
        """The index of an in-memory label map (reads all of it once)."""
        return cls(mask, cls.row_counts(mask))

    def __getitem__(self, k: int) -> int:
        if not 0 <= k < self.size:
            raise IndexError(k)
        y = int(np.searchsorted(self.row_ends, k, side="right")) - 1
        xs = np.flatnonzero(defect_pixels(np.asarray(self.mask[y])))
        return y * self.mask.shape[1] + int(xs[k - int(self.row_ends[y])])


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

    def _origin(
        self,
        mask: np.ndarray,
        side: int,
        rng: np.random.Generator,
        defects: DefectIndex | None,
    ) -> tuple[int, int]:
        """Top-left corner ``(y0, x0)`` of a ``side``-pixel window (may be negative)."""
        h, w = mask.shape
        on_defect = rng.random() < self.defect_prob
        if on_defect:
            if defects is None:
                defects = DefectIndex.of_mask(mask)
            if defects.size:
                cy, cx = divmod(defects[int(rng.integers(defects.size))], w)
                dy, dx = rng.integers(-(side // 4), side // 4 + 1, 2)
                y0 = min(max(cy - side // 2 + int(dy), min(0, h - side)), max(0, h - side))
                x0 = min(max(cx - side // 2 + int(dx), min(0, w - side)), max(0, w - side))
                return y0, x0
        y0 = int(rng.integers(0, h - side + 1)) if h > side else 0
        x0 = int(rng.integers(0, w - side + 1)) if w > side else 0
        return y0, x0

    def sample(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        defects: DefectIndex | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One window: RGB ``uint8`` N×N×3 and its label map N×N (255 outside the image).

        ``image`` and ``mask`` may be memory maps: only the window's rows are read, and with
        ``defects`` (the mask's :class:`DefectIndex`) one more row for a defect-centred one.
        """
        if image.shape[:2] != mask.shape:
            raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
        scale = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        side = max(1, round(self.size * scale))
        y0, x0 = self._origin(mask, side, rng, defects)
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
