"""`b2p predict`: label maps, overlays and region reports for image files."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (
    DeviceOpt,
    ImgszOpt,
    InferenceBatchOpt,
    PaletteOpt,
    PrecisionOpt,
    RevisionOpt,
    console,
    handle_errors,
    say,
)


@handle_errors
def predict_command(
    model: str = typer.Argument(
        ...,
        help="Run folder (uses RUN/best), saved student or baseline folder, Hub id, or .onnx "
        "file from `b2p export`.",
    ),
    source: str = typer.Argument(..., help="An image file, a folder (recursive) or a quoted glob."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (never the source folder); names mirror the source."
    ),
    overlay: bool = typer.Option(
        False, "--overlay", help="Also write NAME_overlay.jpg: coloured classes with a legend."
    ),
    json: bool = typer.Option(
        False, "--json", help="Also write NAME.json: defect area per class and each region."
    ),
    tile: bool = typer.Option(
        False, "--tile", help="Full resolution with a sliding window and blended logits."
    ),
    tile_size: int | None = typer.Option(
        None,
        "--tile-size",
        min=14,
        help="Window side for --tile (default: --imgsz or the model's).",
    ),
    tile_overlap: float | None = typer.Option(
        None,
        "--tile-overlap",
        min=0.0,
        max=0.9,
        help="Overlap of neighbouring windows (fraction; default 0.25).",
    ),
    batch: InferenceBatchOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    imgsz: ImgszOpt = None,
    runtime: str = typer.Option(
        "auto",
        "--runtime",
        help="auto: for an .onnx MODEL OpenVINO on the CPU when installed, else onnxruntime; "
        "PyTorch otherwise | torch | onnx | openvino (an .onnx MODEL is a file written by "
        "`b2p export`; a --static file gets windows or a letterbox of its own size).",
    ),
    revision: RevisionOpt = None,
    palette: PaletteOpt = False,
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace this run's files where --out already holds them (an earlier run's "
        "recorded outputs are removed first; other files are kept). Without it such an "
        "--out is refused.",
    ),
) -> None:
    """Predict a label-map PNG (0 background, k+1 class k) for each image, at its own size.

    Examples:

      b2p predict runs/exp1 photos/ --out predictions --overlay --json

      b2p predict runs/exp1 big_photo.jpg --out predictions --tile

      b2p predict model.onnx photos/ --out predictions
    """
    from ..io import describe_unsupported
    from ..predict import predict_files

    summary = predict_files(
        model,
        source,
        out,
        overlay=overlay,
        json=json,
        tile=tile,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        imgsz=imgsz,
        batch_size=batch,
        device=device,
        precision=precision,
        runtime=runtime,
        revision=revision,
        palette=palette,
        overwrite=overwrite,
    )
    if summary.plan is not None:
        say("ran: ", summary.plan.describe())
        for note in summary.plan.notes:
            say("[yellow]note:[/] ", note)
    if summary.resumed:
        say(
            "[yellow]resumed:[/] ",
            f"{summary.resumed} images finished by an earlier run of this model and these "
            f"settings that was cut short are kept; the other {len(summary.masks)} predicted",
        )
    for path, reason in summary.skipped:
        say("[yellow]skipped[/] ", reason if str(path) in reason else f"{path}: {reason}")
    if summary.ignored:
        say("[yellow]note:[/] ", describe_unsupported(summary.ignored))
    if summary.random_backbone:
        console.print(
            "[yellow]note:[/] this model's backbone was randomly initialised (test/demo model)."
        )
    if summary.images == 0 and summary.skipped:
        from ..errors import ImageReadError

        raise ImageReadError(
            f"no image could be read: all {len(summary.skipped)} were skipped (listed above), "
            f"no mask was written to {summary.out}"
        )
    rate = summary.images / summary.seconds if summary.seconds > 0 else 0.0
    say(
        "[green]done:[/] ",
        f"{summary.images} masks written to {summary.out} "
        f"({len(summary.skipped)} skipped, {summary.seconds:.1f} s, {rate:.2f} images/s)",
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("predict")(predict_command)
