"""The sky behind the blade, the blade's geometry and its paint (before lighting)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .fields import fbm, grid, smoothstep


@dataclass
class Blade:
    """Per-pixel blade geometry of one scene (all H×W float32 unless noted)."""

    alpha: np.ndarray  # coverage 0..1 (anti-aliased silhouette)
    dist: np.ndarray  # distance inside the silhouette, px (negative outside)
    dist_le: np.ndarray  # distance from the leading edge, px
    chord: np.ndarray  # local chord width, px
    u: np.ndarray  # coordinate along the span, px
    normal_angle: np.ndarray  # surface normal tilt across the chord (radians)
    axis: tuple[float, float]  # unit vector along the span
    le_sign: float  # +1 when dist_le grows along the span's normal (-ay, ax), else -1


def draw_sky(rng: np.random.Generator, w: int, h: int, exposure: float) -> np.ndarray:
    """H×W×3 float32 sky: a tilted gradient (clear, hazy or overcast), clouds, maybe land."""
    xs, ys = grid(w, h)
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    if kind == 0:  # clear blue
        top = np.array([0.30, 0.50, 0.82]) + rng.uniform(-0.05, 0.05, 3)
        bottom = np.array([0.68, 0.80, 0.94]) + rng.uniform(-0.04, 0.04, 3)
        cloud_cover = rng.uniform(-0.2, 1.2)
    elif kind == 1:  # hazy
        top = np.array([0.52, 0.64, 0.80]) + rng.uniform(-0.04, 0.04, 3)
        bottom = np.array([0.80, 0.85, 0.90]) + rng.uniform(-0.03, 0.03, 3)
        cloud_cover = rng.uniform(0.3, 1.0)
    else:  # overcast
        g = rng.uniform(0.68, 0.85)
        top = np.array([g - 0.06, g - 0.03, g + 0.01])
        bottom = np.array([g + 0.05, g + 0.06, g + 0.07])
        cloud_cover = rng.uniform(0.8, 1.6)
    tilt = rng.uniform(-0.3, 0.3)
    t = np.clip((ys + tilt * (xs - w / 2)) / h, 0, 1)[..., None]
    sky = (top * (1 - t) + bottom * t).astype(np.float32)
    clouds = fbm(rng, (h, w), rng.uniform(2.0, 5.0), octaves=3)
    # clouds: thresholded noise, out of focus (the camera focuses on the blade), greyer where thick
    cover = smoothstep(1.4 - cloud_cover, 2.2 - cloud_cover, clouds)[..., None]
    thick = smoothstep(2.0 - cloud_cover, 3.2 - cloud_cover, clouds)[..., None]
    cloud_col = np.array([0.95, 0.96, 0.97], np.float32) - 0.12 * thick
    sky = sky * (1 - cover * 0.85) + cloud_col * cover * 0.85
    if rng.random() < 0.25:  # a hazy landscape below the horizon
        horizon = rng.uniform(0.7, 0.95) * h + rng.uniform(-0.08, 0.08) * (xs - w / 2)
        ground = np.array([0.38, 0.45, 0.33]) + rng.uniform(-0.08, 0.08, 3)
        tex = fbm(rng, (h, w), 30.0, octaves=2)[..., None] * 0.05
        haze = np.array([0.72, 0.78, 0.84])
        land = (0.55 * ground + 0.45 * haze + tex).astype(np.float32)
        below = smoothstep(-1.0, 1.0, ys - horizon)[..., None]
        sky = sky * (1 - below) + land * below
    return sky * exposure


def draw_blade(rng: np.random.Generator, w: int, h: int) -> Blade:
    """The geometry of a curved, tapering blade crossing the frame at a random angle."""
    xs, ys = grid(w, h)
    s = float(min(w, h))
    theta = rng.uniform(-0.7, 0.7) + (math.pi / 2 if rng.random() < 0.3 else 0.0)
    ax, ay = math.cos(theta), math.sin(theta)
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    cy = h / 2 + rng.uniform(-0.15, 0.15) * h
    dx, dy = xs - cx, ys - cy
    u = dx * ax + dy * ay
    v = -dx * ay + dy * ax
    un = u / s
    half = rng.uniform(0.28, 0.52) * s * (1 - rng.uniform(-0.18, 0.18) * un)
    centre = rng.uniform(-0.08, 0.08) * s * un * un + rng.uniform(-0.1, 0.1) * s
    lower, upper = centre - half, centre + half
    d_low, d_up = v - lower, upper - v
    dist = np.minimum(d_low, d_up)
    le_low = rng.random() < 0.5
    dist_le = d_low if le_low else d_up
    chord = upper - lower
    t_le = np.clip(dist_le / chord, 0.0, 1.0)
    # surface normal tilt: steep at the rounded leading edge, nearly flat further back
    near = np.clip(1.0 - t_le / 0.35, 0.0, 1.0)
    normal_angle = (math.pi / 2) * near * near - 0.25 * np.clip(t_le - 0.35, 0.0, 1.0)
    alpha = np.clip(dist + 0.5, 0.0, 1.0)
    return Blade(
        alpha,
        dist,
        dist_le,
        chord,
        u,
        normal_angle.astype(np.float32),
        (ax, ay),
        1.0 if le_low else -1.0,
    )


def blade_albedo(rng: np.random.Generator, blade: Blade, w: int, h: int) -> np.ndarray:
    """Paint colour of the blade with texture, seams, tape and receptors (no lighting)."""
    s = float(min(w, h))
    # light-grey paint, slightly warm or cool
    base = rng.uniform(0.74, 0.88) + rng.uniform(-0.015, 0.02) * np.array([-1.0, 0.0, 1.0])
    mottling = rng.uniform(0.02, 0.045) * fbm(rng, (h, w), rng.uniform(4, 9), octaves=3)
    grain = rng.normal(0.0, rng.uniform(0.006, 0.014), (h, w)).astype(np.float32)
    # fine spanwise brush texture: noise sampled in blade coordinates, long along the span
    tex = rng.standard_normal((64, 64)).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), 0.8)
    t_le = np.clip(blade.dist_le / blade.chord, 0, 1)
    map_x = (blade.u / (0.5 * s) * 6.0) % 64
    map_y = (t_le * 90.0 + 3.0 * mottling) % 64
    brush = cv2.remap(tex, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR)
    shade = 1.0 + mottling + grain + rng.uniform(0.006, 0.018) * brush
    if rng.random() < 0.5:  # leading-edge protection tape, a slightly different tone
        tb = rng.uniform(0.05, 0.12)
        band = 1.0 - smoothstep(tb - 0.004, tb + 0.004, t_le)
        shade = shade + rng.choice([-1, 1]) * rng.uniform(0.02, 0.05) * band
    if rng.random() < 0.65:  # spanwise panel seams / bond lines (straight, long, faint)
        for _ in range(rng.integers(1, 3)):
            ts = rng.uniform(0.3, 0.85)
            width = rng.uniform(0.5, 1.3)
            line = np.exp(-(((blade.dist_le - ts * blade.chord) / width) ** 2))
            shade = shade - rng.uniform(0.03, 0.09) * line
    if rng.random() < 0.25:  # a chordwise seam across the blade
        us = rng.uniform(-0.6, 0.6) * max(w, h)
        line = np.exp(-(((blade.u - us) / rng.uniform(0.6, 1.4)) ** 2))
        shade = shade - rng.uniform(0.03, 0.08) * line
    albedo = shade[..., None].astype(np.float32) * base.astype(np.float32)
    if rng.random() < 0.2:  # lightning receptor: a small metal disc, not a defect
        pts = np.argwhere(blade.dist > 0.08 * s)
        if len(pts):
            y, x = pts[rng.integers(len(pts))]
            r = max(2, round(rng.uniform(0.008, 0.016) * s))
            metal = tuple(float(c) for c in rng.uniform(0.45, 0.65) + np.array([0, 0.01, 0.02]))
            cv2.circle(albedo, (int(x), int(y)), r + 1, (0.35, 0.35, 0.36), -1, cv2.LINE_AA)
            cv2.circle(albedo, (int(x), int(y)), r, metal, -1, cv2.LINE_AA)
    return albedo
