"""Defect shapes: each draws one defect as a :class:`Patch` (opacity, colour, exact mask)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .blade import Blade
from .config import HAIRLINE_SIDE
from .fields import noise, smoothstep


@dataclass
class Patch:
    """A defect drawn in a window of the image: opacity, colour and exact mask."""

    y0: int
    x0: int
    alpha: np.ndarray  # h×w opacity 0..1
    colour: np.ndarray  # h×w×3 or (3,) albedo the defect pulls toward
    gt: np.ndarray  # h×w bool


def _window(cx: float, cy: float, radius: float, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, int(cx - radius)), max(0, int(cy - radius))
    x1, y1 = min(w, int(cx + radius) + 1), min(h, int(cy + radius) + 1)
    return x0, y0, x1, y1


def _local(
    x0: int, y0: int, x1: int, y1: int, cx: float, cy: float
) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return xs - cx, ys - cy


def _stain(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    s: float,
    w: int,
    h: int,
    strength: float,
    scale: float,
) -> Patch:
    r = rng.uniform(0.04, 0.10) * s * scale
    x0, y0, x1, y1 = _window(cx, cy, 1.6 * r, w, h)
    lx, ly = _local(x0, y0, x1, y1, cx, cy)
    a = rng.uniform(0, math.pi)
    ex = rng.uniform(0.5, 1.0)
    px = (lx * math.cos(a) + ly * math.sin(a)) / (r * ex)
    py = (-lx * math.sin(a) + ly * math.cos(a)) / r
    shape = (y1 - y0, x1 - x0)
    rad = np.sqrt(px * px + py * py) * (1 + 0.3 * noise(rng, shape, rng.uniform(3, 6)))
    soft = rng.uniform(0.35, 0.7)
    f = smoothstep(1.0, 1.0 - soft, rad)
    inner = 0.75 + 0.25 * noise(rng, shape, 8.0)
    peak = 0.18 + 0.40 * strength
    colour = np.array([0.42, 0.33, 0.22]) + rng.uniform(-0.06, 0.06, 3)
    return Patch(y0, x0, np.clip(peak * f * inner, 0, 1), colour, f >= 0.5)


def _splatter(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    s: float,
    w: int,
    h: int,
    strength: float,
    scale: float,
) -> Patch:
    spread = rng.uniform(0.025, 0.06) * s * scale
    x0, y0, x1, y1 = _window(cx, cy, 3.2 * spread, w, h)
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    n = int(rng.integers(6, 26))
    pts = rng.normal(0.0, spread, (n, 2)) + np.array([cx - x0, cy - y0])
    radii = np.maximum(1, np.round(rng.uniform(0.004, 0.010, n) * s * scale)).astype(int)
    level = 0.25 + 0.6 * strength
    for (px, py), rad in zip(pts, radii, strict=True):
        value = float(np.clip(level * rng.uniform(0.75, 1.1), 0.05, 1.0))
        cv2.circle(alpha, (round(float(px)), round(float(py))), int(rad), value, -1, cv2.LINE_8)
    colour = np.array([0.22, 0.17, 0.12]) + rng.uniform(-0.04, 0.04, 3)
    return Patch(y0, x0, alpha, colour, alpha > 0)


def _streak(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    s: float,
    w: int,
    h: int,
    strength: float,
    scale: float,
    blade: Blade,
) -> Patch:
    length = rng.uniform(0.10, 0.28) * s * scale
    width = rng.uniform(0.010, 0.025) * s * scale
    ax, ay = blade.axis
    # streaks run chordwise (the airflow direction), away from the leading edge
    sign = blade.le_sign
    ang = math.atan2(ax, -ay) + rng.normal(0, 0.2)
    dxn, dyn = math.cos(ang), math.sin(ang)
    x0, y0, x1, y1 = _window(cx, cy, length + 2 * width, w, h)
    lx, ly = _local(x0, y0, x1, y1, cx, cy)
    along = sign * (lx * dxn + ly * dyn)
    across = -lx * dyn + ly * dxn
    along_n = along / length
    taper = smoothstep(-0.05, 0.1, along_n) * (1 - smoothstep(0.55, 1.0, along_n))
    wid = width * (1.0 - 0.6 * np.clip(along_n, 0, 1))
    f = np.exp(-((across / wid) ** 2)) * taper
    peak = 0.16 + 0.34 * strength
    colour = np.array([0.40, 0.33, 0.24]) + rng.uniform(-0.05, 0.05, 3)
    return Patch(y0, x0, np.clip(peak * f, 0, 1), colour, f >= 0.5)


def _crack(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    s: float,
    w: int,
    h: int,
    strength: float,
    scale: float,
) -> Patch:
    length = rng.uniform(0.10, 0.30) * s * scale
    reach = int(length * 1.2) + 4
    x0, y0, x1, y1 = _window(cx, cy, reach, w, h)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    thick = max(1, round(rng.uniform(0.005, 0.009) * min(s, HAIRLINE_SIDE) * scale))
    seg = max(2.0, 0.015 * s * scale)
    # Up to HAIRLINE_SIDE, OpenCV's thick lines (2 → 3 px, 3 → 5 px wide). Above it, true
    # hairlines: 1-px strokes grown to exactly ``width`` px (2-3 px trunk, 1-2 px branches).
    hairline = s > HAIRLINE_SIDE
    strokes = {k: np.zeros_like(canvas) for k in (1, 2, 3)} if hairline else {}

    def walk(x: float, y: float, ang: float, remaining: float, width: int, depth: int) -> None:
        while remaining > 0:
            ang += rng.normal(0, 0.45)
            nx, ny = x + seg * math.cos(ang), y + seg * math.sin(ang)
            p0, p1 = (round(x), round(y)), (round(nx), round(ny))
            if hairline:
                cv2.line(strokes[min(width, 3)], p0, p1, 255, 1, cv2.LINE_8)
            else:
                cv2.line(canvas, p0, p1, 255, width, cv2.LINE_8)
            x, y, remaining = nx, ny, remaining - seg
            if depth < 2 and rng.random() < 0.1:
                side = rng.choice([-1.0, 1.0])
                walk(
                    x,
                    y,
                    ang + side * rng.uniform(0.4, 1.1),
                    remaining * 0.5,
                    max(1, width - 1),
                    depth + 1,
                )

    ang0 = rng.uniform(0, 2 * math.pi)
    px, py = cx - x0, cy - y0
    walk(px, py, ang0, length / 2, thick, 0)
    walk(px, py, ang0 + math.pi, length / 2, thick, 0)
    for width, layer in strokes.items():
        canvas |= cv2.dilate(layer, np.ones((width, width), np.uint8))
    gt = canvas > 0
    peak = 0.25 + 0.65 * strength
    colour = np.array([0.16, 0.15, 0.14]) + rng.uniform(0.0, 0.12)
    return Patch(y0, x0, gt.astype(np.float32) * peak, colour, gt)


def _chip(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    s: float,
    w: int,
    h: int,
    strength: float,
    scale: float,
) -> Patch:
    r = rng.uniform(0.02, 0.05) * s * scale
    x0, y0, x1, y1 = _window(cx, cy, 1.6 * r + 2, w, h)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    n = int(rng.integers(14, 26))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    lobes = 1 + 0.35 * np.cos(2 * angles + rng.uniform(0, 2 * math.pi))
    radii = r * lobes * rng.uniform(0.6, 1.1, n)
    pts = np.stack([cx - x0 + radii * np.cos(angles), cy - y0 + radii * np.sin(angles)], 1)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 255, cv2.LINE_8)
    gt = canvas > 0
    inner = cv2.erode(canvas, np.ones((3, 3), np.uint8)) > 0
    rim = gt & ~inner
    if rng.random() < 0.5:  # exposed bright laminate
        fill = np.array([0.97, 0.95, 0.86]) + rng.uniform(-0.03, 0.02)
    else:  # exposed dark filler
        fill = np.array([0.45, 0.44, 0.41]) + rng.uniform(-0.08, 0.08)
    grit = 1.0 + 0.08 * noise(rng, gt.shape, max(4.0, r / 1.5))
    colour = (fill[None, None, :] * grit[..., None]).astype(np.float32)
    colour[rim] = (0.22, 0.21, 0.20)
    peak = 0.35 + 0.6 * strength
    return Patch(y0, x0, gt.astype(np.float32) * peak, colour, gt)


def _erosion(
    rng: np.random.Generator, blade: Blade, s: float, w: int, h: int, strength: float, scale: float
) -> Patch | None:
    edge = np.argwhere((blade.dist_le >= 0) & (blade.dist_le < 1.5) & (blade.dist < 1.5))
    if len(edge) == 0:
        return None
    ey, ex = edge[rng.integers(len(edge))]
    half_len = rng.uniform(0.10, 0.28) * s * scale
    depth = rng.uniform(0.025, 0.06) * s * scale
    x0, y0, x1, y1 = _window(float(ex), float(ey), half_len + depth * 2, w, h)
    sl = np.s_[y0:y1, x0:x1]
    du = (blade.u[sl] - blade.u[ey, ex]) / half_len
    env = np.clip(1.0 - du * du, 0.0, 1.0) ** 0.5
    shape = (y1 - y0, x1 - x0)
    rough = noise(rng, shape, rng.uniform(6, 14))
    fine = noise(rng, shape, rng.uniform(20, 40))
    reach = depth * env * (0.75 + 0.25 * rough) + 0.25 * depth * fine * env
    gt = (blade.dist_le[sl] >= 0) & (blade.dist_le[sl] < reach) & (env > 0)
    base = np.array([0.56, 0.53, 0.49]) + rng.uniform(-0.06, 0.06)
    pits = noise(rng, shape, rng.uniform(40, 70))
    colour = base[None, None, :] * (1.0 + 0.18 * pits[..., None]).astype(np.float32)
    peak = 0.3 + 0.6 * strength
    return Patch(y0, x0, gt.astype(np.float32) * peak, colour, gt)


def draw_defect(
    rng: np.random.Generator,
    kind: str,
    blade: Blade,
    free: np.ndarray,
    strength: float,
    scale: float,
) -> Patch | None:
    """Draw one defect of ``kind`` at a random free spot of the blade.

    Erosion follows the leading edge; every other kind is centred on one of 48 random pixels
    where ``free`` (H×W bool) holds, near the leading edge for splatter when possible.
    Returns ``None`` when no spot fits.
    """
    h, w = free.shape
    s = float(min(w, h))
    if kind == "erosion":
        return _erosion(rng, blade, s, w, h, strength, scale)
    ys, xs = rng.integers(0, h, 48), rng.integers(0, w, 48)
    ok = free[ys, xs]
    if kind == "splatter":  # insects hit the leading edge
        near_le = ok & (blade.dist_le[ys, xs] < 0.3 * blade.chord[ys, xs])
        ok = near_le if near_le.any() else ok
    if not ok.any():
        return None
    i = int(np.argmax(ok))
    cx, cy = float(xs[i]) + 0.5, float(ys[i]) + 0.5
    if kind == "stain":
        return _stain(rng, cx, cy, s, w, h, strength, scale)
    if kind == "splatter":
        return _splatter(rng, cx, cy, s, w, h, strength, scale)
    if kind == "streak":
        return _streak(rng, cx, cy, s, w, h, strength, scale, blade)
    if kind == "crack":
        return _crack(rng, cx, cy, s, w, h, strength, scale)
    return _chip(rng, cx, cy, s, w, h, strength, scale)
