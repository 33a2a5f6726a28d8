"""One synthetic blade photo: its defects placed and painted, then lit and photographed.

:func:`render_scene` composes the sky and blade (:mod:`.blade`), the defects
(:mod:`.defects`), lighting and camera effects, and returns a :class:`Scene` with exact
ground truth and loose, incomplete annotation boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ...errors import ConfigError
from .blade import Blade, blade_albedo, draw_blade, draw_sky
from .config import (
    DAMAGE,
    DAMAGE_KINDS,
    DEFAULT_SIZE,
    DIRT,
    DIRT_KINDS,
    HAIRLINE_SIDE,
    SynthConfig,
)
from .defects import Patch, draw_defect
from .fields import grid, noise, smoothstep, tight_box


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


def _loose_box(
    rng: np.random.Generator, bbox: tuple[int, int, int, int], w: int, h: int, cfg: SynthConfig
) -> np.ndarray:
    """A loose annotation box around ``bbox``: a random margin on each side, inside the image."""
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
        raise ConfigError(f"image size must be at least 64×64, got {w}×{h}")
    exposure = rng.uniform(0.85, 1.08)
    sky = draw_sky(rng, w, h, exposure)
    blade = draw_blade(rng, w, h)
    albedo = blade_albedo(rng, blade, w, h)
    # defects are painted into the albedo, so lighting and shadows fall on them too
    mask = np.zeros((h, w), np.uint8)
    defects: list[SynthDefect] = []
    if rng.random() >= cfg.defect_free_fraction:
        defects = _add_defects(rng, blade, albedo, mask, cfg)
    rgb = _composite(sky, blade, _light(rng, blade, albedo, exposure, cfg), rng, cfg)
    image = _camera(rng, rgb, cfg)
    lo, hi = cfg.jpeg_quality
    quality = int(rng.integers(lo, hi + 1))
    return Scene(
        image=image, mask=mask, blade=blade.alpha >= 0.5, defects=defects, jpeg_quality=quality
    )


def _add_defects(
    rng: np.random.Generator,
    blade: Blade,
    albedo: np.ndarray,
    mask: np.ndarray,
    cfg: SynthConfig,
) -> list[SynthDefect]:
    """Place 1 to ``max_defects`` non-overlapping defects: painted into ``albedo`` and
    written into ``mask`` (both in place)."""
    h, w = mask.shape
    count = int(rng.integers(1, cfg.max_defects + 1)) if rng.random() < 0.45 else 1
    occupied = np.zeros((h, w), bool)
    inside = blade.dist > max(2.0, 0.03 * min(w, h))
    min_pixels = max(6, round(3e-4 * w * h))
    # above HAIRLINE_SIDE a crack's area grows with the side, not its square (its width is
    # fixed), and hairlines are about half as wide as the cracks drawn below that size
    s = min(w, h)
    min_crack = min_pixels if s <= HAIRLINE_SIDE else max(6, round(min_pixels * 180 / s))
    defects: list[SynthDefect] = []
    attempts = 0
    while len(defects) < count and attempts < 6 * count:
        attempts += 1
        cls = DAMAGE if rng.random() < cfg.damage_fraction else DIRT
        kinds = DAMAGE_KINDS if cls == DAMAGE else DIRT_KINDS
        probs = [0.45, 0.25, 0.30] if cls == DAMAGE else [0.45, 0.30, 0.25]
        kind = str(rng.choice(kinds, p=probs))
        strength = float(rng.random())
        patch = draw_defect(rng, kind, blade, inside & ~occupied, strength, cfg.defect_scale)
        if patch is None:
            continue
        need = min_crack if kind == "crack" else min_pixels
        full = _paint(patch, blade, albedo, occupied, need)
        if full is None:
            continue
        mask[full] = cls + 1
        bbox = tight_box(full)
        assert bbox is not None
        subtle = strength < 2 * cfg.unboxed_fraction
        unboxed = subtle and rng.random() < 0.5
        box = None if unboxed else _loose_box(rng, bbox, w, h, cfg)
        defects.append(SynthDefect(cls, kind, full, bbox, box, strength))
    return defects


def _paint(
    patch: Patch, blade: Blade, albedo: np.ndarray, occupied: np.ndarray, min_pixels: int
) -> np.ndarray | None:
    """Paint ``patch`` into ``albedo`` and mark it ``occupied`` (both in place); its H×W
    mask, or ``None`` (nothing painted) when it is too small off the blade or touches another."""
    ph, pw = patch.gt.shape
    sl = np.s_[patch.y0 : patch.y0 + ph, patch.x0 : patch.x0 + pw]
    on_blade = blade.alpha[sl]
    gt = patch.gt & (on_blade >= 0.5)
    if int(gt.sum()) < min_pixels or (gt & occupied[sl]).any():
        return None
    alpha = (patch.alpha * on_blade)[..., None]
    albedo[sl] = albedo[sl] * (1 - alpha) + np.asarray(patch.colour, np.float32) * alpha
    full = np.zeros(occupied.shape, bool)
    full[sl] = gt
    grown = cv2.dilate(gt.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    occupied[sl] |= grown
    return full


def _light(
    rng: np.random.Generator, blade: Blade, albedo: np.ndarray, exposure: float, cfg: SynthConfig
) -> np.ndarray:
    """The lit blade: cross-section shading, a span gradient and a specular highlight."""
    h, w = albedo.shape[:2]
    s = float(min(w, h))
    light = rng.uniform(-0.5, 1.0)
    lambert = np.clip(np.cos(blade.normal_angle - light), 0.0, 1.0)
    ambient = rng.uniform(0.35, 0.55)
    shading = ambient + (1 - ambient) * lambert
    shading = shading * (1 + rng.uniform(-0.12, 0.12) * blade.u / s) * exposure
    if rng.random() < cfg.highlight_probability:
        spec_at = rng.uniform(-0.2, 1.2)
        along = 0.6 + 0.4 * noise(rng, (h, w), 3.0)
        spec = np.exp(-(((blade.normal_angle - spec_at) / 0.08) ** 2)) * along
        highlight = rng.uniform(0.15, 0.35) * np.clip(spec, 0, 1)
    else:
        highlight = np.zeros((h, w), np.float32)
    return albedo * shading[..., None] + highlight[..., None]


def _composite(
    sky: np.ndarray,
    blade: Blade,
    rgb_blade: np.ndarray,
    rng: np.random.Generator,
    cfg: SynthConfig,
) -> np.ndarray:
    """The blade, maybe under a cast shadow, over the sky, with a dark silhouette rim."""
    h, w = sky.shape[:2]
    s = float(min(w, h))
    xs, ys = grid(w, h)
    if rng.random() < cfg.shadow_probability:  # shadow of the tower or another blade
        ang = rng.uniform(0, 2 * math.pi)
        px, py = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        sd = (xs - px) * math.cos(ang) + (ys - py) * math.sin(ang)
        soft = rng.uniform(0.01, 0.05) * s
        cover = smoothstep(-soft, soft, sd)
        if rng.random() < 0.5:  # a band rather than a half-plane
            cover = cover * (1 - smoothstep(-soft, soft, sd - rng.uniform(0.1, 0.4) * s))
        depth = rng.uniform(0.2, 0.45)
        tint = np.array([0.0, 0.02, 0.08], np.float32)  # shadows are lit by the blue sky
        rgb_blade = rgb_blade * ((1 - depth * cover)[..., None] * (1 + tint * cover[..., None]))
    a = blade.alpha[..., None]
    rgb = sky * (1 - a) + rgb_blade * a
    # silhouette rim: a slightly dark outline where the blade meets the sky
    rim = np.exp(-((blade.dist / 1.2) ** 2))[..., None]
    return rgb * (1 - 0.12 * rim)


def _camera(rng: np.random.Generator, rgb: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """Vignetting, maybe a slight blur, sensor noise; the ``uint8`` RGB image."""
    h, w = rgb.shape[:2]
    s = float(min(w, h))
    xs, ys = grid(w, h)
    r2 = ((xs - w / 2) / w) ** 2 + ((ys - h / 2) / h) ** 2
    rgb = rgb * (1 - rng.uniform(0.0, 0.35) * r2)[..., None]
    if rng.random() < cfg.blur_probability:
        sigma = rng.uniform(0.5, 1.3) * min(s, HAIRLINE_SIDE) / HAIRLINE_SIDE
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    rgb = rgb + rng.normal(0.0, rng.uniform(0.004, 0.015), rgb.shape).astype(np.float32)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
