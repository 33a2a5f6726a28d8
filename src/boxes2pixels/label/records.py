"""Run bookkeeping of ``label_dataset``: work items, shards, the output-folder guard, the
teacher's identity and the per-run part files (``<out>/.parts/*.jsonl``).

Each run appends one JSON line per image to its own part file *before* writing the PNG, so
parallel shards need no locks; :mod:`boxes2pixels.label.manifest` merges the part files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ..atomic import fsync_dir, reported_write_errors
from ..data.yolo import LabelIssue, YoloDataset, label_path_for
from ..errors import Boxes2PixelsError, ConfigError, DatasetError
from ..teachers.base import Teacher, TeacherEntry, teacher_entry
from .boxscores import BoxRecord

PARTS_DIR = ".parts"


@dataclass(frozen=True)
class WorkItem:
    """One image to label: its split, path, mask name inside ``<out>/<split>/`` and key."""

    split: str
    image: Path
    mask_name: str

    @property
    def key(self) -> str:
        """``<split>/<mask name>``: unique within an output folder."""
        return f"{self.split}/{self.mask_name}"


def labels_digest(image: Path) -> str:
    """sha256 of the YOLO label file of ``image`` (``""`` when it has none): a rerun labels an
    image again when its boxes changed since its mask was made."""
    path = label_path_for(image)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"I/N"`` (0 ≤ I < N) or ``(I, N)`` → ``(I, N)``; ``None`` stays ``None``.

    Raises:
        ConfigError: malformed or out of range.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        left, sep, right = spec.partition("/")
        try:
            index, count = int(left), int(right)
        except ValueError:
            raise ConfigError(f"--shard must be I/N, e.g. 0/4, got '{spec}'") from None
        if not sep:
            raise ConfigError(f"--shard must be I/N, e.g. 0/4, got '{spec}'")
    else:
        index, count = spec
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard I/N needs N >= 1 and 0 <= I < N, got {index}/{count}")
    return index, count


def shard_of(key: str, count: int) -> int:
    """Shard (0..count-1) of an image key: a hash of ``<split>/<mask name>``, stable everywhere."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def work_items(
    ds: YoloDataset, splits: Sequence[str], shard: tuple[int, int] | None
) -> list[WorkItem]:
    """The images of ``splits`` (those of one shard when ``shard`` is set), in dataset order."""
    items = []
    for split in splits:
        for image, mask_name in ds.mask_names(split).items():
            item = WorkItem(split, image, mask_name)
            if shard is None or shard_of(item.key, shard[1]) == shard[0]:
                items.append(item)
    return items


DEFAULT_SPLITS = ("train", "val")
"""What ``b2p label`` labels unless told: those of these the dataset defines."""


def check_splits(ds: YoloDataset, splits: Sequence[str] | None) -> list[str]:
    """``splits`` without repeats; a split the dataset does not define raises ``DatasetError``.
    ``None``: those of :data:`DEFAULT_SPLITS` the dataset defines (an error if none)."""
    if splits is None:
        splits = [s for s in DEFAULT_SPLITS if s in ds.split_sources]
        if not splits:
            raise DatasetError(
                f"{ds.yaml_path}: defines neither 'train' nor 'val' (defined: "
                f"{', '.join(ds.splits) or 'none'}); name the splits to label with --splits"
            )
    unique = list(dict.fromkeys(splits))
    if not unique:
        raise ConfigError("--splits names no split; e.g. --splits train,val")
    for split in unique:
        if split not in ds.split_sources:
            raise DatasetError(
                f"{ds.yaml_path}: split '{split}' is not defined (defined: {', '.join(ds.splits)})"
            )
    return unique


def check_out(out: Path, ds: YoloDataset, splits: Sequence[str]) -> None:
    """Refuse output folders that overlap the dataset's image or label folders."""
    guarded: set[Path] = set()
    for sources in ds.split_sources.values():
        for src in sources:
            folder = src if src.is_dir() else src.parent
            guarded |= {folder.resolve(), label_path_for(folder / "x").parent.resolve()}
    root = out.resolve()
    targets = [root / s for s in splits] + [root / "preview", root / PARTS_DIR]
    for g in sorted(guarded):
        clash = root == g or g in root.parents
        clash = clash or any(t == g or g in t.parents or t in g.parents for t in targets)
        if clash:
            raise DatasetError(
                f"refusing to write masks into the dataset folder {g} (--out {out}); choose "
                f"an output folder whose <split>/ folders are outside images/ and labels/"
            )
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: --out exists and is not a folder")
    for folder in [out / s for s in splits] + [out / PARTS_DIR]:
        if folder.exists() and not folder.is_dir():
            raise DatasetError(
                f"{folder}: is a file, but the masks need a folder there; move it away or "
                "choose another --out"
            )


def teacher_info(teacher: Teacher) -> dict[str, Any]:
    """What the manifest records about ``teacher``: name, object path, distribution, options."""
    name = getattr(teacher, "name", type(teacher).__name__)
    try:
        entry = teacher_entry(name)
    except Boxes2PixelsError:
        cls = type(teacher)
        entry = teacher_entry(f"{cls.__module__}:{cls.__qualname__}")
        entry = TeacherEntry(name, entry.value, entry.distribution, entry.version)
    described = dict(teacher.describe())
    info: dict[str, Any] = {
        "name": name,
        "object": entry.value,
        "distribution": entry.distribution,
        "version": entry.version,
        "options": described.pop("options", {}),
        "checkpoint": described.pop("checkpoint", None),
        "sha256": described.pop("sha256", None),
    }
    info.update(described)
    return info


def teacher_identity(info: dict[str, Any]) -> str:
    """A string equal for two runs whose masks are interchangeable (the device aside)."""
    options = {k: v for k, v in info.get("options", {}).items() if k not in ("device",)}
    crop = info.get("crop") or {}  # b2p label --crop; absent (older runs) = whole photo
    crops = [crop.get("context"), crop.get("min_size")] if crop.get("applied") else None
    # b2p label --min-score (absent in older runs: every mask trusted) changes the masks too
    key = [info.get("name"), info.get("sha256"), options, crops, info.get("min_score")]
    return json.dumps(key, sort_keys=True)


def read_parts(out: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Headers of all part files and the latest record per image key."""
    headers: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    for part in sorted((out / PARTS_DIR).glob("[!.]*.jsonl")):  # not a write's temporary file
        with open(part, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if rec.get("type") == "header":
                    headers.append(rec)
                elif rec.get("type") in ("image", "skip"):
                    old = latest.get(rec["key"])
                    if old is None or (rec["t"], rec["run"]) >= (old["t"], old["run"]):
                        latest[rec["key"]] = rec
    return headers, latest


def check_same_teacher(out: Path, info: dict[str, Any]) -> None:
    """Refuse to resume into ``out`` when its masks come from another teacher or options."""
    if not (out / PARTS_DIR).is_dir():
        return
    headers, latest = read_parts(out)
    runs = {rec["run"] for rec in latest.values()}
    mine = teacher_identity(info)
    for header in headers:
        if header["run"] in runs and teacher_identity(header["teacher"]) != mine:
            theirs = header["teacher"]
            raise Boxes2PixelsError(
                f"{out}: holds masks made by teacher '{theirs.get('name')}' with options "
                f"{theirs.get('options', {})} (checkpoint sha256 {theirs.get('sha256')}); this "
                f"run uses '{info.get('name')}' with options {info.get('options', {})}. A rerun "
                "only finishes the missing masks, so the set would mix teachers: use --overwrite "
                "to redo every image with this teacher, or another --out."
            )


class PartFile:
    """This run's part file: one JSON line per record, flushed at once (use as ``with``)."""

    def __init__(self, out: Path, shard: tuple[int, int] | None) -> None:
        self.run = uuid.uuid4().hex[:12]
        tag = f"shard{shard[0]}of{shard[1]}" if shard else "all"
        stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
        self.path = out / PARTS_DIR / f"{tag}-{stamp}-{self.run}.jsonl"
        self._fh: IO[str] | None = None

    def __enter__(self) -> PartFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        fsync_dir(self.path.parent)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def write(self, rec: dict[str, Any]) -> None:
        """Append ``rec`` stamped with this run's id and the time in nanoseconds."""
        assert self._fh is not None, "PartFile is used outside its 'with' block"
        rec["run"] = self.run
        rec["t"] = time.time_ns()
        with reported_write_errors(self.path):
            self._fh.write(json.dumps(rec) + "\n")
            self._fh.flush()
            # on the disk before the mask it describes, so a power loss cannot leave a mask
            # without its record (the manifest would then never be written)
            os.fsync(self._fh.fileno())

    def header(
        self, info: dict[str, Any], shard: tuple[int, int] | None, splits: list[str], overlap: str
    ) -> None:
        """The run's first record: teacher, shard, splits and overlap policy."""
        self.write(
            {
                "type": "header",
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "teacher": info,
                "shard": list(shard) if shard else None,
                "splits": splits,
                "overlap": overlap,
            }
        )

    def image(
        self,
        item: WorkItem,
        boxes_per_class: list[int],
        coverage_sum: list[float],
        issues: Sequence[LabelIssue],
        passes: int = 0,
        boxes: Sequence[BoxRecord] = (),
    ) -> None:
        """Record a labelled image (written before its PNG); ``passes``: teacher calls;
        ``boxes``: per-box records, stored under ``boxes`` and their scores, one number or
        ``None`` per box, under ``box_scores``; the label file's :func:`labels_digest` under
        ``labels_sha256``."""
        self.write(
            {
                "type": "image",
                "key": item.key,
                "image": str(item.image),
                "boxes_per_class": boxes_per_class,
                "coverage_sum": coverage_sum,
                "passes": passes,
                "boxes": [b.to_json() for b in boxes],
                "box_scores": [b.score for b in boxes],
                "labels_sha256": labels_digest(item.image),
                "issues": [
                    {"file": str(i.path), "line": i.line, "kind": i.kind, "message": i.message}
                    for i in issues
                ],
            }
        )

    def skip(self, item: WorkItem, reason: str) -> None:
        """Record an image that gets no mask, and why."""
        self.write(
            {
                "type": "skip",
                "key": item.key,
                "image": str(item.image),
                "reason": reason,
                "issues": [],
            }
        )
