"""`b2p predict`: label maps, overlays and region reports for image files."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import DeviceOpt, console, handle_errors


@handle_errors
def predict_command(
    model: str = typer.Argument(
        ..., help="Run folder (uses RUN/best), saved model folder or Hub id."
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
    tile_overlap: float = typer.Option(
        0.25, "--tile-overlap", min=0.0, max=0.9, help="Overlap of neighbouring windows (fraction)."
    ),
    batch: int = typer.Option(4, "--batch", min=1, help="Images (or tiles) per forward pass."),
    device: DeviceOpt = "auto",
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 | auto."),
    imgsz: int | None = typer.Option(
        None, "--imgsz", min=14, help="Input long side without --tile (default: the model's)."
    ),
    runtime: str = typer.Option(
        "torch",
        "--runtime",
        help="torch: MODEL is a run/model folder or hub id. onnx: MODEL is a file written by "
        "`b2p export` (use --dynamic there for images of several shapes); not with --tile.",
    ),
) -> None:
    """Predict a label-map PNG (0 background, k+1 class k) for each image, at its own size.

    Examples:

      b2p predict runs/exp1 photos/ --out predictions --overlay --json

      b2p predict runs/exp1 big_photo.jpg --out predictions --tile

      b2p predict model.onnx photos/ --out predictions --runtime onnx
    """
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
    )
    for path, reason in summary.skipped:
        detail = reason if str(path) in reason else f"{path}: {reason}"
        console.print(f"[yellow]skipped[/] {detail}", highlight=False)
    if summary.random_backbone:
        console.print(
            "[yellow]note:[/] this model's backbone was randomly initialised (test/demo model)."
        )
    rate = summary.images / summary.seconds if summary.seconds > 0 else 0.0
    console.print(
        f"[green]done:[/] {summary.images} masks written to {summary.out} "
        f"({len(summary.skipped)} skipped, {summary.seconds:.1f} s, {rate:.2f} images/s)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("predict")(predict_command)
