"""Decoded-image cache (``b2p train --cache disk|ram``): each photo and mask decoded once.

Without it, every training window costs a full decode of its photo (a 5280×2970 JPEG takes
on the order of 100 ms per core) and its mask. With ``disk``, each photo is decoded once into
a ``.npy`` array (RGB ``uint8`` H×W×3) and each mask into a ``.npy`` label map plus its per-row
defect counts (:class:`~boxes2pixels.data.crops.DefectIndex`); windows then read only their
rows of the memory-mapped arrays. With ``ram``, the same arrays are held in memory for the
run (shared with forked loader workers, copied into spawned ones).

Nothing is ever served silently stale or corrupt:

- an entry is keyed by the **sha256 of the source file's content** (and the cache format),
  so a changed photo or mask gets a new entry; renaming or touching a file does not;
- an entry is an array file plus a JSON record written after it (the record is the commit
  mark); both are written atomically (:func:`boxes2pixels.atomic.atomic_path`);
- on creation the array file is read back in full and compared with the decoded array, and
  its size and sha256 are recorded;
- on use the check is cheap: the record's source hash, format and shape, the array file's
  size and its ``.npy`` header; any mismatch (a truncated file, a foreign file, an old
  format) is reported as a warning and the entry rebuilt from the source.

Before decoding anything the cache estimates the bytes the missing entries need and stops
with a :class:`CacheError` naming the sizes when the disk (or, for ``ram``, the available
memory) cannot hold them. Entries of files that no longer exist are not deleted: the folder
can be removed at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..atomic import atomic_path
from ..errors import Boxes2PixelsError, DatasetError
from ..io import IMAGE_ERRORS, read_image, write_bytes_atomic
from .crops import DefectIndex
from .labelmaps import IGNORE, read_mask

CACHE_FORMAT = 1
"""Bumped whenever what an entry holds changes (decoding rules, layout)."""
CACHE_SUBDIR = f"decoded/v{CACHE_FORMAT}"
_CHUNK = 1 << 20
# free space kept on the disk beyond the cache's own need
_DISK_MARGIN = 256 << 20


class CacheError(Boxes2PixelsError):
    """The cache cannot be built (not enough disk or memory) or an entry broke during use."""


class CacheRebuildWarning(UserWarning):
    """An entry failed its check and was rebuilt from the source file."""


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_root(out: str | Path) -> Path:
    """The cache root of a run without ``cache_dir`` (and without ``B2P_CACHE_DIR``):
    ``<out>/.cache``, a hidden folder that the run-directory checks ignore."""
    return Path(out) / ".cache"


def human_bytes(n: float) -> str:
    """``n`` bytes as ``1.2 GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class CachedPair:
    """One (photo, mask) pair as the cache serves it.

    ``disk``: paths of the array files (opened as read-only memory maps on each use);
    ``ram``: the arrays themselves.
    """

    image_path: Path
    mask_path: Path
    shape: tuple[int, int]
    image: Path | np.ndarray
    mask: Path | np.ndarray
    rows: Path | np.ndarray

    def arrays(self) -> tuple[np.ndarray, np.ndarray, DefectIndex]:
        """Image (H×W×3), mask (H×W) and the mask's defect index; memory maps on disk."""
        if isinstance(self.image, np.ndarray):
            assert isinstance(self.mask, np.ndarray) and isinstance(self.rows, np.ndarray)
            return self.image, self.mask, DefectIndex(self.mask, self.rows)
        assert isinstance(self.mask, Path) and isinstance(self.rows, Path)
        image = _open_array(self.image, (*self.shape, 3), self.image_path)
        mask = _open_array(self.mask, self.shape, self.mask_path)
        rows = _open_array(self.rows, (self.shape[0] + 1,), self.mask_path)
        return image, mask, DefectIndex(mask, rows)


def _open_array(path: Path, shape: tuple[int, ...], source: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CacheError(
            f"{path}: cached array of {source} cannot be read ({exc}); it changed after the "
            "cache was checked. Delete it (or the cache folder) and run again."
        ) from exc
    if array.shape != shape:
        raise CacheError(
            f"{path}: cached array of {source} is {array.shape}, expected {shape}; it changed "
            "after the cache was checked. Delete it (or the cache folder) and run again."
        )
    return array


class DecodedCache:
    """Photos and masks decoded once (see the module doc).

    Args:
        mode: ``disk`` (memory-mappable ``.npy`` files under ``root``) or ``ram``.
        root: cache root for ``disk``; entries go to ``root/decoded/v1/``.
        workers: threads decoding and hashing while the cache is built.
        report: called with one-line messages (what is built, how big), or None.
    """

    def __init__(
        self,
        mode: Literal["disk", "ram"],
        root: str | Path | None = None,
        workers: int = 1,
        report: Callable[[str], None] | None = None,
    ) -> None:
        if mode not in ("disk", "ram"):
            raise ValueError(f"cache mode must be 'disk' or 'ram', got {mode!r}")
        if mode == "disk" and root is None:
            raise ValueError("a disk cache needs a root folder")
        self.mode = mode
        self.root = Path(root) / CACHE_SUBDIR if root is not None else None
        self.workers = max(1, workers)
        self.report = report
        self.built = 0  # entries decoded by this object
        self.rebuilt = 0  # of which replaced a broken entry

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["report"] = None  # callbacks need not be picklable (spawned loader workers)
        return state

    # ------------------------------------------------------------------------- building
    def prepare(self, samples: Sequence[tuple[Path, Path]], num_classes: int) -> list[CachedPair]:
        """Cache every (photo, mask) of ``samples`` (repeated pairs once) and return them.

        Raises:
            CacheError: the disk or memory cannot hold the missing entries.
            DatasetError: a mask's size differs from its photo's, or it holds a value that is
                not a class of the dataset.
            ImageReadError: a photo or mask cannot be read.
        """
        unique = list(dict.fromkeys((Path(i), Path(m)) for i, m in samples))
        if self.mode == "ram":
            self._check_room([p for p in unique], None)
            pairs = self._map(lambda p: self._ram_pair(*p, num_classes), unique)
        else:
            assert self.root is not None
            keys = self._map(lambda p: (file_sha256(p[0]), file_sha256(p[1])), unique)
            missing = [
                pair
                for pair, (ik, mk) in zip(unique, keys, strict=True)
                if not (self._valid(self._image_files(ik), quiet=True)
                        and self._valid(self._mask_files(mk), quiet=True))
            ]  # fmt: skip
            self._check_room(missing, self.root)
            pairs = self._map(
                lambda a: self._disk_pair(*a[0], *a[1], num_classes),
                list(zip(unique, keys, strict=True)),
            )
        by_pair = {(p.image_path, p.mask_path): p for p in pairs}
        if self.report is not None and self.built:
            where = f" in {self.root}" if self.root is not None else " in memory"
            self.report(f"decoded-image cache: {self.built} photo(s) decoded{where}")
        return [by_pair[(Path(i), Path(m))] for i, m in samples]

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if self.workers == 1 or len(items) < 2:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(self.workers) as pool:  # PIL, numpy and hashlib free the GIL
            return list(pool.map(fn, items))

    def _check_room(self, missing: list[tuple[Path, Path]], root: Path | None) -> None:
        """Stop before decoding when the entries of ``missing`` cannot fit."""
        if not missing:
            return
        need = sum(entry_bytes(*_image_size(i)) for i, _ in missing)
        if root is None:
            have, where, fix = available_memory(), "of available memory", "--cache disk"
        else:
            probe = next((p for p in (root, *root.parents) if p.exists()), Path("."))
            have, where = shutil.disk_usage(probe).free - _DISK_MARGIN, f"free in {probe}"
            fix = "--cache-dir on a larger disk (or B2P_CACHE_DIR)"
        if self.report is not None:
            target = root if root is not None else "memory"
            self.report(
                f"decoded-image cache: decoding {len(missing)} photo(s) into {target}, about "
                f"{human_bytes(need)}"
            )
        if have is not None and need > have:
            raise CacheError(
                f"the decoded-image cache needs about {human_bytes(need)} for {len(missing)} "
                f"photo(s) and their masks, but only {human_bytes(max(have, 0))} is {where}; "
                f"use {fix}, or --cache off (every window then decodes its photo)"
            )

    def _ram_pair(self, image_path: Path, mask_path: Path, num_classes: int) -> CachedPair:
        image, mask = _decode_pair(image_path, mask_path, num_classes)
        self.built += 1
        return CachedPair(
            image_path, mask_path, mask.shape, image, mask, DefectIndex.row_counts(mask)
        )

    # ------------------------------------------------------------------------ disk entries
    def _image_files(self, key: str) -> dict[str, Any]:
        assert self.root is not None
        base = self.root / "images" / key[:2] / key
        return {
            "key": key,
            "record": base.with_suffix(".json"),
            "arrays": {"image": base.with_suffix(".npy")},
        }

    def _mask_files(self, key: str) -> dict[str, Any]:
        assert self.root is not None
        base = self.root / "masks" / key[:2] / key
        return {
            "key": key,
            "record": base.with_suffix(".json"),
            "arrays": {"mask": base.with_suffix(".npy"), "rows": base.with_suffix(".rows.npy")},
        }

    def _valid(self, files: dict[str, Any], quiet: bool = False) -> dict[str, Any] | None:
        """The entry's record when it passes the cheap check, else None (with a warning when
        an entry exists but fails, unless ``quiet``)."""
        record_path: Path = files["record"]
        if not record_path.is_file():
            return None
        problem = ""
        try:
            record = json.loads(record_path.read_text())
            if record.get("format") != CACHE_FORMAT or record.get("source_sha256") != files["key"]:
                problem = "written by another cache format or for another source"
            for name, path in files["arrays"].items():
                if problem:
                    break
                meta = record["arrays"][name]
                if not path.is_file() or path.stat().st_size != meta["bytes"]:
                    problem = f"{path.name} is missing or has another size than recorded"
                elif _npy_header(path) != (tuple(meta["shape"]), meta["dtype"]):
                    problem = f"{path.name} has another header than recorded"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"unreadable record or array ({exc})"
        if problem:
            if not quiet:
                warnings.warn(
                    f"{record_path}: decoded-image cache entry failed its check ({problem}); "
                    "rebuilding it from the source file",
                    CacheRebuildWarning,
                    stacklevel=2,
                )
            return None
        return record

    def _disk_pair(
        self, image_path: Path, mask_path: Path, image_key: str, mask_key: str, num_classes: int
    ) -> CachedPair:
        image_files, mask_files = self._image_files(image_key), self._mask_files(mask_key)
        image_rec = self._valid(image_files)
        mask_rec = self._valid(mask_files)
        if image_rec is None or mask_rec is None:
            rebuilt = (image_rec is None and image_files["record"].exists()) or (
                mask_rec is None and mask_files["record"].exists()
            )
            image, mask = _decode_pair(image_path, mask_path, num_classes)
            if image_rec is None:
                image_rec = _write_entry(image_files, {"image": image}, image_path)
            if mask_rec is None:
                rows = DefectIndex.row_counts(mask)
                mask_rec = _write_entry(
                    mask_files, {"mask": mask, "rows": rows}, mask_path,
                    values=[int(v) for v in np.unique(mask)],
                )  # fmt: skip
            self.built += 1
            self.rebuilt += int(rebuilt)
        shape = tuple(image_rec["arrays"]["image"]["shape"][:2])
        mask_shape = tuple(mask_rec["arrays"]["mask"]["shape"])
        if mask_shape != shape:
            raise DatasetError(
                f"{mask_path}: mask is {mask_shape[1]}×{mask_shape[0]} but image {image_path} "
                f"is {shape[1]}×{shape[0]}"
            )
        bad = [v for v in mask_rec["values"] if v >= num_classes and v != IGNORE]
        if bad:
            raise DatasetError(
                f"{mask_path}: holds label value {max(bad)}, but the dataset has values "
                f"0..{num_classes - 1} (and 255 = ignore)"
            )
        return CachedPair(
            image_path,
            mask_path,
            (int(shape[0]), int(shape[1])),
            image_files["arrays"]["image"],
            mask_files["arrays"]["mask"],
            mask_files["arrays"]["rows"],
        )


def entry_bytes(width: int, height: int) -> int:
    """Bytes a cached photo of ``width``×``height`` and its mask take (RGB, label map, row
    counts, ``.npy`` headers)."""
    return width * height * 4 + (height + 1) * 8 + 3 * 128


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file's header (no decoding)."""
    try:
        with Image.open(path) as img:
            return img.size
    except IMAGE_ERRORS:
        return (0, 0)  # read_image names the problem when the entry is built


def _decode_pair(
    image_path: Path, mask_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Photo and mask as ``PseudoMaskDataset.load`` reads them, checked the same way."""
    image = read_image(image_path)
    mask = read_mask(mask_path, num_classes)
    if mask.shape != image.shape[:2]:
        raise DatasetError(
            f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]} but image {image_path} "
            f"is {image.shape[1]}×{image.shape[0]}"
        )
    return image, mask


def _npy_header(path: Path) -> tuple[tuple[int, ...], str]:
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if fortran:
        raise ValueError("Fortran-ordered array")
    return tuple(int(s) for s in shape), dtype.str


def _write_entry(
    files: dict[str, Any], arrays: dict[str, np.ndarray], source: Path, **extra: Any
) -> dict[str, Any]:
    """Write the arrays (atomically, each verified by reading it back in full), then the
    record that commits the entry; returns the record."""
    meta: dict[str, Any] = {}
    for name, array in arrays.items():
        path: Path = files["arrays"][name]
        array = np.ascontiguousarray(array)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
            back = np.load(tmp, allow_pickle=False)
            if (
                back.shape != array.shape
                or back.dtype != array.dtype
                or not np.array_equal(back, array)
            ):
                raise CacheError(f"{path}: the cached array read back differs from the decoded one")
            meta[name] = {
                "shape": list(array.shape),
                "dtype": array.dtype.str,
                "bytes": tmp.stat().st_size,
                "sha256": file_sha256(tmp),
            }
    record = {
        "format": CACHE_FORMAT,
        "source": str(source),
        "source_sha256": files["key"],
        "arrays": meta,
        **extra,
    }
    write_bytes_atomic(files["record"], json.dumps(record, indent=1).encode())
    return record
