"""Constants of the synthetic blade data and the scene parameters (:class:`SynthConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError

CLASS_NAMES = ("dirt", "damage")
DIRT, DAMAGE = 0, 1
DIRT_KINDS = ("stain", "splatter", "streak")
DAMAGE_KINDS = ("crack", "erosion", "chip")
DEFAULT_SIZE = (640, 360)
HAIRLINE_SIDE = 360
"""Short side (px) up to which crack width and camera blur grow with the image. Above it
they keep their size in pixels, so cracks stay 1-3 px wide in a 5280×2970 photo as in a
real one (scenes up to this side are unchanged by the rule)."""


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
        defect_scale: multiplies every defect size (1.0: cracks 3-5 px wide and stains about
            30-70 px across on a 360-px-high image, still visible at 224 px wide; above a
            360-px short side cracks are 1-3 px hairlines, see ``HAIRLINE_SIDE``).
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
                raise ConfigError(f"SynthConfig.{name} must lie in [0, 1], got {value}")
        if self.unboxed_fraction > 0.5:
            raise ConfigError("SynthConfig.unboxed_fraction must be at most 0.5")
        if self.max_defects < 1:
            raise ConfigError("SynthConfig.max_defects must be at least 1")
        if self.defect_scale <= 0:
            raise ConfigError("SynthConfig.defect_scale must be positive")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ConfigError("SynthConfig.jpeg_quality must be a range within 1..100")
        pad_lo, pad_hi = self.box_padding
        if not 0.0 <= pad_lo <= pad_hi:
            raise ConfigError("SynthConfig.box_padding must be a range (lo, hi) with 0 <= lo <= hi")
