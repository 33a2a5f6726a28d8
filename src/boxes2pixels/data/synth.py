"""Synthetic wind-turbine-blade inspection data with exact ground-truth masks.

Each scene imitates a drone photo of a blade: a sky background (gradient, clouds, sometimes a
hazy horizon), a large blade surface crossing the frame (curved, tapering band with a
leading edge, cross-section shading, fine texture) and, on some images, defects of two
classes:

- ``dirt`` (YOLO class 0, mask value 1): soft stains, bug-splatter dots, chordwise streaks;
- ``damage`` (YOLO class 1, mask value 2): thin branching cracks, leading-edge erosion, chips.

Distractors that are *not* defects and never appear in the ground truth make the problem
hard the way real data does: panel seams, leading-edge protection tape, lightning receptors,
cast shadows, specular highlights, blur, sensor noise and JPEG artefacts. Boxes are loose
(random padding on each side) and a fraction of the subtlest defects get no box at all; they
are still in the ground-truth mask (what a self-correcting student should recover).

Everything is deterministic for a seed: image ``i`` of split ``s`` is drawn from its own
generator seeded by ``(seed, s, i)``, so generating a subset reproduces the same images.
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DatasetError
from ..io import atomic_path, remove_outputs, write_json_atomic, write_mask, write_text_atomic

CLASS_NAMES = ("dirt", "damage")
DIRT, DAMAGE = 0, 1
DIRT_KINDS = ("stain", "splatter", "streak")
DAMAGE_KINDS = ("crack", "erosion", "chip")
DEFAULT_SIZE = (640, 360)
MANIFEST_NAME = "synth.json"
_SPLITS = ("train", "val", "test")
# Files and folders that generate_dataset writes (and removes first when overwriting).
_OUTPUTS = ("images", "labels", "gt_masks", "data.yaml", MANIFEST_NAME)


@dataclass(frozen=True)
class SynthConfig:
    """Scene parameters. The defaults suit a student trained at a small resolution.

    Sizes are relative to the image's short side, so a scene looks the same at any size.

    Attributes:
        defect_free_fraction: probability that an image has no defect at all.
        unboxed_fraction: expected fraction of defects left without a box; only the subtlest
            defects (lowest contrast) are candidates.
        damage_fraction: probability that a defect is ``damage`` rather than ``dirt``.
        max_defects: most defects on one image (1 to this many on a defective image).
        defect_scale: multiplies every defect size (1.0: cracks about 2-3 px wide and stains
            about 30-70 px across on a 360-px-high image, still visible at 224 px wide).
        box_padding: range of the extra margin on each side of a box, as a fraction of the
            defect's extent on that axis (plus 1-3 px).
        jpeg_quality: range of the JPEG quality of the written image.
        blur_probability: probability of a slight overall blur (focus / motion).
        shadow_probability: probability of a cast shadow across the blade.
        highlight_probability: probability of a specular highlight band on the blade.
    """

    defect_free_fraction: float = 0.62
    unboxed_fraction: float = 0.15
    damage_fraction: float = 0.45
    max_defects: int = 3
    defect_scale: float = 1.0
    box_padding: tuple[float, float] = (0.05, 0.30)
    jpeg_quality: tuple[int, int] = (60, 92)
    blur_probability: float = 0.35
    shadow_probability: float = 0.35
    highlight_probability: float = 0.5

    def __post_init__(self) -> None:
        for name in ("defect_free_fraction", "unboxed_fraction", "damage_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SynthConfig.{name} must lie in [0, 1], got {value}")
        if self.unboxed_fraction > 0.5:
            raise ValueError("SynthConfig.unboxed_fraction must be at most 0.5")
        if self.max_defects < 1:
            raise ValueError("SynthConfig.max_defects must be at least 1")
        if self.defect_scale <= 0:
            raise ValueError("SynthConfig.defect_scale must be positive")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError("SynthConfig.jpeg_quality must be a range within 1..100")
        pad_lo, pad_hi = self.box_padding
        if not 0.0 <= pad_lo <= pad_hi:
            raise ValueError("SynthConfig.box_padding must be a range (lo, hi) with 0 <= lo <= hi")


@dataclass
class SynthDefect:
    """One defect of a scene.

    Attributes:
        cls: YOLO class id (0 dirt, 1 damage); its mask value is ``cls + 1``.
        kind: ``stain``, ``splatter``, ``streak``, ``crack``, ``erosion`` or ``chip``.
        mask: H×W bool, the defect's exact pixels.
        bbox: tight pixel box ``x0, y0, x1, y1`` of ``mask`` (``x1``, ``y1`` exclusive).
        box: the loose annotation box (float32 ``x0, y0, x1, y1`` pixels) or ``None`` when
            the defect was left unboxed.
        strength: contrast draw in [0, 1]; low values are the subtle defects.
    """

    cls: int
    kind: str
    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    box: np.ndarray | None
    strength: float

    @property
    def boxed(self) -> bool:
        """Whether the defect has an annotation box."""
        return self.box is not None


@dataclass
class Scene:
    """One generated image with its ground truth and its (noisy) annotation.

    Attributes:
        image: H×W×3 RGB ``uint8`` before JPEG compression.
        mask: H×W ``uint8`` label map: 0 background, 1 dirt, 2 damage.
        blade: H×W bool, the pixels of the blade (defects lie only there).
        defects: every defect, boxed or not.
        jpeg_quality: the quality the image is meant to be saved with (see ``jpeg_bytes``).
    """

    image: np.ndarray
    mask: np.ndarray
    blade: np.ndarray
    defects: list[SynthDefect] = field(default_factory=list)
    jpeg_quality: int = 90

    @property
    def boxes(self) -> np.ndarray:
        """Annotation boxes as float32 N×4 pixel ``x0, y0, x1, y1`` (boxed defects only)."""
        boxes = [d.box for d in self.defects if d.box is not None]
        return np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)

    @property
    def classes(self) -> np.ndarray:
        """YOLO class ids of ``boxes`` (int64, N)."""
        return np.array([d.cls for d in self.defects if d.boxed], dtype=np.int64)

    @property
    def unboxed(self) -> list[SynthDefect]:
        """Defects present in ``mask`` but absent from the annotation."""
        return [d for d in self.defects if not d.boxed]

    def label_text(self) -> str:
        """The YOLO label file text (``cls cx cy w h`` per boxed defect, normalised)."""
        h, w = self.mask.shape
        lines = []
        for cls, (x0, y0, x1, y1) in zip(self.classes, self.boxes, strict=True):
            cx, cy = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h
            bw, bh = (x1 - x0) / w, (y1 - y0) / h
            lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        return "".join(line + "\n" for line in lines)

    def jpeg_bytes(self) -> bytes:
        """The image encoded as JPEG at ``jpeg_quality`` (this adds the JPEG artefacts)."""
        ok, buf = cv2.imencode(
            ".jpg",
            cv2.cvtColor(self.image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)],
        )
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB image
            raise RuntimeError("OpenCV could not encode the image as JPEG")
        return buf.tobytes()


# --------------------------------------------------------------------------------------------
# small vectorised helpers


@functools.lru_cache(maxsize=8)
def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Smooth noise with about unit standard deviation and ``cells`` blobs along the long side."""
    h, w = shape
    scale = max(h, w) / max(cells, 1.0)
    gh, gw = max(2, round(h / scale) + 2), max(2, round(w / scale) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return out / max(float(out.std()), 1e-3)


def _fbm(rng: np.random.Generator, shape: tuple[int, int], cells: float, octaves: int = 3):
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for i in range(octaves):
        out += amp * _noise(rng, shape, cells * 2**i)
        total += amp
        amp *= 0.5
    return out / total


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass
class _Blade:
    """Per-pixel blade geometry of one scene (all H×W float32 unless noted)."""

    alpha: np.ndarray  # coverage 0..1 (anti-aliased silhouette)
    dist: np.ndarray  # distance inside the silhouette, px (negative outside)
    dist_le: np.ndarray  # distance from the leading edge, px
    chord: np.ndarray  # local chord width, px
    u: np.ndarray  # coordinate along the span, px
    normal_angle: np.ndarray  # surface normal tilt across the chord (radians)
    axis: tuple[float, float]  # unit vector along the span
    le_sign: float  # +1 when dist_le grows along the span's normal (-ay, ax), else -1


@dataclass
class _Patch:
    """A defect drawn in a window of the image: opacity, colour and exact mask."""

    y0: int
    x0: int
    alpha: np.ndarray  # h×w opacity 0..1
    colour: np.ndarray  # h×w×3 or (3,) albedo the defect pulls toward
    gt: np.ndarray  # h×w bool


# --------------------------------------------------------------------------------------------
# background and blade


def _sky(rng: np.random.Generator, w: int, h: int, exposure: float) -> np.ndarray:
    xs, ys = _grid(w, h)
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
    clouds = _fbm(rng, (h, w), rng.uniform(2.0, 5.0), octaves=3)
    # clouds: thresholded noise, out of focus (the camera focuses on the blade), greyer where thick
    cover = _smoothstep(1.4 - cloud_cover, 2.2 - cloud_cover, clouds)[..., None]
    thick = _smoothstep(2.0 - cloud_cover, 3.2 - cloud_cover, clouds)[..., None]
    cloud_col = np.array([0.95, 0.96, 0.97], np.float32) - 0.12 * thick
    sky = sky * (1 - cover * 0.85) + cloud_col * cover * 0.85
    if rng.random() < 0.25:  # a hazy landscape below the horizon
        horizon = rng.uniform(0.7, 0.95) * h + rng.uniform(-0.08, 0.08) * (xs - w / 2)
        ground = np.array([0.38, 0.45, 0.33]) + rng.uniform(-0.08, 0.08, 3)
        tex = _fbm(rng, (h, w), 30.0, octaves=2)[..., None] * 0.05
        haze = np.array([0.72, 0.78, 0.84])
        land = (0.55 * ground + 0.45 * haze + tex).astype(np.float32)
        below = _smoothstep(-1.0, 1.0, ys - horizon)[..., None]
        sky = sky * (1 - below) + land * below
    return sky * exposure


def _blade(rng: np.random.Generator, w: int, h: int) -> _Blade:
    xs, ys = _grid(w, h)
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
    return _Blade(
        alpha,
        dist,
        dist_le,
        chord,
        u,
        normal_angle.astype(np.float32),
        (ax, ay),
        1.0 if le_low else -1.0,
    )


def _blade_albedo(rng: np.random.Generator, blade: _Blade, w: int, h: int) -> np.ndarray:
    """Paint colour of the blade with texture, seams, tape and receptors (no lighting)."""
    s = float(min(w, h))
    # light-grey paint, slightly warm or cool
    base = rng.uniform(0.74, 0.88) + rng.uniform(-0.015, 0.02) * np.array([-1.0, 0.0, 1.0])
    mottling = rng.uniform(0.02, 0.045) * _fbm(rng, (h, w), rng.uniform(4, 9), octaves=3)
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
        band = 1.0 - _smoothstep(tb - 0.004, tb + 0.004, t_le)
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


# --------------------------------------------------------------------------------------------
# defects; each returns a _Patch or None when it does not fit


def _window(cx: float, cy: float, radius: float, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, int(cx - radius)), max(0, int(cy - radius))
    x1, y1 = min(w, int(cx + radius) + 1), min(h, int(cy + radius) + 1)
    return x0, y0, x1, y1


def _local(x0: int, y0: int, x1: int, y1: int, cx: float, cy: float):
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return xs - cx, ys - cy


def _stain(rng, cx, cy, s, w, h, strength, scale) -> _Patch:
    r = rng.uniform(0.04, 0.10) * s * scale
    x0, y0, x1, y1 = _window(cx, cy, 1.6 * r, w, h)
    lx, ly = _local(x0, y0, x1, y1, cx, cy)
    a = rng.uniform(0, math.pi)
    ex = rng.uniform(0.5, 1.0)
    px = (lx * math.cos(a) + ly * math.sin(a)) / (r * ex)
    py = (-lx * math.sin(a) + ly * math.cos(a)) / r
    shape = (y1 - y0, x1 - x0)
    rad = np.sqrt(px * px + py * py) * (1 + 0.3 * _noise(rng, shape, rng.uniform(3, 6)))
    soft = rng.uniform(0.35, 0.7)
    f = _smoothstep(1.0, 1.0 - soft, rad)
    inner = 0.75 + 0.25 * _noise(rng, shape, 8.0)
    peak = 0.18 + 0.40 * strength
    colour = np.array([0.42, 0.33, 0.22]) + rng.uniform(-0.06, 0.06, 3)
    return _Patch(y0, x0, np.clip(peak * f * inner, 0, 1), colour, f >= 0.5)


def _splatter(rng, cx, cy, s, w, h, strength, scale) -> _Patch:
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
    return _Patch(y0, x0, alpha, colour, alpha > 0)


def _streak(rng, cx, cy, s, w, h, strength, scale, blade: _Blade) -> _Patch:
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
    taper = _smoothstep(-0.05, 0.1, along_n) * (1 - _smoothstep(0.55, 1.0, along_n))
    wid = width * (1.0 - 0.6 * np.clip(along_n, 0, 1))
    f = np.exp(-((across / wid) ** 2)) * taper
    peak = 0.16 + 0.34 * strength
    colour = np.array([0.40, 0.33, 0.24]) + rng.uniform(-0.05, 0.05, 3)
    return _Patch(y0, x0, np.clip(peak * f, 0, 1), colour, f >= 0.5)


def _crack(rng, cx, cy, s, w, h, strength, scale) -> _Patch:
    length = rng.uniform(0.10, 0.30) * s * scale
    reach = int(length * 1.2) + 4
    x0, y0, x1, y1 = _window(cx, cy, reach, w, h)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    thick = max(1, round(rng.uniform(0.005, 0.009) * s * scale))
    seg = max(2.0, 0.015 * s * scale)

    def walk(x: float, y: float, ang: float, remaining: float, width: int, depth: int) -> None:
        while remaining > 0:
            ang += rng.normal(0, 0.45)
            nx, ny = x + seg * math.cos(ang), y + seg * math.sin(ang)
            cv2.line(canvas, (round(x), round(y)), (round(nx), round(ny)), 255, width, cv2.LINE_8)
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
    gt = canvas > 0
    peak = 0.25 + 0.65 * strength
    colour = np.array([0.16, 0.15, 0.14]) + rng.uniform(0.0, 0.12)
    return _Patch(y0, x0, gt.astype(np.float32) * peak, colour, gt)


def _chip(rng, cx, cy, s, w, h, strength, scale) -> _Patch:
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
    grit = 1.0 + 0.08 * _noise(rng, gt.shape, max(4.0, r / 1.5))
    colour = (fill[None, None, :] * grit[..., None]).astype(np.float32)
    colour[rim] = (0.22, 0.21, 0.20)
    peak = 0.35 + 0.6 * strength
    return _Patch(y0, x0, gt.astype(np.float32) * peak, colour, gt)


def _erosion(rng, blade: _Blade, s, w, h, strength, scale) -> _Patch | None:
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
    rough = _noise(rng, shape, rng.uniform(6, 14))
    fine = _noise(rng, shape, rng.uniform(20, 40))
    reach = depth * env * (0.75 + 0.25 * rough) + 0.25 * depth * fine * env
    gt = (blade.dist_le[sl] >= 0) & (blade.dist_le[sl] < reach) & (env > 0)
    base = np.array([0.56, 0.53, 0.49]) + rng.uniform(-0.06, 0.06)
    pits = _noise(rng, shape, rng.uniform(40, 70))
    colour = base[None, None, :] * (1.0 + 0.18 * pits[..., None]).astype(np.float32)
    peak = 0.3 + 0.6 * strength
    return _Patch(y0, x0, gt.astype(np.float32) * peak, colour, gt)


# --------------------------------------------------------------------------------------------
# scene assembly


def _loose_box(
    rng: np.random.Generator, bbox: tuple[int, int, int, int], w: int, h: int, cfg: SynthConfig
) -> np.ndarray:
    x0, y0, x1, y1 = bbox
    bw, bh = x1 - x0, y1 - y0
    lo, hi = cfg.box_padding
    pad = rng.uniform(lo, hi, 4) * np.array([bw, bh, bw, bh]) + rng.uniform(1.0, 3.0, 4)
    return np.array(
        [max(0.0, x0 - pad[0]), max(0.0, y0 - pad[1]), min(w, x1 + pad[2]), min(h, y1 + pad[3])],
        dtype=np.float32,
    )


def render_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = DEFAULT_SIZE,
    config: SynthConfig | None = None,
) -> Scene:
    """Render one blade image with its exact ground truth and its loose, incomplete boxes.

    Args:
        rng: the random generator that decides everything about the scene.
        size: ``(width, height)`` in pixels (at least 64 each).
        config: scene parameters; ``SynthConfig()`` when omitted.

    Returns:
        The scene: RGB image (before JPEG compression), label map (0/1/2), defects.
    """
    cfg = config or SynthConfig()
    w, h = int(size[0]), int(size[1])
    if w < 64 or h < 64:
        raise ValueError(f"image size must be at least 64×64, got {w}×{h}")
    s = float(min(w, h))
    exposure = rng.uniform(0.85, 1.08)
    sky = _sky(rng, w, h, exposure)
    blade = _blade(rng, w, h)
    albedo = _blade_albedo(rng, blade, w, h)

    # ---- defects (painted into the albedo, so lighting and shadows fall on them too)
    mask = np.zeros((h, w), np.uint8)
    defects: list[SynthDefect] = []
    if rng.random() >= cfg.defect_free_fraction:
        count = int(rng.integers(1, cfg.max_defects + 1)) if rng.random() < 0.45 else 1
        occupied = np.zeros((h, w), bool)
        margin = max(2.0, 0.03 * s)
        inside = blade.dist > margin
        min_pixels = max(6, round(3e-4 * w * h))
        attempts = 0
        while len(defects) < count and attempts < 6 * count:
            attempts += 1
            cls = DAMAGE if rng.random() < cfg.damage_fraction else DIRT
            kinds = DAMAGE_KINDS if cls == DAMAGE else DIRT_KINDS
            probs = [0.45, 0.25, 0.30] if cls == DAMAGE else [0.45, 0.30, 0.25]
            kind = str(rng.choice(kinds, p=probs))
            strength = float(rng.random())
            scale = cfg.defect_scale
            if kind == "erosion":
                patch = _erosion(rng, blade, s, w, h, strength, scale)
            else:
                ys, xs = rng.integers(0, h, 48), rng.integers(0, w, 48)
                ok = inside[ys, xs] & ~occupied[ys, xs]
                if kind == "splatter":  # insects hit the leading edge
                    near_le = ok & (blade.dist_le[ys, xs] < 0.3 * blade.chord[ys, xs])
                    ok = near_le if near_le.any() else ok
                if not ok.any():
                    continue
                i = int(np.argmax(ok))
                cx, cy = float(xs[i]) + 0.5, float(ys[i]) + 0.5
                if kind == "stain":
                    patch = _stain(rng, cx, cy, s, w, h, strength, scale)
                elif kind == "splatter":
                    patch = _splatter(rng, cx, cy, s, w, h, strength, scale)
                elif kind == "streak":
                    patch = _streak(rng, cx, cy, s, w, h, strength, scale, blade)
                elif kind == "crack":
                    patch = _crack(rng, cx, cy, s, w, h, strength, scale)
                else:
                    patch = _chip(rng, cx, cy, s, w, h, strength, scale)
            if patch is None:
                continue
            ph, pw = patch.gt.shape
            sl = np.s_[patch.y0 : patch.y0 + ph, patch.x0 : patch.x0 + pw]
            on_blade = blade.alpha[sl]
            gt = patch.gt & (on_blade >= 0.5)
            if int(gt.sum()) < min_pixels or (gt & occupied[sl]).any():
                continue
            alpha = (patch.alpha * on_blade)[..., None]
            albedo[sl] = albedo[sl] * (1 - alpha) + np.asarray(patch.colour, np.float32) * alpha
            full = np.zeros((h, w), bool)
            full[sl] = gt
            mask[full] = cls + 1
            grown = cv2.dilate(gt.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
            occupied[sl] |= grown
            bbox = _bbox(full)
            assert bbox is not None
            subtle = strength < 2 * cfg.unboxed_fraction
            unboxed = subtle and rng.random() < 0.5
            box = None if unboxed else _loose_box(rng, bbox, w, h, cfg)
            defects.append(SynthDefect(cls, kind, full, bbox, box, strength))

    # ---- lighting: cross-section shading, span gradient, cast shadow, specular highlight
    xs, ys = _grid(w, h)
    light = rng.uniform(-0.5, 1.0)
    lambert = np.clip(np.cos(blade.normal_angle - light), 0.0, 1.0)
    ambient = rng.uniform(0.35, 0.55)
    shading = ambient + (1 - ambient) * lambert
    shading = shading * (1 + rng.uniform(-0.12, 0.12) * blade.u / s) * exposure
    if rng.random() < cfg.highlight_probability:
        spec_at = rng.uniform(-0.2, 1.2)
        along = 0.6 + 0.4 * _noise(rng, (h, w), 3.0)
        spec = np.exp(-(((blade.normal_angle - spec_at) / 0.08) ** 2)) * along
        highlight = rng.uniform(0.15, 0.35) * np.clip(spec, 0, 1)
    else:
        highlight = np.zeros((h, w), np.float32)
    rgb_blade = albedo * shading[..., None] + highlight[..., None]
    if rng.random() < cfg.shadow_probability:  # shadow of the tower or another blade
        ang = rng.uniform(0, 2 * math.pi)
        px, py = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        sd = (xs - px) * math.cos(ang) + (ys - py) * math.sin(ang)
        soft = rng.uniform(0.01, 0.05) * s
        cover = _smoothstep(-soft, soft, sd)
        if rng.random() < 0.5:  # a band rather than a half-plane
            cover = cover * (1 - _smoothstep(-soft, soft, sd - rng.uniform(0.1, 0.4) * s))
        depth = rng.uniform(0.2, 0.45)
        tint = np.array([0.0, 0.02, 0.08], np.float32)  # shadows are lit by the blue sky
        rgb_blade = rgb_blade * ((1 - depth * cover)[..., None] * (1 + tint * cover[..., None]))
    a = blade.alpha[..., None]
    rgb = sky * (1 - a) + rgb_blade * a
    # silhouette rim: a slightly dark outline where the blade meets the sky
    rim = np.exp(-((blade.dist / 1.2) ** 2))[..., None]
    rgb = rgb * (1 - 0.12 * rim)

    # ---- camera: vignetting, blur, sensor noise
    r2 = ((xs - w / 2) / w) ** 2 + ((ys - h / 2) / h) ** 2
    rgb = rgb * (1 - rng.uniform(0.0, 0.35) * r2)[..., None]
    if rng.random() < cfg.blur_probability:
        sigma = rng.uniform(0.5, 1.3) * s / 360
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    rgb = rgb + rng.normal(0.0, rng.uniform(0.004, 0.015), rgb.shape).astype(np.float32)
    image = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    lo, hi = cfg.jpeg_quality
    quality = int(rng.integers(lo, hi + 1))
    return Scene(
        image=image, mask=mask, blade=blade.alpha >= 0.5, defects=defects, jpeg_quality=quality
    )


# --------------------------------------------------------------------------------------------
# datasets


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of every other image."""
    key = zlib.crc32(split.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, int(index)]))


def image_name(split: str, index: int) -> str:
    """File stem of image ``index`` of ``split`` (unique across splits)."""
    return f"{split}_{index:05d}"


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(
                f"{out}: folder is not empty; use a new or empty folder, or overwrite the "
                "generated dataset there (b2p synth --overwrite, or overwrite=True)"
            )
        remove_outputs(out, _OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)


def generate_dataset(
    out: str | Path,
    *,
    train: int = 200,
    val: int = 50,
    test: int = 50,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    config: SynthConfig | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[int, int], None] = False,
) -> Path:
    """Write a synthetic YOLO dataset with exact ground-truth masks.

    Layout: ``out/data.yaml``, ``out/images/<split>/<name>.jpg``,
    ``out/labels/<split>/<name>.txt`` (defect-free images alternately get an empty label file
    or none), ``out/gt_masks/<split>/<name>.png`` (0 background, 1 dirt, 2 damage) and
    ``out/synth.json`` (parameters, per-split counts and every defect with its tight box,
    annotation box or ``null`` when unboxed). ``data.yaml`` is written last, so a dataset
    without it is incomplete. Splits with 0 images are left out of ``data.yaml``.

    Args:
        out: output folder; it must be new or empty unless ``overwrite``.
        train: number of training images.
        val: number of validation images.
        test: number of test images.
        size: ``(width, height)`` of every image.
        seed: the dataset seed; image ``i`` of a split is the same whatever the split sizes.
        config: scene parameters (``SynthConfig()`` when omitted).
        overwrite: replace the generated files (``images``, ``labels``, ``gt_masks``,
            ``data.yaml``, ``synth.json``) in a non-empty ``out``; other files are kept.
        progress: ``True`` shows a rich progress bar on stderr; a callable is called as
            ``progress(done, total)`` after each image.

    Returns:
        The path of ``data.yaml``.

    Raises:
        DatasetError: ``out`` is not empty (and ``overwrite`` is false) or not a folder.
        ValueError: negative counts, no images at all, or an image size below 64×64.
    """
    cfg = config or SynthConfig()
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"image counts must not be negative, got {counts}")
    total = sum(counts.values())
    if total == 0:
        raise ValueError("nothing to generate: train, val and test are all 0")
    w, h = int(size[0]), int(size[1])
    if w < 64 or h < 64:
        raise ValueError(f"image size must be at least 64×64, got {w}×{h}")
    out = Path(out)
    _prepare_out(out, overwrite)

    manifest: dict[str, Any] = {
        "generator": "boxes2pixels.data.synth",
        "seed": int(seed),
        "size": [w, h],
        "names": list(CLASS_NAMES),
        "config": asdict(cfg),
        "splits": {},
        "images": {},
    }

    def run(report: Callable[[int], None]) -> None:
        done = 0
        for split, n in counts.items():
            if n == 0:
                continue
            stats = {
                "images": n,
                "with_defects": 0,
                "boxes": dict.fromkeys(CLASS_NAMES, 0),
                "defects": dict.fromkeys(CLASS_NAMES, 0),
                "unboxed": 0,
            }
            records: dict[str, Any] = {}
            for i in range(n):
                name = image_name(split, i)
                scene = render_scene(scene_rng(seed, split, i), (w, h), cfg)
                _write_scene(out, split, name, scene, empty_label_file=i % 2 == 0)
                stats["with_defects"] += bool(scene.defects)
                for d in scene.defects:
                    stats["defects"][CLASS_NAMES[d.cls]] += 1
                    if d.boxed:
                        stats["boxes"][CLASS_NAMES[d.cls]] += 1
                    else:
                        stats["unboxed"] += 1
                records[name] = {
                    "jpeg_quality": scene.jpeg_quality,
                    "defects": [
                        {
                            "class": CLASS_NAMES[d.cls],
                            "kind": d.kind,
                            "bbox": list(d.bbox),
                            "box": None if d.box is None else [round(float(v), 2) for v in d.box],
                            "pixels": int(d.mask.sum()),
                            "strength": round(d.strength, 3),
                        }
                        for d in scene.defects
                    ],
                }
                done += 1
                report(done)
            manifest["splits"][split] = stats
            manifest["images"][split] = records

    if progress is True:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("generating blade images", total=total)
            run(lambda done: bar.update(task, completed=done))
    elif callable(progress):
        callback = progress
        run(lambda done: callback(done, total))
    else:
        run(lambda done: None)

    write_json_atomic(out / MANIFEST_NAME, manifest)
    yaml_lines = ["path: .", *(f"{s}: images/{s}" for s in _SPLITS if counts[s] > 0), "names:"]
    yaml_lines += [f"  {i}: {name}" for i, name in enumerate(CLASS_NAMES)]
    yaml_path = out / "data.yaml"
    write_text_atomic(yaml_path, "\n".join(yaml_lines) + "\n")
    return yaml_path


def _write_scene(out: Path, split: str, name: str, scene: Scene, empty_label_file: bool) -> None:
    with atomic_path(out / "images" / split / f"{name}.jpg") as tmp:
        tmp.write_bytes(scene.jpeg_bytes())
    write_mask(out / "gt_masks" / split / f"{name}.png", scene.mask)
    text = scene.label_text()
    label = out / "labels" / split / f"{name}.txt"
    if text or empty_label_file:
        write_text_atomic(label, text)
    else:
        label.parent.mkdir(parents=True, exist_ok=True)


def load_manifest(root: str | Path) -> dict[str, Any]:
    """Read ``synth.json`` of a generated dataset (its parameters, counts and defects).

    Raises:
        DatasetError: the file is missing or not valid JSON.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: not found; is this a dataset made by b2p synth?") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
