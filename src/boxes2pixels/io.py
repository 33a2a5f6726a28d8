"""File input and output: robust image reading, image and text writes (atomic, checked),
torch weight files. Label-map PNGs are in :mod:`boxes2pixels.data.labelmaps`."""

from __future__ import annotations

import io
import json
import os
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
from .errors import ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp")
OTHER_IMAGE_SUFFIXES = (".gif", ".heic", ".heif", ".avif", ".jp2", ".dng", ".cr2", ".cr3",
                        ".nef", ".arw", ".orf", ".rw2", ".raw")  # fmt: skip
"""Image types not taken from folders (animations, HEIF, camera raw: most cannot be read
without extra libraries): counted by :func:`unsupported_images` so that photos in them are
not left out without a word."""
# What PIL raises for a missing, corrupt or hostile file; DecompressionBombError is a file
# whose header claims more pixels than ``Image.MAX_IMAGE_PIXELS`` allows (2× the limit).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


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
    except IMAGE_ERRORS as exc:
        hint = ""
        if path.suffix.lower() in OTHER_IMAGE_SUFFIXES:
            hint = f"; {path.suffix.lower()} is not a type b2p reads: convert it to JPEG or PNG"
        raise ImageReadError(f"{path}: cannot read image ({exc}){hint}") from exc


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
    except IMAGE_ERRORS as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from exc
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def remove_outputs(folder: Path, names: Sequence[str]) -> None:
    """Delete the files or folders ``folder/<name>`` that a command wrote earlier (for
    ``--overwrite``); everything else in ``folder`` is left alone."""
    for name in names:
        target = folder / name
        if target.is_symlink():
            target.unlink()  # a link, never what it points to
        elif target.is_dir():
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


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB ``uint8`` image (format by suffix: PNG, JPEG, ...) atomically, checking
    every byte was written."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}")
    write_bytes_atomic(path, encoded(Image.fromarray(np.ascontiguousarray(image)), fmt))


def encoded(img: Image.Image, fmt: str) -> bytes:
    """``img`` encoded as ``fmt`` in memory: PIL's encoders in C ignore a short write to a
    file (a full disk or ``ulimit -f``), so the bytes are written and checked by Python."""
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def walk_files(folder: Path) -> list[Path]:
    """Every file below ``folder``, following links to folders (each real folder once, so a
    link loop ends), as paths through ``folder``. ``Path.rglob`` skips linked folders."""
    out: list[Path] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()  # a folder reached twice keeps the same (first) path on every run
        out.extend(p for p in (Path(root, f) for f in files) if p.is_file())
    return out


def _found(source: str | Path | Sequence[str | Path]) -> tuple[set[Path], set[Path]]:
    """``(files named one by one, files of folders and globs)`` of ``source``."""
    import glob

    named: set[Path] = set()
    found: set[Path] = set()
    for s in source if isinstance(source, (list, tuple)) else [source]:
        src = Path(s)
        if src.is_dir():
            found.update(walk_files(src))
        elif src.is_file():
            named.add(src)
        else:
            found.update(p for p in map(Path, glob.glob(str(s), recursive=True)) if p.is_file())
    return named, found


def scan_images(
    source: str | Path | Sequence[str | Path],
) -> tuple[list[Path], dict[str, int]]:
    """:func:`list_images` and :func:`unsupported_images` of ``source`` in one walk."""
    named, found = _found(source)
    counts: dict[str, int] = {}
    for p in found:
        if p.suffix.lower() in OTHER_IMAGE_SUFFIXES:
            counts[p.suffix.lower()] = counts.get(p.suffix.lower(), 0) + 1
    return sorted(named | {p for p in found if is_image_file(p)}), dict(sorted(counts.items()))


def list_images(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Images named by ``source``: a file, a folder (recursively), a glob, or a list of those.

    Returned sorted and without duplicates. A file named on its own is taken whatever its
    suffix; folders and globs give the files with an image suffix (``IMAGE_SUFFIXES``).
    """
    return scan_images(source)[0]


def unsupported_images(source: str | Path | Sequence[str | Path]) -> dict[str, int]:
    """Files of ``source``'s folders and globs whose type is an image type not read here
    (``OTHER_IMAGE_SUFFIXES``), counted by suffix (lower case)."""
    return scan_images(source)[1]


def describe_unsupported(counts: dict[str, int]) -> str:
    """One line for :func:`unsupported_images`' counts: how many files, of which types."""
    kinds = ", ".join(f"{n} {suffix}" for suffix, n in counts.items())
    total = sum(counts.values())
    return (
        f"{total} file{'s' if total != 1 else ''} of image types b2p does not take left out "
        f"({kinds}); convert them to one of {' '.join(IMAGE_SUFFIXES)}"
    )
