"""``b2p label``: turn YOLO boxes into pseudo-masks with a teacher."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from ._common import (
    OptionalDeviceOpt,
    OptionalPrecisionOpt,
    PaletteOpt,
    console,
    handle_errors,
    say,
)


@handle_errors
def label_command(
    data_yaml: Path = typer.Argument(..., help="The dataset's data.yaml (Ultralytics YOLO)."),
    teacher: str = typer.Option(
        ...,
        "--teacher",
        "-t",
        help="Teacher name (see `b2p teachers`: sam, mobile-sam, sam-hq, sam2, grabcut, box, "
        "plugins) or an object path 'pkg.module:Class'.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder for <split>/<name>.png masks and manifest.json."
    ),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="SAM teachers: weights file (sam_vit_b_01ec64.pth, mobile_sam.pt, "
        "sam_hq_vit_b.pth, sam2.1_hiera_tiny.pt, ...) as a local path or "
        "hf://owner/repo\\[@revision]/path/file.",
    ),
    model_type: str | None = typer.Option(
        None,
        "--model-type",
        help="sam: vit_b | vit_l | vit_h; mobile-sam: vit_t; sam-hq: vit_b | vit_l | vit_h | "
        "vit_tiny; sam2: tiny | small | base_plus | large (default: read from the checkpoint).",
    ),
    splits: str | None = typer.Option(
        None,
        "--splits",
        help="Comma-separated splits to label (train, val, test); a split the dataset does not "
        "define is an error. Default: train and val, those of them the dataset defines.",
    ),
    device: OptionalDeviceOpt = None,
    precision: OptionalPrecisionOpt = None,
    runtime: str | None = typer.Option(
        None,
        "--runtime",
        help="sam, mobile-sam: what runs the image encoder: auto (default: OpenVINO on the "
        "CPU when installed, pip install 'boxes2pixels\\[openvino]'; else PyTorch) | torch | "
        "openvino. Other SAM teachers run it in PyTorch.",
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
    crop: str = typer.Option(
        "auto",
        "--crop",
        help="auto (default): teachers that shrink the photo (SAM, MobileSAM: 1024 px) get "
        "a crop around each group of boxes, so thin defects survive | on: crops for every "
        "teacher | off: the whole photo, as in the paper. See docs/resolution.md.",
    ),
    palette: PaletteOpt = False,
    corrections: Path | None = typer.Option(
        None,
        "--corrections",
        help="Human-corrected masks to import first: a COCO .json file (e.g. a `b2p review` "
        "bundle's annotations.json after CVAT / Label Studio) or a folder of PNG masks. They "
        "replace the teacher's masks of their images, are marked human-corrected in "
        "manifest.json, and are never relabelled (not even with --overwrite). All or nothing: "
        "one bad file (or a full disk) and no correction is recorded.",
    ),
    min_score: float | None = typer.Option(
        None,
        "--min-score",
        min=0.0,
        max=1.0,
        help="SAM-family teachers: a box whose mask scores below S (the lower of the "
        "predicted IoU and the stability score) is marked ignore (255) instead of trusted. "
        "Every box's scores are in manifest.json either way. See docs/teachers.md.",
    ),
    hq_token_only: bool = typer.Option(
        False, "--hq-token-only", help="sam-hq: use only the HQ token's mask."
    ),
) -> None:
    """Turn the boxes of a YOLO dataset into pseudo-mask PNGs with a teacher.

    Writes OUT/<split>/<name>.png (0 background, k+1 = YOLO class k) for every image of the
    chosen splits, and OUT/manifest.json. Images without boxes get an all-background mask
    without running the teacher. A rerun resumes: finished masks are kept.

    --device, --precision and --runtime apply to the SAM teachers' image encoder (default
    precision auto: bf16 on GPUs and CPUs with native bf16, fp16 on older GPUs, else fp32).
    """
    from ..label import label_dataset, summary_report
    from ..label.corrections import corrected_keys
    from ..teachers import load_teacher

    options: dict[str, Any] = {
        "checkpoint": checkpoint,
        "model_type": model_type,
        "device": device,
        "precision": precision,
        "runtime": runtime,
        "multimask": multimask or None,
        "clip_margin": clip_margin,
        "min_area": min_area,
        "hq_token_only": hq_token_only or None,
    }
    with _log_to_console():
        summary = label_dataset(
            data_yaml,
            load_teacher(teacher, **{k: v for k, v in options.items() if v is not None}),
            out,
            splits=None if splits is None else [s.strip() for s in splits.split(",") if s.strip()],
            overwrite=overwrite,
            strict=strict,
            shard=shard,
            preview=preview,
            overlap=overlap,
            progress=not quiet,
            console=console,
            palette=palette,
            corrections=corrections,
            crop=crop,
            min_score=min_score,
        )
    for part in summary_report(summary):
        console.print(part)
    corrected = corrected_keys(out)
    if corrected:
        say("", f"{len(corrected)} human-corrected mask(s) in {out} (never relabelled)")


@contextlib.contextmanager
def _log_to_console() -> Iterator[None]:
    """Show the package's warnings (label issues, skipped images) on the CLI console."""
    from rich.logging import RichHandler

    log = logging.getLogger("boxes2pixels")
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = True


def register(app: typer.Typer) -> None:
    """Add ``b2p label`` to ``app`` (``b2p teachers`` lives in :mod:`.teachers`)."""
    app.command("label")(label_command)
