"""`b2p export`: write a trained model as an ONNX file checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import handle_errors, say


@handle_errors
def export_command(
    model: str = typer.Argument(
        ..., help="Run folder (uses RUN/best) or saved model folder (student or baseline)."
    ),
    format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    imgsz: int | None = typer.Option(
        None,
        "--imgsz",
        min=14,
        help="Long side images are resized to (default: the model's); with --static also the "
        "fixed input side. A multiple of the patch size.",
    ),
    dynamic: bool = typer.Option(
        True,
        "--dynamic/--static",
        help="--dynamic (default): any batch and image shape. --static: a fixed IMGSZ×IMGSZ "
        "graph with batch 1 (for accelerators that need one); every image is letterboxed to it.",
    ),
    heads: str = typer.Option(
        "fine",
        "--heads",
        help="fine: only the logits prediction uses (binary head left out, faster) | all.",
    ),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
    out: Path | None = typer.Option(
        None, "--out", help="The .onnx file to write (default: MODEL/model.onnx)."
    ),
) -> None:
    """Export a trained model to ONNX; its outputs are checked against PyTorch (1e-3).

    The file predicts photos of any shape; its metadata describes the whole pre- and
    post-processing (see examples/onnx_client.py for a client without boxes2pixels).

    Examples:

      b2p export runs/exp1

      b2p predict runs/exp1/best/model.onnx images/ --out preds
    """
    from ..export import export_model

    result = export_model(
        model,
        out,
        format=format,
        imgsz=imgsz,
        dynamic=dynamic,
        opset=opset,
        heads=heads,
        progress=lambda msg: say("", msg),
    )
    h, w = result.input_hw
    kind = "dynamic batch and size" if result.dynamic else f"static input 1×3×{h}×{w}"
    typer.echo(
        f"wrote {result.path} ({kind}; outputs {', '.join(result.outputs)}); "
        f"max |onnxruntime - PyTorch| = {result.max_abs_diff:.2e}"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("export")(export_command)
