"""``label_dataset``: every image of a YOLO dataset's splits through the per-image step.

The loop around :func:`boxes2pixels.label.image.label_image`: choose the images (splits,
shard, resume), decode them ahead in a thread, record each result in this run's part file
before writing its PNG, count, and rebuild ``manifest.json`` when the set is complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..atomic import remove_stale_temps
from ..data.labelmaps import write_mask
from ..data.yolo import YoloDataset, load_data_yaml
from ..errors import ImageReadError
from ..io import unsupported_images
from ..teachers.base import Teacher, load_teacher
from .boxscores import check_min_score
from .corrections import finish_corrections, import_corrections
from .crops import CropPolicy, as_policy
from .image import check_overlap, label_image
from .loader import Loaded, prefetch
from .manifest import merge_manifest
from .preview import write_preview
from .records import (
    PARTS_DIR,
    PartFile,
    WorkItem,
    check_out,
    check_same_teacher,
    check_splits,
    labels_digest,
    parse_shard,
    read_parts,
    teacher_info,
    work_items,
)
from .summary import LabelSummary, SkippedImage, SplitCounts

logger = logging.getLogger("boxes2pixels.label")

_MAX_LISTED = 1000  # skipped files / label issues listed in a summary (all are counted)


class _Run:
    """One run's loop over the pending images: labels, records, counts and previews."""

    def __init__(
        self,
        ds: YoloDataset,
        teacher: Teacher,
        summary: LabelSummary,
        part: PartFile,
        overlap: str,
        preview: int,
        palette: bool = False,
        crop: CropPolicy | None = None,
        min_score: float | None = None,
    ) -> None:
        self.ds, self.teacher, self.summary, self.part = ds, teacher, summary, part
        self.overlap, self.preview, self.palette = overlap, preview, palette
        self.crop = crop
        self.min_score = min_score
        self.cov_sum = np.zeros(len(ds.names))
        self.cov_n = np.zeros(len(ds.names))

    def handle(self, loaded: Loaded, strict: bool) -> None:
        """Label one decoded image, or record why it is skipped (raise when it must not be)."""
        error = loaded.error
        if error is not None:
            if strict or not isinstance(error, ImageReadError):
                raise error
            self.skip(loaded.item, str(error))
        else:
            self.label(loaded)

    def skip(self, item: WorkItem, reason: str) -> None:
        """Count and record an unreadable image."""
        logger.warning("skipped image: %s", reason)
        self.summary.splits[item.split].skipped += 1
        self.summary.skipped_count += 1
        if len(self.summary.skipped) < _MAX_LISTED:
            self.summary.skipped.append(SkippedImage(item.split, str(item.image), reason))
        self.part.skip(item, reason)

    def label(self, loaded: Loaded) -> None:
        """Run the per-image step, record the result, then write the mask (and a preview)."""
        item, labels, image = loaded.item, loaded.labels, loaded.image
        assert labels is not None and image is not None
        result = label_image(
            self.teacher,
            image,
            labels,
            len(self.ds.names),
            self.overlap,
            crop=self.crop,
            min_score=self.min_score,
        )
        summary = self.summary
        for issue in labels.issues:
            logger.warning("label issue: %s", issue)
        summary.issue_count += len(labels.issues)
        room = _MAX_LISTED - len(summary.label_issues)
        summary.label_issues.extend(labels.issues[: max(0, room)])
        n_boxes = result.boxes
        counts = summary.splits[item.split]
        counts.labelled += 1
        counts.boxes += n_boxes
        counts.with_boxes += int(n_boxes > 0)
        summary.labelled += 1
        summary.boxes += n_boxes
        counts.passes += result.passes
        summary.passes += result.passes
        self.cov_sum += result.coverage_sum
        self.cov_n += result.boxes_per_class
        for record in result.box_records:
            if record.ignored:
                name = self.ds.names[record.cls]
                summary.low_score[name] = summary.low_score.get(name, 0) + 1
        self.part.image(
            item,
            result.boxes_per_class.tolist(),
            result.coverage_sum.tolist(),
            labels.issues,
            passes=result.passes,
            boxes=result.box_records,
        )
        write_mask(self.summary.out / item.split / item.mask_name, result.mask, self.palette)
        if len(summary.previews) < self.preview and n_boxes > 0:
            summary.previews.append(
                write_preview(summary.out, item, image, labels, result.mask, self.ds.names)
            )

    def coverage(self) -> dict[str, float]:
        """Mean box coverage per class name over this run (classes with boxes only)."""
        names = self.ds.names
        return {
            names[k]: float(self.cov_sum[k] / self.cov_n[k])
            for k in range(len(names))
            if self.cov_n[k]
        }


def _progress_bar(enabled: bool, console: Any) -> Progress | None:
    if not enabled:
        return None
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(show_speed=True),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )


def _pending(
    items: Sequence[WorkItem],
    summary: LabelSummary,
    overwrite: bool,
    latest: dict[str, dict[str, Any]],
) -> list[WorkItem]:
    """Count the selection per split; the items still to label: those without a mask and a
    record of it in ``latest`` (all of them with overwrite), except human-corrected ones,
    which the teacher never relabels. A mask without a record (its part file cut short by a
    power loss, or ``.parts/`` deleted) cannot be proven finished, and one whose label file
    changed since was made from other boxes: both are labelled again, and the summary says
    so."""
    todo: list[WorkItem] = []
    unproven: list[str] = []
    changed: list[str] = []
    for item in items:
        summary.splits[item.split].images += 1
        rec = latest.get(item.key)
        exists = (summary.out / item.split / item.mask_name).is_file()
        corrected = rec is not None and rec.get("corrected")
        recorded = None if rec is None else rec.get("labels_sha256")  # None: an older run
        moved = recorded is not None and recorded != labels_digest(item.image)
        if corrected or (exists and rec is not None and not overwrite and not moved):
            summary.splits[item.split].already_done += 1
            summary.already_done += 1
            continue
        if exists and not overwrite:
            (changed if moved else unproven).append(item.key)
        todo.append(item)
    if changed:
        n, first = len(changed), ", ".join(changed[:3])
        summary.recovered.append(
            f"{n} mask{'s' if n > 1 else ''} made from boxes that have changed since (the "
            f"label file was edited) labelled again: {first}{', ...' if n > 3 else ''}"
        )
    if unproven:
        n, first = len(unproven), ", ".join(unproven[:3])
        summary.recovered.append(
            f"{n} mask{'s' if n > 1 else ''} without a finished record in "
            f"{summary.out / PARTS_DIR} (a run cut short, e.g. by a power loss, or the folder "
            f"deleted) labelled again: {first}{', ...' if n > 3 else ''}"
        )
    return todo


def _loop(run: _Run, todo: list[WorkItem], strict: bool, depth: int, bar: Progress | None) -> None:
    task = None
    if bar is not None:
        bar.start()
        # the description is read as Rich markup; a teacher's name may hold brackets
        task = bar.add_task(f"labelling with {escape(run.summary.teacher)}", total=len(todo))
    try:
        for loaded in prefetch(run.ds, todo, strict, depth):
            run.handle(loaded, strict)
            if bar is not None and task is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()


def _finish(summary: LabelSummary, data_yaml: str | Path, splits: list[str]) -> None:
    """Write ``manifest.json`` when the set is complete; warn when it mixes teachers."""
    summary.manifest = merge_manifest(summary.out, data_yaml, splits)
    if summary.manifest is None:
        return
    manifest = json.loads(summary.manifest.read_text(encoding="utf-8"))
    summary.mixed_teachers = "mixed_teachers" in manifest
    if summary.mixed_teachers:
        every = ",".join(manifest.get("splits") or splits)
        logger.warning(
            "%s: the masks come from different teacher settings (see 'mixed_teachers'); "
            "rerun with --overwrite --splits %s (every split of the folder) for a uniform set",
            summary.manifest,
            every,
        )


def label_dataset(
    data_yaml: str | Path,
    teacher: Teacher | str,
    out: str | Path,
    *,
    splits: Sequence[str] | None = None,
    overwrite: bool = False,
    strict: bool = False,
    shard: str | tuple[int, int] | None = None,
    preview: int = 0,
    overlap: str = "smaller",
    progress: bool = True,
    prefetch: int = 2,
    console: Any = None,
    palette: bool = False,
    corrections: str | Path | None = None,
    crop: str | CropPolicy = "auto",
    min_score: float | None = None,
) -> LabelSummary:
    """Write a pseudo-mask PNG for every image of ``splits`` and a ``manifest.json``.

    Images without boxes never reach the teacher: their all-background mask is written
    directly. Per-box masks are combined with the ``overlap`` policy (see
    :func:`~boxes2pixels.label.combine_masks`). Images are decoded in a background thread, at
    most ``prefetch`` ahead, so the teacher does not wait for the disk and memory stays bounded.

    Args:
        data_yaml: the dataset's ``data.yaml``.
        teacher: a teacher object, or a registered name / ``'pkg.module:Class'`` (created with
            default options).
        out: output folder; must not lie inside the dataset's image or label folders.
        splits: splits to label; a split the yaml does not define is an error. ``None``:
            ``train`` and ``val``, those of them the yaml defines.
        overwrite: redo images whose mask already exists (default: skip them, i.e. resume;
            a mask that no part file records, e.g. after a power loss, is labelled again).
        strict: a bad label line or an unreadable image is an error instead of a warning.
        shard: ``"I/N"`` or ``(I, N)``: label only images whose key hashes to shard I of N.
        preview: write this many side-by-side previews (boxes | mask) to ``out/preview/``.
        overlap: ``smaller`` | ``larger`` | ``class-order``.
        progress: show a rich progress bar on stderr.
        prefetch: images decoded ahead of the teacher.
        console: the ``rich.console.Console`` for the progress bar (default: a stderr one).
        palette: attach a colour palette to the mask PNGs (default: plain grayscale, which
            OpenCV and Detectron2 read as class indices; see :func:`~boxes2pixels.io.write_mask`).
        corrections: human-corrected masks to import first (a COCO ``.json`` file or a folder
            of PNG masks, see :mod:`~boxes2pixels.label.corrections`); they replace the
            teacher's masks of their images, and corrected images are never relabelled.
        crop: ``auto`` (box-centred crops for teachers with an ``input_size``, such as SAM),
            ``on``, ``off`` (the whole photo, as the paper) or a
            :class:`~boxes2pixels.label.crops.CropPolicy`; recorded in the manifest.
        min_score: mark the box of a mask whose teacher score (the lower of predicted IoU and
            stability score) is below this as ignore (255) instead of trusting it; needs a
            teacher that scores its masks (see :mod:`~boxes2pixels.label.boxscores`).

    Returns:
        A :class:`LabelSummary`; ``summary.manifest`` is set when ``manifest.json`` was written.

    Raises:
        DatasetError, LabelFormatError, ImageReadError, CheckpointError: with the file named.
        ConfigError: an unknown ``overlap`` policy, a malformed ``shard``, or a
            ``min_score`` outside [0, 1] or for a teacher without scores.
    """
    start = time.perf_counter()
    check_overlap(overlap)
    shard_t = parse_shard(shard)
    ds = load_data_yaml(data_yaml)
    splits = check_splits(ds, splits)
    out = Path(out)
    check_out(out, ds, splits)
    for folder in [*splits, PARTS_DIR]:
        remove_stale_temps(out / folder)  # temporary files of a run killed mid-write
    recovered = finish_corrections(out)  # an import a crash stopped after its commit
    if isinstance(teacher, str):
        teacher = load_teacher(teacher)
    policy = as_policy(crop)
    check_min_score(min_score, teacher)
    info = teacher_info(teacher)
    info["crop"] = policy.describe(teacher)
    info["min_score"] = min_score
    if not overwrite:
        check_same_teacher(out, info)
    items = work_items(ds, splits, shard_t)
    summary = LabelSummary(
        out=out,
        teacher=info["name"],
        splits={s: SplitCounts() for s in splits},
        images=len(items),
        shard=shard_t,
        orphan_labels=[p for s in splits for p in ds.label_files_without_image(s)],
        unsupported=unsupported_images([d for s in splits for d in ds.split_sources[s]]),
        min_score=min_score,
        recovered=recovered,
    )
    if corrections is not None:
        import_corrections(corrections, ds, out, splits)
    todo = _pending(items, summary, overwrite, read_parts(out)[1])
    with PartFile(out, shard_t) as part:
        part.header(info, shard_t, splits, overlap)
        run = _Run(
            ds, teacher, summary, part, overlap, preview, palette, policy, min_score=min_score
        )
        try:
            _loop(run, todo, strict, prefetch, _progress_bar(progress, console))
        finally:
            summary.wall_time_s = time.perf_counter() - start
    summary.coverage = run.coverage()
    _finish(summary, data_yaml, splits)
    summary.wall_time_s = time.perf_counter() - start
    return summary
