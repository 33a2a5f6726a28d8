"""Human-corrected masks into a pseudo-mask folder (``b2p label --corrections``).

A correction replaces the teacher's mask of one image and is recorded in a part file of its
own (``<out>/.parts/corrections-*.jsonl``) as that image's latest record, marked
``"corrected": true``; ``manifest.json`` lists such images under ``human_corrected``, and the
teacher never labels them again (not even with ``--overwrite``).

Sources:

- a ``.json`` file: COCO instances, e.g. the ``annotations.json`` of a ``b2p review`` bundle
  after correction in CVAT (decoded by :func:`boxes2pixels.convert.coco_to_masks`;
  categories matched to the dataset's names, ``ignore`` is 255), or Label Studio's JSON
  export of the bundle's ``label-studio.json`` tasks (a list of tasks; each task's latest
  submitted annotation, :func:`boxes2pixels.convert.label_studio_to_masks`);
- a folder of label-map PNGs (0 background, k+1 class k, 255 ignore), or a review bundle
  folder (its ``masks/`` sub-folder is read).

A file is matched to the image whose ``<split>/<mask name>`` ends with the file's relative
path (with ``.png``), or whose key the file's path ends with: ``train/a.png``,
``masks/train/a.png`` and ``a.png`` (when only one image is called ``a``) all name
``train/a.png``.

An image counts as corrected only when its imported mask differs from its current mask: an
unedited round trip (export, import) records nothing. A COCO file without the category
``ignore`` cannot hold ignore pixels (255); the current mask's ignore pixels that it leaves
as background are kept.

An import is all or nothing: every corrected mask is checked and written into a staging
folder (``<out>/.parts/corrections-*.staged/``) first; the part file that records them all
is then written atomically (the commit), and only then are the staged masks moved onto the
teacher's. A failure before the commit (a bad file, a full disk) leaves the masks folder as
it was; a crash after it is finished by the next run (:func:`finish_corrections`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..atomic import STALE_AFTER_S, fsync_dir, reported_write_errors
from ..convert import IGNORE_NAME, coco_to_masks, label_studio_to_masks
from ..data.labelmaps import IGNORE, check_label_values, read_mask, write_mask
from ..data.yolo import YoloDataset
from ..errors import Boxes2PixelsError, DatasetError
from ..io import image_size, write_text_atomic
from ..teachers.base import box_pixel_ranges
from .records import PARTS_DIR, WorkItem, read_parts, work_items

logger = logging.getLogger("boxes2pixels.label")

BUNDLE_MASKS = "masks"
"""Sub-folder of a review bundle holding its PNG masks."""
STAGED = ".staged"
"""Suffix of an import's staging folder in ``.parts/`` (next to its ``.jsonl`` record)."""


@dataclass
class CorrectionImport:
    """What one import did: the image keys corrected, those whose imported mask equals the
    current one (not recorded as corrected) and the files that matched no image."""

    source: Path
    corrected: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


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


def _check_image_ids(source: Path) -> None:
    """Refuse a COCO file with an annotation whose ``image_id`` no image entry has."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        ids = {int(image["id"]) for image in data["images"]}
        refs = [(ann.get("id"), int(ann["image_id"])) for ann in data.get("annotations", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # coco_to_masks names the file and what is wrong with it
    for ann_id, image_id in refs:
        if image_id not in ids:
            raise DatasetError(
                f"{source}: annotation {ann_id} has image_id {image_id}, but no image entry "
                f"has id {image_id} in its images list; add that image or remove the "
                "annotation"
            )


def _mask_files(root: Path) -> list[Path]:
    """The PNG masks below ``root``; any other file (hidden ones aside) is an error."""
    files = [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts)
    ]
    others = [path for path in files if path.suffix.lower() != ".png"]
    if others:
        more = f" (and {len(others) - 1} more such files)" if len(others) > 1 else ""
        raise DatasetError(
            f"{others[0]}: not a PNG mask{more}. A corrections folder holds label-map PNGs "
            "only (0 background, k+1 class k, 255 ignore); a COCO annotation file is passed "
            "itself as --corrections FILE.json. Save the correction as PNG (JPEG changes the "
            f"label values) or move the file out of {root}."
        )
    return files


def _json_sources(
    source: Path, names: Sequence[str]
) -> Iterator[tuple[str, str, np.ndarray, bool]]:
    """The label maps of a COCO file or a Label Studio JSON export (a list of tasks), each
    with whether the file can hold ignore pixels."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{source}: cannot read JSON ({exc})") from exc
    if isinstance(data, list):
        for name, label_map in label_studio_to_masks(data, names).items():
            yield f"{source} ({name})", name, label_map, True
        return
    _check_image_ids(source)
    categories = data.get("categories", []) if isinstance(data, dict) else []
    holds_ignore = any(
        isinstance(c, dict) and str(c.get("name")) == IGNORE_NAME for c in categories
    )
    for name, label_map in coco_to_masks(source, names=names).items():
        yield str(source), name, label_map, holds_ignore


def _sources(source: Path, names: Sequence[str]) -> Iterator[tuple[str, str, np.ndarray, bool]]:
    """``(where, relative name, label map, holds ignore)`` of every corrected mask in
    ``source``; ``holds ignore`` is False for a COCO file without the category ``ignore``."""
    if source.is_file():
        if source.suffix.lower() != ".json":
            raise DatasetError(
                f"{source}: corrections are a COCO or Label Studio .json file or a mask folder"
            )
        yield from _json_sources(source, names)
        return
    if not source.is_dir():
        raise DatasetError(f"{source}: no such corrections file or folder")
    root = source / BUNDLE_MASKS if (source / BUNDLE_MASKS).is_dir() else source
    for path in _mask_files(root):
        yield str(path), path.relative_to(root).as_posix(), read_mask(path), True


def _current(out: Path, key: str) -> np.ndarray | None:
    """The mask of ``key`` in ``out`` now, or ``None`` when there is none (or it is
    unreadable: the correction then replaces it)."""
    try:
        return read_mask(out / key) if (out / key).is_file() else None
    except Boxes2PixelsError:
        return None


def _check(label_map: np.ndarray, item: WorkItem, where: str, num_classes: int) -> None:
    width, height = image_size(item.image)
    if label_map.shape != (height, width):
        raise DatasetError(
            f"{where}: corrected mask is {label_map.shape[1]}×{label_map.shape[0]} but image "
            f"{item.image} is {width}×{height}"
        )
    check_label_values(label_map, num_classes, where)


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


def _stage(
    source: Path, ds: YoloDataset, items: dict[str, WorkItem], staged: Path, out: Path
) -> tuple[CorrectionImport, list[dict[str, Any]]]:
    """Check every corrected mask of ``source`` and write those that differ from the current
    mask in ``out`` to ``staged/<key>``; the import's summary and the records to commit."""
    result = CorrectionImport(source)
    records: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for where, rel, label_map, holds_ignore in _sources(source, ds.names):
        named = where if where.endswith(rel) or where.endswith(f"({rel})") else f"{where} ({rel})"
        key = _match(rel, list(items), named)
        if key is None:
            result.unmatched.append(named)
            continue
        if key in seen:
            raise DatasetError(f"{named}: corrects {key}, as {seen[key]} does; keep one of them")
        seen[key] = named
        item = items[key]
        _check(label_map, item, named, ds.num_classes)
        current = _current(out, key)
        if current is not None and current.shape == label_map.shape:
            if not holds_ignore:  # the format could not say "ignore": keep what was
                label_map = np.where((label_map == 0) & (current == IGNORE), IGNORE, label_map)
            if np.array_equal(label_map, current):
                result.unchanged.append(key)
                continue
        records.append(_record(item, ds, label_map, named))
        write_mask(staged / key, label_map)
        result.corrected.append(key)
    return result, records


def _move_staged(staged: Path, out: Path) -> int:
    """Move every mask of ``staged`` onto its place in ``out``, then remove ``staged``;
    returns how many were moved."""
    moved = 0
    folders: set[Path] = set()
    for path in sorted(staged.rglob("*.png")):
        target = out / path.relative_to(staged)
        with reported_write_errors(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, target)
            except FileNotFoundError:
                continue  # another process finishing the same import moved it first
        folders.add(target.parent)
        moved += 1
    for folder in folders:
        fsync_dir(folder)
    shutil.rmtree(staged, ignore_errors=True)
    return moved


def finish_corrections(out: str | Path) -> list[str]:
    """Finish imports that a crash stopped after their commit (move their staged masks into
    place) and remove the staging folders of uncommitted ones left for a while; one line per
    finished import."""
    done: list[str] = []
    parts = Path(out) / PARTS_DIR
    for staged in sorted(parts.glob(f"corrections-*{STAGED}")):
        record = staged.with_suffix(".jsonl")
        if record.is_file():
            moved = _move_staged(staged, Path(out))
            done.append(f"{moved} corrected mask(s) recorded in {record} moved into place")
        elif _idle(staged):
            shutil.rmtree(staged, ignore_errors=True)
    return done


def _idle(folder: Path) -> bool:
    """True when nothing in ``folder`` changed for ``STALE_AFTER_S`` seconds: its writer is
    gone."""
    try:
        newest = max(p.stat().st_mtime for p in [folder, *folder.rglob("*")])
    except FileNotFoundError:
        return False  # changing right now
    return newest < time.time() - STALE_AFTER_S


def import_corrections(
    source: str | Path, ds: YoloDataset, out: str | Path, splits: Sequence[str]
) -> CorrectionImport:
    """Write the corrected masks of ``source`` into ``out`` and record them as human-corrected,
    all or nothing (see the module's description).

    Files that match no image of ``splits`` are listed in ``unmatched`` and logged as a
    warning. A mask equal to the image's current mask is not a correction: it is listed in
    ``unchanged`` and nothing is recorded for it.

    Raises:
        DatasetError: an unreadable source, a file that is not a PNG mask, a file that fits
            several images or an image that two files correct, a mask of the wrong size or
            with values outside the dataset's classes. No correction is recorded and the
            masks folder is as it was.
        WriteError: the disk cannot take the masks or the record; likewise nothing is
            recorded and the masks folder is as it was.
    """
    source, out = Path(source), Path(out)
    items = {item.key: item for item in work_items(ds, splits, None)}
    run = uuid.uuid4().hex[:12]
    name = f"corrections-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{run}"
    staged, record = out / PARTS_DIR / f"{name}{STAGED}", out / PARTS_DIR / f"{name}.jsonl"
    try:
        result, records = _stage(source, ds, items, staged, out)
        if records:
            header = {"type": "corrections", "source": str(source.resolve())}
            lines = [json.dumps(r | {"run": run, "t": time.time_ns()}) for r in [header, *records]]
            write_text_atomic(record, "\n".join(lines) + "\n")
    except BaseException as exc:
        if record.is_file():
            raise  # committed (interrupted just after): the next run moves the masks
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, Boxes2PixelsError):
            exc.args = (
                f"{str(exc).rstrip('.')}. Nothing of {source} was imported: no correction was "
                "recorded and the masks folder is as it was (an import is all or nothing).",
            )
        raise
    _move_staged(staged, out)
    if result.unchanged:
        logger.info(
            "%s: %d mask(s) equal the current ones, not recorded as corrected",
            source, len(result.unchanged),
        )  # fmt: skip
    if result.unmatched:
        logger.warning(
            "%s: %d corrected mask(s) match no image of splits %s (first: %s)",
            source, len(result.unmatched), ", ".join(splits), result.unmatched[0],
        )  # fmt: skip
    return result
