"""Drawing shared by every command: mask overlays, boxes, legends, error maps and panels.

All functions take and return RGB ``uint8`` arrays (H×W×3) and never modify their inputs.
Colours of label values come from :func:`boxes2pixels.io.class_colour`, so a class has the
same colour in PNG palettes, overlays, box drawings and legends.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .data.labelmaps import class_colour

# Error-map colours (RGB) and their legend names.
ERROR_COLOURS: dict[str, tuple[int, int, int]] = {
    "true positive": (40, 200, 70),
    "false positive": (230, 40, 40),
    "false negative": (40, 110, 255),
    "wrong class": (200, 60, 255),
}

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _font_scale(height: int, width: int) -> float:
    return float(np.clip(min(height, width) / 700.0, 0.35, 1.6))


def _text_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def colourise(mask: np.ndarray) -> np.ndarray:
    """A label map (H×W, class values) as an RGB image in the class colours."""
    lut = np.array([class_colour(i) for i in range(256)], dtype=np.uint8)
    return lut[mask.astype(np.uint8)]


def overlay_mask(
    image: np.ndarray, mask: np.ndarray, alpha: float = 0.5, outline: bool = True
) -> np.ndarray:
    """Blend a label map onto an image; background (0) stays untouched.

    Args:
        image: RGB ``uint8`` H×W×3.
        mask: H×W label map (0 background, k+1 class k, 255 ignore) or a boolean mask
            (drawn in the colour of value 1).
        alpha: opacity of the class colours.
        outline: also draw each class region's outline at full opacity.
    """
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape[:2]} does not match image {image.shape[:2]}")
    labels = mask.astype(np.uint8)
    out = image.copy()
    fg = labels > 0
    if fg.any():
        colours = colourise(labels)
        blended = image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha
        out[fg] = np.clip(blended[fg] + 0.5, 0, 255).astype(np.uint8)
        if outline:
            thickness = max(1, round(min(image.shape[:2]) / 400))
            for value in np.unique(labels[fg]):
                contours, _ = cv2.findContours(
                    (labels == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                )
                cv2.drawContours(out, contours, -1, class_colour(int(value)), thickness)
    return out


def draw_boxes(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    classes: Sequence[int] | np.ndarray,
    names: Sequence[str],
) -> np.ndarray:
    """Draw boxes (N×4 pixel ``x0, y0, x1, y1``) with their class names.

    ``classes`` are YOLO class ids (0-based) indexing ``names``; box colours are
    ``class_colour(cls + 1)``, the colour of the class in label maps.
    """
    out = np.ascontiguousarray(image.copy())
    height, width = out.shape[:2]
    scale = _font_scale(height, width)
    thickness = max(1, round(min(height, width) / 300))
    for box, cls in zip(np.asarray(boxes_xyxy, dtype=np.float64), classes, strict=True):
        colour = class_colour(int(cls) + 1)
        x0, y0, x1, y1 = (round(v) for v in box)
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thickness)
        text = names[int(cls)] if 0 <= int(cls) < len(names) else str(int(cls))
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
        ty = y0 - 2 if y0 - th - base - 2 >= 0 else min(height - 1, y0 + th + base + 2)
        cv2.rectangle(out, (x0, ty - th - base), (x0 + tw + 2, ty + 1), colour, -1)
        cv2.putText(
            out, text, (x0 + 1, ty - base + 1), _FONT, scale, _text_colour(colour), 1, cv2.LINE_AA
        )
    return out


def _legend_strip(
    width: int, entries: Sequence[tuple[str, tuple[int, int, int]]], scale: float
) -> np.ndarray:
    """Rows of colour swatches and names, wrapped to ``width``."""
    pad = max(4, round(8 * scale))
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, 1)
    row_h = th + base + pad
    swatch = th + base
    items = []
    for name, colour in entries:
        (tw, _), _ = cv2.getTextSize(name, _FONT, scale, 1)
        items.append((name, colour, swatch + pad // 2 + tw + 2 * pad))
    rows: list[list[tuple[str, tuple[int, int, int], int]]] = [[]]
    used = pad
    for item in items:
        if rows[-1] and used + item[2] > width:
            rows.append([])
            used = pad
        rows[-1].append(item)
        used += item[2]
    strip = np.full((len(rows) * row_h + pad, width, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        x, y = pad, pad + r * row_h
        for name, colour, w in row:
            cv2.rectangle(strip, (x, y), (x + swatch, y + swatch), colour, -1)
            cv2.rectangle(strip, (x, y), (x + swatch, y + swatch), (0, 0, 0), 1)
            cv2.putText(
                strip,
                name,
                (x + swatch + pad // 2, y + th),
                _FONT,
                scale,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
            x += w
    return strip


def add_legend(image: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """The image with a legend strip below it: one swatch per label value.

    ``class_names`` includes the background at index 0 (``["background", *names]``); value
    ``i`` gets ``class_colour(i)``.
    """
    entries = [(name, class_colour(i)) for i, name in enumerate(class_names)]
    strip = _legend_strip(image.shape[1], entries, _font_scale(*image.shape[:2]))
    return np.concatenate([image, strip], axis=0)


def error_map(pred: np.ndarray, gt: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Colour each pixel by how a predicted label map compares with the ground truth.

    True positive (same defect class) green, false positive (defect predicted on background)
    red, false negative (defect missed) blue, wrong defect class purple; correct background
    black and ignored pixels grey. See :data:`ERROR_COLOURS` and :func:`add_error_legend`.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth {gt.shape}")
    out = np.zeros((*gt.shape, 3), dtype=np.uint8)
    p_fg, g_fg = pred > 0, gt > 0
    out[p_fg & g_fg & (pred == gt)] = ERROR_COLOURS["true positive"]
    out[p_fg & ~g_fg] = ERROR_COLOURS["false positive"]
    out[~p_fg & g_fg] = ERROR_COLOURS["false negative"]
    out[p_fg & g_fg & (pred != gt)] = ERROR_COLOURS["wrong class"]
    out[gt == ignore_index] = (128, 128, 128)
    return out


def add_error_legend(image: np.ndarray) -> np.ndarray:
    """An error map (or a panel of them) with the error colours explained below it."""
    entries = list(ERROR_COLOURS.items())
    strip = _legend_strip(image.shape[1], entries, _font_scale(*image.shape[:2]))
    return np.concatenate([image, strip], axis=0)


def panel(images: Sequence[np.ndarray], titles: Sequence[str] | None = None) -> np.ndarray:
    """Images side by side (resized to a common height), each with its title above it."""
    if not images:
        raise ValueError("panel needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    height = max(img.shape[0] for img in images)
    tiles = []
    for img in images:
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.shape[0] != height:
            width = max(1, round(img.shape[1] * height / img.shape[0]))
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_NEAREST)
        tiles.append(img)
    gap = np.full((height, max(2, height // 100), 3), 255, dtype=np.uint8)
    body = tiles[0]
    for tile in tiles[1:]:
        body = np.concatenate([body, gap, tile], axis=1)
    if not titles:
        return body
    scale = _font_scale(height, height)
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, 1)
    bar = np.full((th + base + 10, body.shape[1], 3), 255, dtype=np.uint8)
    x = 0
    for tile, title in zip(tiles, titles, strict=True):
        cv2.putText(bar, title, (x + 4, th + 5), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
        x += tile.shape[1] + gap.shape[1]
    return np.concatenate([bar, body], axis=0)
