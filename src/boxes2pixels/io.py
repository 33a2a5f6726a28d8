"""File input and output: robust image reading, label-map PNGs, atomic writes."""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageReadError

_UMASK = os.umask(0)
os.umask(_UMASK)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

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
    except (OSError, ValueError, SyntaxError) as exc:
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
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from exc
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    A crash or kill at any moment leaves either the old file or the complete new one, never
    a truncated file. The temporary file keeps ``path``'s suffix so writers that look at
    the suffix (PIL, OpenCV) choose the right format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp (and some writers that recreate the file) leave 0600: make it a normal file
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"it is truncated or not a PyTorch file ({first[:160]})"
        message = f"{path}: cannot load weights: {reason}. Expected {expected}"
        raise CheckpointError(message) from exc


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a label map (H×W ``uint8``: 0 background, k+1 class k, 255 ignore) as a PNG.

    The PNG is single-channel with a palette attached so viewers show colours; pixel values
    stay class indices. The write is atomic.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    img = Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8)), mode="P")
    img.putpalette(label_palette())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label-map PNG as H×W ``uint8`` class indices (the palette is ignored)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("P", "L"):
                if img.mode in ("I;16", "I", "I;16B", "I;16L"):
                    return np.asarray(img).astype(np.uint8)
                raise ImageReadError(
                    f"{path}: a mask must be a single-channel PNG of class indices, "
                    f"got mode {img.mode}"
                )
            return np.array(img, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: mask file not found") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot read mask ({exc})") from exc


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB ``uint8`` image (PNG or JPEG by suffix) atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp)


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
