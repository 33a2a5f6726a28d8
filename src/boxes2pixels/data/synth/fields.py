"""Small vectorised helpers on pixel grids: coordinates, ramps, smooth noise, tight boxes."""

from __future__ import annotations

import functools

import cv2
import numpy as np


@functools.lru_cache(maxsize=8)
def grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only float32 pixel coordinates ``xs, ys`` (H×W each) of a W×H image (cached)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite ramp: 0 at ``edge0``, 1 at ``edge1`` (either order), smooth in between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Smooth noise with about unit standard deviation and ``cells`` blobs along the long side."""
    h, w = shape
    scale = max(h, w) / max(cells, 1.0)
    gh, gw = max(2, round(h / scale) + 2), max(2, round(w / scale) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return out / max(float(out.std()), 1e-3)


def fbm(
    rng: np.random.Generator, shape: tuple[int, int], cells: float, octaves: int = 3
) -> np.ndarray:
    """Fractal noise: ``octaves`` layers of :func:`noise`, each twice as fine and half as strong."""
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for i in range(octaves):
        out += amp * noise(rng, shape, cells * 2**i)
        total += amp
        amp *= 0.5
    return out / total


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel box ``x0, y0, x1, y1`` (end exclusive) of a mask's pixels; ``None`` when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
