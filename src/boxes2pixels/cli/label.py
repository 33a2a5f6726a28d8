"""``b2p teachers`` and ``b2p label``: list teachers; turn YOLO boxes into pseudo-masks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from ._common import console, handle_errors


@handle_errors
def teachers_command() -> None:
    """List the installed teachers (entry-point group [bold]boxes2pixels.teachers[/]).

    A third-party package adds a teacher by declaring an entry point in that group; any
    other class can be used with [bold]--teacher pkg.module:Class[/].
    """
    from rich.table import Table

    from ..teachers import available_teachers

    table = Table(title="Installed teachers")
    for column in ("name", "distribution", "version", "object"):
        table.add_column(column, overflow="fold")
    for entry in available_teachers().values():
        table.add_row(entry.name, entry.distribution, entry.version, entry.value)
    from rich.console import Console

    Console().print(table)


@handle_errors
def label_command(
    data_yaml: Path = typer.Argument(..., help="The dataset's data.yaml (Ultralytics YOLO)."),
    teacher: str = typer.Option(
        ...,
        "--teacher",
        "-t",
        help="Teacher name (see `b2p teachers`: sam, mobile-sam, grabcut, box, plugins) or an "
        "object path 'pkg.module:Class'.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder for <split>/<name>.png masks and manifest.json."
    ),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="SAM teachers: weights file (sam_vit_b_01ec64.pth, mobile_sam.pt, ...) as a local "
        "path or hf://owner/repo/path/file\\[@revision].",
    ),
    model_type: str | None = typer.Option(
        None,
        "--model-type",
        help="sam: vit_b | vit_l | vit_h (default: read from the checkpoint); mobile-sam: vit_t.",
    ),
    splits: str = typer.Option(
        "train,val", "--splits", help="Comma-separated splits to label (train, val, test)."
    ),
    device: str | None = typer.Option(
        None, "--device", help="SAM teachers: auto (default) | cpu | cuda | cuda:N | mps."
    ),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="SAM teachers: image-encoder precision fp32 | bf16 | fp16 | auto "
        "(default: fp16 on CUDA, fp32 elsewhere).",
    ),
    multimask: bool = typer.Option(
        False,
        "--multimask",
        help="SAM teachers: take the best of SAM's three masks by predicted IoU instead of "
        "its single-mask output.",
    ),
    clip_margin: float | None = typer.Option(
        None,
        "--clip-margin",
        help="SAM teachers: cut each mask to its box grown by this many pixels.",
    ),
    min_area: int | None = typer.Option(
        None,
        "--min-area",
        help="SAM teachers and grabcut: drop mask regions smaller than this many pixels.",
    ),
    overlap: str = typer.Option(
        "smaller",
        "--overlap",
        help="Where masks overlap: smaller (the smaller mask wins, default) | larger | "
        "class-order (the class listed later in names wins).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo images whose mask exists (default: skip them, resume)."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Fail on the first bad label line or unreadable image (default: warn and skip).",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="I/N: label only shard I (0-based) of N, chosen by a hash of each image's path. "
        "Run N shards in parallel into the same --out; the last one writes manifest.json.",
    ),
    preview: int = typer.Option(
        0, "--preview", min=0, help="Also write K side-by-side previews to OUT/preview/."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Turn the boxes of a YOLO dataset into pseudo-mask PNGs with a teacher.

    Writes OUT/<split>/<name>.png (0 background, k+1 = YOLO class k) for every image of the
    chosen splits, and OUT/manifest.json. Images without boxes get an all-background mask
    without running the teacher. A rerun resumes: finished masks are kept.
    """
    from rich.logging import RichHandler

    from ..label import label_dataset
    from ..teachers import load_teacher

    options: dict[str, Any] = {
        "checkpoint": checkpoint,
        "model_type": model_type,
        "device": device,
        "precision": precision,
        "multimask": multimask or None,
        "clip_margin": clip_margin,
        "min_area": min_area,
    }
    options = {k: v for k, v in options.items() if v is not None}
    log = logging.getLogger("boxes2pixels")
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    log.addHandler(handler)
    log.propagate = False
    try:
        teacher_obj = load_teacher(teacher, **options)
        summary = label_dataset(
            data_yaml,
            teacher_obj,
            out,
            splits=[s.strip() for s in splits.split(",") if s.strip()],
            overwrite=overwrite,
            strict=strict,
            shard=shard,
            preview=preview,
            overlap=overlap,
            progress=not quiet,
            console=console,
        )
    finally:
        log.removeHandler(handler)
        log.propagate = True
    _print_summary(summary)


def _print_summary(summary: Any) -> None:
    from rich.table import Table

    table = Table(title=f"b2p label: {summary.teacher} → {summary.out}")
    for column in ("split", "images", "done before", "labelled", "with boxes", "boxes", "skipped"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, c in summary.splits.items():
        table.add_row(
            split,
            str(c.images),
            str(c.already_done),
            str(c.labelled),
            str(c.with_boxes),
            str(c.boxes),
            str(c.skipped),
        )
    console.print(table)
    if summary.coverage:
        cov = Table(caption="fraction of each box's pixels inside its own mask, averaged")
        cov.add_column("class")
        cov.add_column("mean box coverage", justify="right")
        for name, value in summary.coverage.items():
            cov.add_row(name, f"{value:.3f}")
        console.print(cov)
    console.print(
        f"wall time {summary.wall_time_s:.1f} s, {summary.images_per_s:.2f} images/s; "
        f"label issues: {summary.issue_count}; images skipped: {summary.skipped_count}",
        highlight=False,
    )
    for skipped in summary.skipped[:10]:
        console.print(f"[yellow]skipped[/]: {skipped.reason}", highlight=False)
    if summary.previews:
        console.print(f"previews: {summary.out / 'preview'}", highlight=False)
    if summary.manifest is not None:
        console.print(f"manifest: {summary.manifest}", highlight=False)
    elif summary.shard is not None:
        console.print(
            "manifest.json not written yet: other shards are unfinished; the last shard to "
            "finish (or a rerun without --shard) writes it.",
            highlight=False,
        )
    else:
        console.print("[yellow]manifest.json not written: some images are unfinished[/]")


def register(app: typer.Typer) -> None:
    """Add ``b2p teachers`` and ``b2p label`` to ``app``."""
    app.command("teachers")(teachers_command)
    app.command("label")(label_command)
