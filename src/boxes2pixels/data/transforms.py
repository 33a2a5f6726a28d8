"""Joint image/mask augmentation for training the student (numpy + OpenCV).

Geometric steps (flips, random scale-crop) are applied to the image and its label map
together, before letterboxing, so the label map stays aligned and keeps exact class
values; photometric steps (colour jitter) touch only the image and run after letterboxing,
on the (smaller) resized content. Every random draw comes from the ``numpy`` generator the
caller passes, so a sample's augmentation is reproducible from its seed.

Letterboxing itself lives in :mod:`boxes2pixels.geometry` (``letterbox``,
``letterbox_mask``) and is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry import letterbox, letterbox_mask

__all__ = ["JointTransform", "letterbox", "letterbox_mask"]


@dataclass
class JointTransform:
    """Random flips, scale-crop and colour jitter for (image, label map) pairs.

    Attributes:
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip (aerial inspection images have no "up").
        scale_crop: probability of cropping a random window whose sides are a share in
            ``[min_scale, 1]`` of the image's (aspect kept); letterboxing then enlarges it.
        min_scale: smallest crop side as a share of the image side.
        colour: strength of brightness, contrast and saturation jitter (factors drawn
            from ``[1 − colour, 1 + colour]``).
        hue: largest hue shift, as a share of the colour circle.
    """

    hflip: float = 0.5
    vflip: float = 0.5
    scale_crop: float = 0.5
    min_scale: float = 0.5
    colour: float = 0.2
    hue: float = 0.02

    def geometric(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flip and crop an RGB image (H×W×3) and its label map (H×W) the same way."""
        if image.shape[:2] != mask.shape[:2]:
            raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
        if rng.random() < self.hflip:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if rng.random() < self.vflip:
            image, mask = image[::-1], mask[::-1]
        if rng.random() < self.scale_crop and self.min_scale < 1.0:
            h, w = mask.shape[:2]
            s = rng.uniform(self.min_scale, 1.0)
            ch, cw = max(1, round(h * s)), max(1, round(w * s))
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            image, mask = image[y0 : y0 + ch, x0 : x0 + cw], mask[y0 : y0 + ch, x0 : x0 + cw]
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Colour jitter of an RGB ``uint8`` image: brightness, contrast, saturation, hue."""
        if self.colour <= 0 and self.hue <= 0:
            return image
        out = image.astype(np.float32)
        if self.colour > 0:
            lo, hi = 1.0 - self.colour, 1.0 + self.colour
            out *= rng.uniform(lo, hi)  # brightness
            gray = cv2.cvtColor(np.clip(out, 0, 255), cv2.COLOR_RGB2GRAY)
            mean = float(gray.mean())
            out = (out - mean) * rng.uniform(lo, hi) + mean  # contrast
            gray = cv2.cvtColor(np.clip(out, 0, 255), cv2.COLOR_RGB2GRAY)[..., None]
            out = gray + (out - gray) * rng.uniform(lo, hi)  # saturation
        out8 = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        if self.hue > 0:
            shift = round(rng.uniform(-self.hue, self.hue) * 180)  # OpenCV hue range 0..179
            if shift:
                hsv = cv2.cvtColor(out8, cv2.COLOR_RGB2HSV)
                hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
                out8 = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return out8

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Geometric then photometric augmentation at the image's own size."""
        image, mask = self.geometric(image, mask, rng)
        return self.photometric(image, rng), mask
