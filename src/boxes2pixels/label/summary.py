"""What a ``label_dataset`` run did (:class:`LabelSummary`) and its printable report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..data.yolo import LabelIssue
from ..io import describe_unsupported


@dataclass(frozen=True)
class SkippedImage:
    """An image that got no mask, and why."""

    split: str
    image: str
    reason: str


@dataclass
class SplitCounts:
    """Counts of one split in one run (``passes``: teacher calls, i.e. encoder passes)."""

    images: int = 0
    already_done: int = 0
    labelled: int = 0
    with_boxes: int = 0
    boxes: int = 0
    skipped: int = 0
    passes: int = 0


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
        passes: teacher calls (encoder passes) in this run: one per image with boxes on the
            whole photo, one per crop with ``crop`` (see :mod:`boxes2pixels.label.crops`).
        skipped: unreadable images (first 1000 listed; ``skipped_count`` counts all).
        label_issues: bad label lines (first 1000 listed; ``issue_count`` counts all).
        coverage: mean fraction of each box covered by its own mask, per class name.
        wall_time_s: seconds the run took.
        manifest: ``manifest.json`` if this run wrote it (``None`` while shards are missing).
        previews: preview PNGs written.
        mixed_teachers: true when the finished masks come from differing teacher settings.
        orphan_labels: label files of the chosen splits that no image uses (they are
            ignored; usually a misspelt or deleted image, or a photo of a type not read).
        unsupported: files of the chosen splits' image folders of an image type not read
            here (``io.OTHER_IMAGE_SUFFIXES``: ``.heic``, camera raw, ...), by suffix.
        min_score: ``--min-score`` of the run (``None``: every mask trusted).
        low_score: per class name, boxes of this run whose score was below ``min_score``
            and were marked ignore (255).
        recovered: what this run repaired in ``out`` (masks without a record, after an
            earlier run was cut short, and masks made from boxes since edited, labelled
            again; an interrupted corrections import finished), one line each.
    """

    out: Path
    teacher: str
    splits: dict[str, SplitCounts]
    images: int = 0
    labelled: int = 0
    already_done: int = 0
    boxes: int = 0
    passes: int = 0
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
    orphan_labels: list[Path] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)
    min_score: float | None = None
    low_score: dict[str, int] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        """Images labelled in this run per second of wall time."""
        return self.labelled / self.wall_time_s if self.wall_time_s > 0 else 0.0


def _counts_table(summary: LabelSummary) -> Table:
    table = Table(title=escape(f"b2p label: {summary.teacher} → {summary.out}"))
    columns = ("split", "images", "done before", "labelled", "with boxes", "boxes", "passes")
    for column in (*columns, "skipped"):
        table.add_column(column, justify="right" if column != "split" else "left")
    table.caption = "passes: teacher calls (encoder passes); with --crop, one per crop"
    for split, c in summary.splits.items():
        row = (c.images, c.already_done, c.labelled, c.with_boxes, c.boxes, c.passes, c.skipped)
        table.add_row(escape(split), *(str(v) for v in row))
    return table


def _coverage_table(coverage: dict[str, float]) -> Table:
    table = Table(caption="fraction of each box's pixels inside its own mask, averaged")
    table.add_column("class")
    table.add_column("mean box coverage", justify="right")
    for name, value in coverage.items():
        table.add_row(escape(name), f"{value:.3f}")
    return table


def _min_score_table(summary: LabelSummary) -> Table:
    table = Table(
        caption=f"boxes whose teacher score (min of predicted IoU and stability) was below "
        f"--min-score {summary.min_score}: their box is marked ignore (255)"
    )
    table.add_column("class")
    table.add_column("boxes below --min-score", justify="right")
    for name in dict.fromkeys([*summary.coverage, *summary.low_score]):
        table.add_row(escape(name), str(summary.low_score.get(name, 0)))
    return table


def _manifest_line(summary: LabelSummary) -> Text:
    if summary.manifest is not None:
        return Text(f"manifest: {summary.manifest}")
    if summary.shard is not None:
        return Text(
            "manifest.json not written yet: other shards are unfinished; the last shard to "
            "finish (or a rerun without --shard) writes it."
        )
    return Text("manifest.json not written: some images are unfinished", style="yellow")


def summary_report(summary: LabelSummary) -> list[RenderableType]:
    """The end-of-run report, as Rich renderables to print in order.

    A table of counts per split, the mean box coverage per class, wall time and speed, the
    first skipped images, and where the previews and the manifest are. Paths and messages
    are plain text (never read as Rich markup).
    """
    parts: list[RenderableType] = [_counts_table(summary)]
    if summary.coverage:
        parts.append(_coverage_table(summary.coverage))
    if summary.min_score is not None:
        parts.append(_min_score_table(summary))
    parts.append(
        Text(
            f"wall time {summary.wall_time_s:.1f} s, {summary.images_per_s:.2f} images/s; "
            f"label issues: {summary.issue_count}; images skipped: {summary.skipped_count}"
        )
    )
    parts += [Text.assemble(("skipped", "yellow"), f": {s.reason}") for s in summary.skipped[:10]]
    parts += [Text.assemble(("recovered", "yellow"), f": {line}") for line in summary.recovered]
    if summary.orphan_labels:
        n = len(summary.orphan_labels)
        parts.append(
            Text.assemble(
                ("ignored", "yellow"),
                f": {n} label file{'s' if n > 1 else ''} without an image, "
                f"e.g. {summary.orphan_labels[0]}",
            )
        )
    if summary.unsupported:
        parts.append(
            Text.assemble(("ignored", "yellow"), f": {describe_unsupported(summary.unsupported)}")
        )
    if summary.previews:
        parts.append(Text(f"previews: {summary.out / 'preview'}"))
    parts.append(_manifest_line(summary))
    return parts
