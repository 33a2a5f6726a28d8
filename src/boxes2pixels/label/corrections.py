"""Human-corrected masks into a pseudo-mask folder (``b2p label --corrections``).

A correction replaces the teacher's mask of one image and is recorded in a part file of its
own (``<out>/.parts/corrections-*.jsonl``) as that image's latest record, marked
``"corrected": true``; ``manifest.json`` lists such images under ``human_corrected``, and the
teacher never labels them again (not even with ``--overwrite``).

Sources:

- a ``.json`` file: COCO instances, e.g. the ``annotations.json`` of a ``b2p review`` bundle
  after correction in CVAT or Label Studio (decoded by :func:`boxes2pixels.convert.coco_to_masks`;
  categories matched to the dataset's names);
- a folder of label-map PNGs (0 background, k+1 class k, 255 ignore), or a review bundle
  folder (its ``masks/`` sub-folder is read).

A file is matched to the image whose ``<split>/<mask name>`` ends with the file's relative
path (with ``.png``), or whose key the file's path ends with: ``train/a.png``,
``masks/train/a.png`` and ``a.png`` (when only one image is called ``a``) all name
``train/a.png``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..convert import coco_to_masks
from ..data.yolo import YoloDataset
from ..errors import DatasetError
from ..io import image_size, read_mask, write_mask
from ..teachers.base import box_pixel_ranges
from .records import PARTS_DIR, WorkItem, read_parts, work_items

logger = logging.getLogger("boxes2pixels.label")

BUNDLE_MASKS = "masks"
"""Sub-folder of a review bundle holding its PNG masks."""


@dataclass
class CorrectionImport:
    """What one import did: the image keys corrected and the files that matched no image."""

    source: Path
    corrected: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def corrected_keys(out: str | Path) -> set[str]:
    """Keys (``<split>/<mask name>``) whose current mask in ``out`` is a human correction."""
    _, latest = read_parts(Path(out))
    return {key for key, rec in latest.items() if rec.get("corrected")}


def _match(rel: str, keys: Sequence[str], where: str) -> str | None:
    """The key that ``rel`` names by path suffix; ``None`` when none; error when several."""
    parts = PurePosixPath(rel).with_suffix(".png").parts
    found = []
    for key in keys:
        kparts = PurePosixPath(key).parts
        n = min(len(parts), len(kparts))
        if parts[-n:] == kparts[-n:]:
            found.append(key)
    if len(found) > 1:
        raise DatasetError(
            f"{where}: '{rel}' fits several images ({', '.join(found[:4])}); give it the "
            "<split>/<name>.png path of one"
        )
    return found[0] if found else None


def _sources(source: Path, names: Sequence[str]) -> Iterator[tuple[str, str, np.ndarray]]:
    """``(where, relative name, label map)`` of every corrected mask in ``source``."""
    if source.is_file():
        if source.suffix.lower() != ".json":
            raise DatasetError(f"{source}: corrections are a COCO .json file or a mask folder")
        for name, label_map in coco_to_masks(source, names=names).items():
            yield str(source), name, label_map
        return
    if not source.is_dir():
        raise DatasetError(f"{source}: no such corrections file or folder")
    root = source / BUNDLE_MASKS if (source / BUNDLE_MASKS).is_dir() else source
    for path in sorted(root.rglob("*.png")):
        yield str(path), path.relative_to(root).as_posix(), read_mask(path)


def _check(label_map: np.ndarray, item: WorkItem, where: str, num_classes: int) -> None:
    width, height = image_size(item.image)
    if label_map.shape != (height, width):
        raise DatasetError(
            f"{where}: corrected mask is {label_map.shape[1]}×{label_map.shape[0]} but image "
            f"{item.image} is {width}×{height}"
        )
    bad = (label_map >= num_classes) & (label_map != 255)
    if bad.any():
        raise DatasetError(
            f"{where}: holds label value {int(label_map[bad].max())}; the dataset has values "
            f"0..{num_classes - 1} (and 255 = ignore)"
        )


def _record(item: WorkItem, ds: YoloDataset, label_map: np.ndarray, where: str) -> dict[str, Any]:
    """The part-file record of a corrected image (box counts and coverage of its boxes)."""
    labels = ds.labels(item.image)
    height, width = label_map.shape
    per_class = np.bincount(labels.classes, minlength=len(ds.names))
    coverage = np.zeros(len(ds.names))
    for box, cls in zip(labels.xyxy(width, height), labels.classes, strict=True):
        x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
        coverage[cls] += float((label_map[y0:y1, x0:x1] == cls + 1).mean())
    return {
        "type": "image",
        "key": item.key,
        "image": str(item.image),
        "boxes_per_class": per_class.tolist(),
        "coverage_sum": coverage.tolist(),
        "issues": [],
        "passes": 0,
        "corrected": True,
        "source": where,
    }


def import_corrections(
    source: str | Path, ds: YoloDataset, out: str | Path, splits: Sequence[str]
) -> CorrectionImport:
    """Write the corrected masks of ``source`` into ``out`` and record them as human-corrected.

    Each image's record is appended (and flushed) before its PNG is written, like the
    teacher's records. Files that match no image of ``splits`` are listed in ``unmatched``
    and logged as a warning.

    Raises:
        DatasetError: an unreadable source, a file that fits several images, a mask of the
            wrong size or with values outside the dataset's classes.
    """
    source, out = Path(source), Path(out)
    items = {item.key: item for item in work_items(ds, splits, None)}
    result = CorrectionImport(source)
    run = uuid.uuid4().hex[:12]
    stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    part = out / PARTS_DIR / f"corrections-{stamp}-{run}.jsonl"
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "a", encoding="utf-8") as fh:

        def write(rec: dict[str, Any]) -> None:
            fh.write(json.dumps(rec | {"run": run, "t": time.time_ns()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())  # the record reaches the disk before its mask

        write({"type": "corrections", "source": str(source.resolve())})
        for where, rel, label_map in _sources(source, ds.names):
            named = where if where.endswith(rel) else f"{where} ({rel})"
            key = _match(rel, list(items), named)
            if key is None:
                result.unmatched.append(named)
                continue
            item = items[key]
            _check(label_map, item, named, ds.num_classes)
            write(_record(item, ds, label_map, named))
            write_mask(out / item.split / item.mask_name, label_map)
            result.corrected.append(key)
    if result.unmatched:
        logger.warning(
            "%s: %d corrected mask(s) match no image of splits %s (first: %s)",
            source, len(result.unmatched), ", ".join(splits), result.unmatched[0],
        )  # fmt: skip
    return result
