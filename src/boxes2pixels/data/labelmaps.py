"""Label maps: the one definition of their values, their PNG files and their regions.

A label map is an H×W ``uint8`` array: 0 background, ``k + 1`` YOLO class ``k``,
:data:`IGNORE` (255) ignored. On disk it is a plain 8-bit single-channel PNG of those values
(:func:`write_mask`, :func:`read_mask`); colours are only for previews and overlays
(:func:`class_colour`). :func:`label_regions` gives the connected regions of each class, the
unit of region reports, COCO instances and YOLO-seg polygons.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import DatasetError, ImageReadError
from ..io import IMAGE_ERRORS, encoded, write_bytes_atomic

IGNORE = 255
"""The label value of pixels that no loss and no metric counts."""

# Colours (RGB) for label values 0..N; index 255 (ignore) is white.
_BASE_COLOURS = [
    (0, 0, 0),
    (255, 190, 0),
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
]


@functools.lru_cache(maxsize=256)
def class_colour(value: int) -> tuple[int, int, int]:
    """RGB colour used for label value ``value`` (0 = background) in palettes and overlays."""
    if value == IGNORE:
        return (255, 255, 255)
    if value < len(_BASE_COLOURS):
        return _BASE_COLOURS[value]
    rng = np.random.default_rng(value)
    r, g, b = (int(c) for c in rng.integers(40, 256, size=3))
    return (r, g, b)


def label_palette() -> list[int]:
    """A 768-entry PNG palette: ``class_colour(i)`` for every index ``i``."""
    palette: list[int] = []
    for i in range(256):
        palette.extend(class_colour(i))
    return palette


def write_mask(path: str | Path, mask: np.ndarray, palette: bool = False) -> None:
    """Write a label map (H×W ``uint8``: 0 background, k+1 class k, 255 ignore) as a PNG.

    By default a plain 8-bit grayscale PNG whose values are the class indices, which every
    reader returns as written (PIL, ``cv2.imread`` GRAYSCALE or UNCHANGED, torchvision,
    Detectron2, Ultralytics). ``palette=True`` attaches a colour palette so image viewers show
    colours; the indices stay the same for PIL and :func:`read_mask`, but tools that convert
    to grayscale (OpenCV, Detectron2) then read colour luminance instead of class indices.
    The write is atomic.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    img = Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8)))  # 2-D uint8: mode "L"
    if palette:
        img = img.convert("P")
        img.putpalette(label_palette())
    write_bytes_atomic(path, encoded(img, "PNG"))


def read_mask(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """Read a label-map PNG as H×W ``uint8`` class indices: a plain grayscale PNG's values, or
    a palette PNG's indices (the palette is ignored; masks written before 0.2 have one).

    A 16-bit PNG is read when every value fits in 8 bits. With ``num_classes``, every value
    must be a class (``0..num_classes - 1``) or 255 (ignore).

    Raises:
        ImageReadError: missing, unreadable, not single-channel, or a value above 255 (a
            16-bit mask is never wrapped into 8 bits: its annotations would vanish).
        DatasetError: a value that is not a class of the dataset (with ``num_classes``).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "L"):
                mask = np.array(img, dtype=np.uint8)
            elif img.mode in ("I;16", "I", "I;16B", "I;16L"):
                mask = _narrowed(path, np.asarray(img))
            else:
                raise ImageReadError(
                    f"{path}: a mask must be a single-channel PNG of class indices, "
                    f"got mode {img.mode}"
                )
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: mask file not found") from exc
    except IMAGE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read mask ({exc})") from exc
    if num_classes is not None:
        check_label_values(mask, num_classes, path)
    return mask


def _narrowed(path: Path, values: np.ndarray) -> np.ndarray:
    """A wide (16/32-bit) mask as ``uint8``, or an error naming the file when a value does not
    fit."""
    wide = (values < 0) | (values > 255)
    if wide.any():
        raise ImageReadError(
            f"{path}: a 16-bit mask holding label value {int(values[wide].max())}; masks are "
            "8-bit class indices (0 background, k+1 class k, 255 ignore). Convert it to 8-bit "
            "with one value per class; it was not read, so no annotation is lost silently."
        )
    return values.astype(np.uint8)


def check_label_values(mask: np.ndarray, num_classes: int, where: str | Path) -> None:
    """Raise ``DatasetError`` naming ``where`` when ``mask`` holds a value that is neither a
    class ``0..num_classes - 1`` nor 255 (ignore)."""
    bad = (mask >= num_classes) & (mask != IGNORE)
    if bad.any():
        raise DatasetError(
            f"{where}: holds label value {int(mask[bad].max())}, but the dataset has values "
            f"0..{num_classes - 1} (and 255 = ignore)"
        )


@dataclass(frozen=True)
class Region:
    """One 8-connected region of one class in a label map.

    Attributes:
        value: the label value (``k + 1`` for YOLO class ``k``).
        bbox: ``x, y, w, h`` in pixels.
        area: pixel count.
        centroid: ``x, y`` of the region's pixels.
        components: the component image of the class (shared by its regions).
        index: this region's number in ``components``.
    """

    value: int
    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]
    components: np.ndarray
    index: int

    @property
    def mask(self) -> np.ndarray:
        """H×W ``bool``, True on the region's pixels."""
        return self.components == self.index


def defect_pixels(label_map: np.ndarray) -> np.ndarray:
    """H×W ``bool``: the pixels of any defect class (neither background nor ignored)."""
    return (label_map > 0) & (label_map != IGNORE)


def label_regions(label_map: np.ndarray, values: Iterable[int] | None = None) -> Iterator[Region]:
    """The 8-connected regions of every class value (1..254, or ``values``) in value order."""
    wanted = values if values is not None else (int(v) for v in np.unique(label_map))
    for value in wanted:
        if value == 0 or value == IGNORE:
            continue
        binary = (label_map == value).astype(np.uint8)
        count, components, stats, centroids = cv2.connectedComponentsWithStats(
            binary, connectivity=8
        )
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            cx, cy = (float(c) for c in centroids[index])
            yield Region(int(value), (x, y, w, h), area, (cx, cy), components, index)
