"""File input and output: robust image reading, label-map PNGs, atomic writes."""

from __future__ import annotations

import functools
import io
import json
import shutil
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .atomic import atomic_path as atomic_path  # re-exported: writers import it from here
from .atomic import write_bytes_atomic as write_bytes_atomic
from .errors import DatasetError, ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# What PIL raises for a missing, corrupt or hostile file; DecompressionBombError is a file
# whose header claims more pixels than ``Image.MAX_IMAGE_PIXELS`` allows (2× the limit).
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

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
    if value == 255:
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


def is_image_file(path: Path) -> bool:
    """True when ``path`` has a known image suffix (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB ``uint8`` (H×W×3) with its EXIF orientation applied.

    Grayscale, palette, RGBA and 16-bit images are converted to 8-bit RGB.

    Raises:
        ImageReadError: the file is missing, unreadable or corrupt (the message names it).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb8(img)
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: image file not found") from exc
    except _IMAGE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from exc


def _to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image after EXIF orientation, read from the header only."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except _IMAGE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from exc
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def remove_outputs(folder: Path, names: Sequence[str]) -> None:
    """Delete the files or folders ``folder/<name>`` that a command wrote earlier (for
    ``--overwrite``); everything else in ``folder`` is left alone."""
    for name in names:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def load_torch_weights(path: str | Path, expected: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: no code in the file ever runs.

    Raises:
        CheckpointError: the file is missing, truncated, not a PyTorch file, or holds objects
            other than tensors and plain containers; one paragraph that names the file and
            ``expected`` (what the caller needs, and where to get it).
    """
    import pickle

    import torch

    from .errors import CheckpointError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            # a text or random file "declares" a pickle protocol; the error below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found. Expected {expected}") from exc
    except pickle.UnpicklingError as exc:
        reason = (
            "it holds Python objects other than tensors (only plain weight files are loaded, "
            "so that no code inside a downloaded file runs) or is corrupt"
        )
        message = f"{path}: cannot load weights: {reason}. Expected {expected}"
        raise CheckpointError(message) from exc
    except (RuntimeError, EOFError, OSError, ValueError, LookupError, struct.error) as exc:
        # a text file read by the unpickler fails with IndexError / KeyError, a truncated
        # one with EOFError or struct.error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, (LookupError, struct.error, UnicodeDecodeError)):
            first = "its bytes are not a pickle stream; is it a text file?"
        reason = f"it is truncated or not a PyTorch file ({first[:160]})"
        message = f"{path}: cannot load weights: {reason}. Expected {expected}"
        raise CheckpointError(message) from exc


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, checking every byte was written."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


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
    write_bytes_atomic(path, _encoded(img, "PNG"))


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
    except _IMAGE_ERRORS as exc:
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
    bad = (mask >= num_classes) & (mask != 255)
    if bad.any():
        raise DatasetError(
            f"{where}: holds label value {int(mask[bad].max())}, but the dataset has values "
            f"0..{num_classes - 1} (and 255 = ignore)"
        )


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB ``uint8`` image (format by suffix: PNG, JPEG, ...) atomically, checking
    every byte was written."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}")
    write_bytes_atomic(path, _encoded(Image.fromarray(np.ascontiguousarray(image)), fmt))


def _encoded(img: Image.Image, fmt: str) -> bytes:
    """``img`` encoded as ``fmt`` in memory: PIL's encoders in C ignore a short write to a
    file (a full disk or ``ulimit -f``), so the bytes are written and checked by Python."""
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def list_images(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Images named by ``source``: a file, a folder (recursively), a glob, or a list of those.

    Returned sorted and without duplicates.
    """
    import glob

    if isinstance(source, (list, tuple)):
        out: list[Path] = []
        for s in source:
            out.extend(list_images(s))
        return sorted(set(out))
    src = Path(source)
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p))
    if src.is_file():
        return [src]
    matches = [Path(p) for p in glob.glob(str(source), recursive=True)]
    return sorted(p for p in matches if p.is_file() and is_image_file(p))
