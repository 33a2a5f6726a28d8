"""`b2p evaluate`: score a model or a folder of predicted masks against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ._common import (
    DeviceOpt,
    ImgszOpt,
    InferenceBatchOpt,
    PrecisionOpt,
    RevisionOpt,
    handle_errors,
    say,
)

if TYPE_CHECKING:
    from rich.table import Table

    from ..evaluate import EvaluationResult


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_result(result: EvaluationResult) -> None:
    """Print the overall figures and the per-class table of ``result`` on stdout."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..metrics import SUMMARY_METRICS

    out = Console()
    d = result.to_dict()
    source = f"predictions {result.pred_dir}" if result.pred_dir else f"model {result.model}"
    out.print(
        escape(f"{source} vs ground truth {result.gt_dir}: {d['images']} images"), highlight=False
    )
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
        figs = (_fmt(figures[k]) for k in ("iou", "precision", "recall", "f1"))
        per_class.add_row(escape(name), *figs)  # class names come from the user's data.yaml
    out.print(per_class)
    if result.defects is not None:
        out.print(defect_table(result.defects.to_dict()))


def defect_table(d: dict[str, Any]) -> Table:
    """Per-defect figures (``DefectScores.to_dict()``) as a table: found of all, recall."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title="per defect",
        caption="a defect (8-connected ground-truth component) is found when at least half "
        "of its pixels are predicted as a defect (per class: as its class); thin: a 3×3 "
        "opening removes most of it; precision: predicted regions touching a defect",
    )
    for column in ("defects", "found", "of", "recall"):
        table.add_column(column, justify="left" if column == "defects" else "right")
    rows = [("all classes", d["found"], d["defects"], d["recall"])]
    rows += [(escape(n), c["found"], c["defects"], c["recall"]) for n, c in d["per_class"].items()]
    rows.append(("thin", d["thin_found"], d["thin_defects"], d["thin_recall"]))
    predicted = d["predicted"]
    rows.append(("precision", predicted - d["false_predicted"], predicted, d["precision"]))
    for name, found, total, value in rows:
        table.add_row(name, str(found), str(total), _fmt(value))
    return table


@handle_errors
def evaluate_command(
    model: str | None = typer.Argument(
        None,
        help="Run folder (uses RUN/best), saved student or baseline folder, Hub id, or .onnx "
        "file from `b2p export`. Not with --pred.",
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
    imgsz: ImgszOpt = None,
    batch: InferenceBatchOpt = None,
    precision: PrecisionOpt = "fp32",
    revision: RevisionOpt = None,
) -> None:
    """Score a model on a dataset split, or a folder of predicted masks, against masks.

    Examples:

      b2p evaluate runs/exp1 data.yaml --split test --masks gt_masks

      b2p evaluate runs/exp1/best/model.onnx data.yaml --masks gt_masks

      b2p evaluate --pred pseudo_masks --masks gt_masks --json scores.json
    """
    from ..evaluate import command_inputs, evaluate
    from ..io import write_json_atomic

    model, data_yaml = command_inputs(model, data_yaml, pred)
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
        revision=revision,
    )
    print_result(result)
    for kind, text in result.notes():
        say(f"[yellow]{kind}:[/] ", text)
    if json_file is not None:
        write_json_atomic(json_file, result.to_dict())
        say("metrics written to ", str(json_file))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("evaluate")(evaluate_command)
