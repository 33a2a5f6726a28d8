"""``label_dataset``: turn the boxes of a YOLO dataset into pseudo-mask PNGs with a teacher.

Output layout (``out``)::

    <out>/<split>/<sub>/<stem>.png   label maps: 0 background, k+1 YOLO class k
    <out>/manifest.json              teacher, options, checkpoint sha256, counts, skipped, issues
    <out>/preview/*.png              optional side-by-side previews
    <out>/.parts/*.jsonl             per-run records (merged into manifest.json)

Every PNG is written atomically, so an interrupted run leaves only complete files; a rerun
skips images whose PNG exists. Each run appends one JSON line per image to its own part file
*before* writing the PNG; ``manifest.json`` is rebuilt from all part files whenever every
image of the selected splits has a mask (or is recorded as skipped), so parallel shards need
no locks: the last one to finish writes it, and so does any later rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .data.yolo import ImageLabels, LabelIssue, YoloDataset, load_data_yaml
from .errors import Boxes2PixelsError, DatasetError, ImageReadError, LabelFormatError
from .io import read_image, write_json_atomic, write_mask, write_rgb
from .teachers.base import Teacher, TeacherEntry, box_pixel_ranges, load_teacher, teacher_entry

logger = logging.getLogger(__name__)

OVERLAP_POLICIES = ("smaller", "larger", "class-order")
MANIFEST_NAME = "manifest.json"
PARTS_DIR = ".parts"
_MAX_LISTED = 1000  # skipped files / label issues listed in a summary (all are counted)


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


@dataclass(frozen=True)
class SkippedImage:
    """An image that got no mask, and why."""

    split: str
    image: str
    reason: str


@dataclass
class SplitCounts:
    """Counts of one split in one run."""

    images: int = 0
    already_done: int = 0
    labelled: int = 0
    with_boxes: int = 0
    boxes: int = 0
    skipped: int = 0


@dataclass
class LabelSummary:
    """What a ``label_dataset`` run did.

    Attributes:
        out: output folder.
        teacher: teacher name.
        splits: per-split counts of this run.
        images: images in the selection (this shard, chosen splits).
        labelled: images given a mask in this run.
        already_done: images skipped because their mask existed (resume).
        boxes: boxes segmented in this run.
        skipped: unreadable images (first 1000 listed; ``skipped_count`` counts all).
        label_issues: bad label lines (first 1000 listed; ``issue_count`` counts all).
        coverage: mean fraction of each box covered by its own mask, per class name.
        wall_time_s: seconds the run took.
        manifest: ``manifest.json`` if this run wrote it (``None`` while shards are missing).
        previews: preview PNGs written.
        mixed_teachers: true when the finished masks come from differing teacher settings.
    """

    out: Path
    teacher: str
    splits: dict[str, SplitCounts]
    images: int = 0
    labelled: int = 0
    already_done: int = 0
    boxes: int = 0
    skipped: list[SkippedImage] = field(default_factory=list)
    skipped_count: int = 0
    label_issues: list[LabelIssue] = field(default_factory=list)
    issue_count: int = 0
    coverage: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    manifest: Path | None = None
    previews: list[Path] = field(default_factory=list)
    shard: tuple[int, int] | None = None
    mixed_teachers: bool = False

    @property
    def images_per_s(self) -> float:
        """Images labelled in this run per second of wall time."""
        return self.labelled / self.wall_time_s if self.wall_time_s > 0 else 0.0


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"I/N"`` (0 ≤ I < N) or ``(I, N)`` → ``(I, N)``; ``None`` stays ``None``.

    Raises:
        Boxes2PixelsError: malformed or out of range.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        left, sep, right = spec.partition("/")
        try:
            index, count = int(left), int(right)
        except ValueError:
            raise Boxes2PixelsError(f"--shard must be I/N, e.g. 0/4, got '{spec}'") from None
        if not sep:
            raise Boxes2PixelsError(f"--shard must be I/N, e.g. 0/4, got '{spec}'")
    else:
        index, count = spec
    if count < 1 or not 0 <= index < count:
        raise Boxes2PixelsError(f"--shard I/N needs N >= 1 and 0 <= I < N, got {index}/{count}")
    return index, count


def shard_of(key: str, count: int) -> int:
    """Shard (0..count-1) of an image key: a hash of ``<split>/<mask name>``, stable everywhere."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def combine_masks(masks: np.ndarray, classes: np.ndarray, overlap: str = "smaller") -> np.ndarray:
    """Rasterise per-box masks (N×H×W bool) of YOLO classes into one label map (H×W uint8).

    Overlap policies, all deterministic:
      * ``smaller`` (default): where masks overlap, the smaller mask wins, so a crack inside a
        large dirt region survives;
      * ``larger``: the larger mask wins;
      * ``class-order``: the higher class id wins (the class listed later in ``names``).
    Ties keep the order of the label file (the later box wins).
    """
    if overlap not in OVERLAP_POLICIES:
        raise Boxes2PixelsError(
            f"unknown overlap policy '{overlap}' (use {', '.join(OVERLAP_POLICIES)})"
        )
    n = masks.shape[0]
    out = np.zeros(masks.shape[1:], dtype=np.uint8)
    if n == 0:
        return out
    if overlap == "class-order":
        key = np.asarray(classes, dtype=np.int64)
    else:
        areas = masks.reshape(n, -1).sum(axis=1).astype(np.int64)
        key = -areas if overlap == "smaller" else areas
    for i in np.argsort(key, kind="stable"):  # painted in order: the last one wins
        out[masks[i]] = int(classes[i]) + 1
    return out


def box_coverage(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Fraction of each box's pixels that its own mask covers (N floats)."""
    height, width = masks.shape[1:]
    cov = np.zeros(len(boxes), dtype=np.float64)
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
        cov[i] = float(masks[i, y0:y1, x0:x1].mean())
    return cov


def _work_items(
    ds: YoloDataset, splits: Sequence[str], shard: tuple[int, int] | None
) -> list[WorkItem]:
    items = []
    for split in splits:
        for image in ds.images(split):
            item = WorkItem(split, image, ds.mask_name(image, split))
            if shard is None or shard_of(item.key, shard[1]) == shard[0]:
                items.append(item)
    return items


def _check_out(out: Path, ds: YoloDataset, splits: Sequence[str]) -> None:
    """Refuse output folders that overlap the dataset's image or label folders."""
    from .data.yolo import label_path_for

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


def _teacher_info(teacher: Teacher) -> dict[str, Any]:
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


# ---------------------------------------------------------------- background image loading
@dataclass
class _Loaded:
    item: WorkItem
    labels: ImageLabels | None = None
    image: np.ndarray | None = None
    error: BaseException | None = None


def _load(ds: YoloDataset, item: WorkItem, strict: bool) -> _Loaded:
    try:
        labels = ds.labels(item.image, strict=strict)
        image = read_image(item.image)
    except (ImageReadError, LabelFormatError) as exc:
        return _Loaded(item, error=exc)
    return _Loaded(item, labels=labels, image=image)


def _prefetch(
    ds: YoloDataset, items: Sequence[WorkItem], strict: bool, depth: int
) -> Iterator[_Loaded]:
    """Decode images in a background thread, at most ``depth`` ahead of the consumer."""
    q: queue.Queue[_Loaded | None] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(obj: _Loaded | None) -> bool:
        """Queue ``obj`` unless the consumer has stopped; False when it has."""
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for item in items:
                if not put(_load(ds, item, strict)):
                    return
        except BaseException as exc:  # surface unexpected loader failures in the main thread
            put(_Loaded(WorkItem("?", Path("?"), "?"), error=exc))
        put(None)

    thread = threading.Thread(target=worker, name="b2p-image-loader", daemon=True)
    thread.start()
    try:
        while (loaded := q.get()) is not None:
            yield loaded
    finally:
        stop.set()
        thread.join(timeout=5)


# ------------------------------------------------------------------------ manifest merging
def _read_parts(out: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Headers of all part files and the latest record per image key."""
    headers: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    for part in sorted((out / PARTS_DIR).glob("*.jsonl")):
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


def _teacher_identity(info: dict[str, Any]) -> str:
    options = {k: v for k, v in info.get("options", {}).items() if k not in ("device",)}
    return json.dumps([info.get("name"), info.get("sha256"), options], sort_keys=True)


def _check_same_teacher(out: Path, info: dict[str, Any]) -> None:
    """Refuse to resume into ``out`` when its masks come from another teacher or options."""
    if not (out / PARTS_DIR).is_dir():
        return
    headers, latest = _read_parts(out)
    runs = {rec["run"] for rec in latest.values()}
    mine = _teacher_identity(info)
    for header in headers:
        if header["run"] in runs and _teacher_identity(header["teacher"]) != mine:
            theirs = header["teacher"]
            raise Boxes2PixelsError(
                f"{out}: holds masks made by teacher '{theirs.get('name')}' with options "
                f"{theirs.get('options', {})} (checkpoint sha256 {theirs.get('sha256')}); this "
                f"run uses '{info.get('name')}' with options {info.get('options', {})}. A rerun "
                "only finishes the missing masks, so the set would mix teachers: use --overwrite "
                "to redo every image with this teacher, or another --out."
            )


def merge_manifest(
    out: str | Path, data_yaml: str | Path, splits: Sequence[str] | None = None
) -> Path | None:
    """Rebuild ``manifest.json`` from the part files when every image has a result.

    ``splits`` defaults to every split named by a part file. Returns the manifest path, or
    ``None`` when some images still have neither a mask nor a skip record (for example while
    other shards run). Safe to call from several processes at once: the content depends only
    on the files, and the write is atomic.
    """
    out = Path(out)
    ds = load_data_yaml(data_yaml)
    headers, latest = _read_parts(out)
    if not headers:
        return None
    all_splits = list(dict.fromkeys([*(splits or []), *(s for h in headers for s in h["splits"])]))
    expected = _work_items(ds, all_splits, None)
    names = ds.names
    per_split: dict[str, dict[str, Any]] = {
        s: {
            "images": 0,
            "with_boxes": 0,
            "boxes": 0,
            "boxes_per_class": dict.fromkeys(names, 0),
            "skipped": 0,
            "label_issues": 0,
        }
        for s in all_splits
    }
    cov_sum = np.zeros(len(names))
    cov_n = np.zeros(len(names))
    skipped: list[dict[str, str]] = []
    issues: list[dict[str, Any]] = []
    runs: set[str] = set()
    for item in expected:
        rec = latest.get(item.key)
        if rec is None:
            return None
        counts = per_split[item.split]
        if rec["type"] == "skip":
            counts["skipped"] += 1
            skipped.append({"split": item.split, "image": rec["image"], "reason": rec["reason"]})
        else:
            if not (out / item.split / item.mask_name).is_file():
                return None
            counts["images"] += 1
            n_boxes = sum(rec["boxes_per_class"])
            counts["boxes"] += n_boxes
            counts["with_boxes"] += int(n_boxes > 0)
            for k, n in enumerate(rec["boxes_per_class"]):
                counts["boxes_per_class"][names[k]] += n
            cov_sum += np.asarray(rec["coverage_sum"])
            cov_n += np.asarray(rec["boxes_per_class"])
        counts["label_issues"] += len(rec.get("issues", []))
        issues.extend(rec.get("issues", []))
        runs.add(rec["run"])
    live = [h for h in headers if h["run"] in runs] or headers[-1:]
    live.sort(key=lambda h: h["t"])
    teacher = live[-1]["teacher"]
    distinct = {_teacher_identity(h["teacher"]): h["teacher"] for h in live}
    from . import __version__

    manifest: dict[str, Any] = {
        "format": "boxes2pixels-pseudo-masks",
        "format_version": 1,
        "boxes2pixels_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(Path(data_yaml).resolve()),
        "teacher": teacher,
        "class_names": ["background", *names],
        "mask_encoding": "single-channel PNG; 0 background, k+1 YOLO class k, 255 ignore",
        "overlap": live[-1]["overlap"],
        "splits": per_split,
        "mean_box_coverage": {
            names[k]: (float(cov_sum[k] / cov_n[k]) if cov_n[k] else None)
            for k in range(len(names))
        },
        "skipped": skipped,
        "label_issues": issues,
        "runs": [
            {"run": h["run"], "started": h["started"], "shard": h["shard"], "splits": h["splits"]}
            for h in live
        ],
    }
    if len(distinct) > 1:
        manifest["mixed_teachers"] = list(distinct.values())
    path = out / MANIFEST_NAME
    write_json_atomic(path, manifest)
    return path


# ------------------------------------------------------------------------------ the labeller
def label_dataset(
    data_yaml: str | Path,
    teacher: Teacher | str,
    out: str | Path,
    *,
    splits: Sequence[str] = ("train", "val"),
    overwrite: bool = False,
    strict: bool = False,
    shard: str | tuple[int, int] | None = None,
    preview: int = 0,
    overlap: str = "smaller",
    progress: bool = True,
    prefetch: int = 2,
    console: Any = None,
) -> LabelSummary:
    """Write a pseudo-mask PNG for every image of ``splits`` and a ``manifest.json``.

    Images without boxes never reach the teacher: their all-background mask is written
    directly. Per-box masks are combined with the ``overlap`` policy (see
    :func:`combine_masks`). Images are decoded in a background thread, at most ``prefetch``
    ahead, so the teacher does not wait for the disk and memory stays bounded.

    Args:
        data_yaml: the dataset's ``data.yaml``.
        teacher: a teacher object, or a registered name / ``'pkg.module:Class'`` (created with
            default options).
        out: output folder; must not lie inside the dataset's image or label folders.
        splits: splits to label; a split the yaml does not define is an error.
        overwrite: redo images whose mask already exists (default: skip them, i.e. resume).
        strict: a bad label line or an unreadable image is an error instead of a warning.
        shard: ``"I/N"`` or ``(I, N)``: label only images whose key hashes to shard I of N.
        preview: write this many side-by-side previews (boxes | mask) to ``out/preview/``.
        overlap: ``smaller`` | ``larger`` | ``class-order``.
        progress: show a rich progress bar on stderr.
        prefetch: images decoded ahead of the teacher.
        console: the ``rich.console.Console`` for the progress bar (default: a stderr one).

    Returns:
        A :class:`LabelSummary`; ``summary.manifest`` is set when ``manifest.json`` was written.

    Raises:
        DatasetError, LabelFormatError, ImageReadError, CheckpointError: with the file named.
    """
    start = time.perf_counter()
    if overlap not in OVERLAP_POLICIES:
        raise Boxes2PixelsError(
            f"unknown overlap policy '{overlap}' (use {', '.join(OVERLAP_POLICIES)})"
        )
    shard_t = parse_shard(shard)
    ds = load_data_yaml(data_yaml)
    splits = list(dict.fromkeys(splits))
    for split in splits:
        if split not in ds.split_sources:
            raise DatasetError(
                f"{ds.yaml_path}: split '{split}' is not defined (defined: {', '.join(ds.splits)})"
            )
    out = Path(out)
    _check_out(out, ds, splits)
    if isinstance(teacher, str):
        teacher = load_teacher(teacher)
    info = _teacher_info(teacher)
    if not overwrite:
        _check_same_teacher(out, info)
    names = ds.names

    items = _work_items(ds, splits, shard_t)
    summary = LabelSummary(
        out=out,
        teacher=info["name"],
        splits={s: SplitCounts() for s in splits},
        images=len(items),
        shard=shard_t,
    )
    todo: list[WorkItem] = []
    for item in items:
        summary.splits[item.split].images += 1
        if not overwrite and (out / item.split / item.mask_name).is_file():
            summary.splits[item.split].already_done += 1
            summary.already_done += 1
        else:
            todo.append(item)

    run_id = uuid.uuid4().hex[:12]
    tag = f"shard{shard_t[0]}of{shard_t[1]}" if shard_t else "all"
    part_path = out / PARTS_DIR / f"{tag}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{run_id}.jsonl"
    part_path.parent.mkdir(parents=True, exist_ok=True)
    cov_sum = np.zeros(len(names))
    cov_n = np.zeros(len(names))

    with open(part_path, "a", encoding="utf-8") as part:

        def record(rec: dict[str, Any]) -> None:
            rec["run"] = run_id
            rec["t"] = time.time_ns()
            part.write(json.dumps(rec) + "\n")
            part.flush()

        record(
            {
                "type": "header",
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "teacher": info,
                "shard": list(shard_t) if shard_t else None,
                "splits": splits,
                "overlap": overlap,
            }
        )
        bar = _progress_bar(progress, console)
        task = None
        if bar is not None:
            bar.start()
            task = bar.add_task(f"labelling with {info['name']}", total=len(todo))
        try:
            for loaded in _prefetch(ds, todo, strict, prefetch):
                item = loaded.item
                counts = summary.splits.get(item.split)
                if isinstance(loaded.error, LabelFormatError) or (
                    strict and isinstance(loaded.error, ImageReadError)
                ):
                    raise loaded.error
                if loaded.error is not None and not isinstance(loaded.error, ImageReadError):
                    raise loaded.error
                if loaded.error is not None:
                    assert counts is not None
                    reason = str(loaded.error)
                    logger.warning("skipped image: %s", reason)
                    counts.skipped += 1
                    summary.skipped_count += 1
                    if len(summary.skipped) < _MAX_LISTED:
                        summary.skipped.append(SkippedImage(item.split, str(item.image), reason))
                    record(
                        {
                            "type": "skip",
                            "key": item.key,
                            "image": str(item.image),
                            "reason": reason,
                            "issues": [],
                        }
                    )
                else:
                    assert counts is not None and loaded.labels is not None
                    assert loaded.image is not None
                    mask, per_class, cov = _label_one(
                        teacher, loaded.image, loaded.labels, len(names), overlap, info["name"]
                    )
                    issues = loaded.labels.issues
                    for issue in issues:
                        logger.warning("label issue: %s", issue)
                    summary.issue_count += len(issues)
                    room = _MAX_LISTED - len(summary.label_issues)
                    summary.label_issues.extend(issues[: max(0, room)])
                    n_boxes = int(per_class.sum())
                    counts.labelled += 1
                    counts.boxes += n_boxes
                    counts.with_boxes += int(n_boxes > 0)
                    summary.labelled += 1
                    summary.boxes += n_boxes
                    cov_sum += cov
                    cov_n += per_class
                    record(
                        {
                            "type": "image",
                            "key": item.key,
                            "image": str(item.image),
                            "boxes_per_class": per_class.tolist(),
                            "coverage_sum": cov.tolist(),
                            "issues": [
                                {
                                    "file": str(i.path),
                                    "line": i.line,
                                    "kind": i.kind,
                                    "message": i.message,
                                }
                                for i in issues
                            ],
                        }
                    )
                    write_mask(out / item.split / item.mask_name, mask)
                    if len(summary.previews) < preview and n_boxes > 0:
                        summary.previews.append(
                            _write_preview(out, item, loaded.image, loaded.labels, mask, names)
                        )
                if bar is not None and task is not None:
                    bar.advance(task)
        finally:
            if bar is not None:
                bar.stop()
            summary.wall_time_s = time.perf_counter() - start

    summary.coverage = {
        names[k]: float(cov_sum[k] / cov_n[k]) for k in range(len(names)) if cov_n[k]
    }
    summary.manifest = merge_manifest(out, data_yaml, splits)
    if summary.manifest is not None:
        manifest = json.loads(summary.manifest.read_text(encoding="utf-8"))
        summary.mixed_teachers = "mixed_teachers" in manifest
        if summary.mixed_teachers:
            logger.warning(
                "%s: the masks come from different teacher settings (see 'mixed_teachers'); "
                "rerun with --overwrite for a uniform set",
                summary.manifest,
            )
    summary.wall_time_s = time.perf_counter() - start
    return summary


def _label_one(
    teacher: Teacher,
    image: np.ndarray,
    labels: ImageLabels,
    num_names: int,
    overlap: str,
    teacher_name: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label map, boxes per class and summed coverage per class for one image."""
    height, width = image.shape[:2]
    per_class = np.bincount(labels.classes, minlength=num_names).astype(np.int64)
    cov = np.zeros(num_names)
    if len(labels) == 0:
        return np.zeros((height, width), dtype=np.uint8), per_class, cov
    boxes = labels.xyxy(width, height)
    masks = np.asarray(teacher.segment(image, boxes))
    if masks.shape != (len(boxes), height, width):
        raise Boxes2PixelsError(
            f"teacher '{teacher_name}' returned masks of shape {masks.shape} for "
            f"{len(boxes)} boxes on a {height}×{width} image (expected N×H×W)"
        )
    masks = masks.astype(bool, copy=False)
    np.add.at(cov, labels.classes, box_coverage(masks, boxes))
    return combine_masks(masks, labels.classes, overlap), per_class, cov


def _write_preview(
    out: Path,
    item: WorkItem,
    image: np.ndarray,
    labels: ImageLabels,
    mask: np.ndarray,
    names: list[str],
) -> Path:
    from . import viz

    boxes = labels.xyxy(image.shape[1], image.shape[0])
    left = viz.draw_boxes(image, boxes, labels.classes, names)
    right = viz.overlay_mask(image, mask)
    picture = viz.add_legend(
        viz.panel([left, right], ["boxes", "pseudo-mask"]), ["background", *names]
    )
    path = out / "preview" / f"{item.split}__{item.mask_name.replace('/', '__')}"
    write_rgb(path, picture)
    return path


def _progress_bar(enabled: bool, console: Any) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(show_speed=True),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )
