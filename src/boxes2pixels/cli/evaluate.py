"""`b2p evaluate`: score a model or a folder of predicted masks against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._common import DeviceOpt, console, handle_errors

if TYPE_CHECKING:
    from ..evaluate import EvaluationResult


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_result(result: EvaluationResult) -> None:
    """Print the overall figures and the per-class table of ``result`` on stdout."""
    from rich.console import Console
    from rich.table import Table

    from ..metrics import SUMMARY_METRICS

    out = Console()
    d = result.to_dict()
    source = f"predictions {result.pred_dir}" if result.pred_dir else f"model {result.model}"
    out.print(f"{source} vs ground truth {result.gt_dir}: {d['images']} images", highlight=False)
    overall = Table(title="overall")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    for key in SUMMARY_METRICS:
        overall.add_row(key, _fmt(d[key]))  # type: ignore[arg-type]
    out.print(overall)

    per_class = Table(title="per class")
    per_class.add_column("class")
    for key in ("iou", "precision", "recall", "f1"):
        per_class.add_column(key, justify="right")
    for name, figures in d["per_class"].items():  # type: ignore[union-attr]
        per_class.add_row(name, *(_fmt(figures[k]) for k in ("iou", "precision", "recall", "f1")))
    out.print(per_class)


def _report_gaps(result: EvaluationResult) -> None:
    if result.random_backbone:
        console.print(
            "[yellow]note:[/] this model's backbone was randomly initialised (test/demo "
            "model), so these figures say nothing about the method."
        )
    if result.missing_predictions:
        shown = ", ".join(result.missing_predictions[:5])
        more = len(result.missing_predictions) - 5
        console.print(
            f"[yellow]warning:[/] {len(result.missing_predictions)} ground-truth masks had no "
            f"prediction and were scored as all background: {shown}"
            + (f" (and {more} more)" if more > 0 else ""),
            highlight=False,
        )
    for image in result.unreadable:
        console.print(f"[yellow]warning:[/] unreadable image {image}", highlight=False)
    if result.unscored_images:
        console.print(
            f"[yellow]note:[/] {len(result.unscored_images)} images of the split have no "
            f"ground-truth mask and were not scored (first: {result.unscored_images[0]})",
            highlight=False,
        )


@handle_errors
def evaluate_command(
    model: str | None = typer.Argument(
        None, help="Run folder (uses RUN/best), saved model folder or Hub id. Not with --pred."
    ),
    data_yaml: Path | None = typer.Argument(
        None,
        help="The dataset's data.yaml (needed with MODEL; with --pred it only names classes).",
    ),
    masks: Path = typer.Option(
        ...,
        "--masks",
        help="Ground-truth masks: GT_DIR/<split>/ when that folder exists, else GT_DIR.",
    ),
    split: str = typer.Option("test", "--split", help="Dataset split to evaluate."),
    pred: Path | None = typer.Option(
        None,
        "--pred",
        help="Score this folder of predicted mask PNGs instead of running a model.",
    ),
    json_file: Path | None = typer.Option(
        None, "--json", help="Also write the metrics as JSON to this file."
    ),
    device: DeviceOpt = "auto",
    imgsz: int | None = typer.Option(
        None, "--imgsz", min=14, help="Model input long side (default: the model's own)."
    ),
    batch: int = typer.Option(4, "--batch", min=1, help="Images per forward pass."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 | auto."),
) -> None:
    """Score a model on a dataset split, or a folder of predicted masks, against masks.

    Examples:

      b2p evaluate runs/exp1 data.yaml --split test --masks gt_masks

      b2p evaluate --pred pseudo_masks --masks gt_masks --json scores.json
    """
    from ..errors import Boxes2PixelsError
    from ..evaluate import evaluate
    from ..io import write_json_atomic

    if pred is not None:
        if data_yaml is None and model is not None and model.endswith((".yaml", ".yml")):
            model, data_yaml = None, Path(model)
        if model is not None:
            raise Boxes2PixelsError(
                "give either MODEL DATA_YAML or --pred PRED_DIR, not both "
                "(with --pred, an optional single argument is the data.yaml for class names)"
            )
    elif model is None or data_yaml is None:
        raise Boxes2PixelsError("give MODEL and DATA_YAML, or --pred PRED_DIR")

    result = evaluate(
        masks=masks,
        model=model,
        data_yaml=data_yaml,
        split=split,
        pred=pred,
        imgsz=imgsz,
        batch_size=batch,
        device=device,
        precision=precision,
    )
    print_result(result)
    _report_gaps(result)
    if json_file is not None:
        write_json_atomic(json_file, result.to_dict())
        console.print(f"metrics written to {json_file}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("evaluate")(evaluate_command)
