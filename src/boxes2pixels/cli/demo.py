"""`b2p demo`: the whole method on generated blade data, with an HTML/Markdown report."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import DeviceOpt, console, handle_errors


@handle_errors
def demo_command(
    out: Path = typer.Option(Path("b2p-demo"), "--out", "-o", help="Demo folder to write."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Small smoke run (under a minute on a 2-core CPU) instead of the default "
        "(a few minutes, at most ten).",
    ),
    backbone_init: str = typer.Option(
        "auto",
        "--backbone-init",
        help="auto (pretrained DINOv2 weights when they can be loaded, else random; the "
        "report says which) | pretrained | random.",
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        "-t",
        help="Teacher name (see `b2p teachers`); default grabcut, or mobile-sam when "
        "--checkpoint is given.",
    ),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="SAM / MobileSAM weights: a local file or hf://owner/repo/path/file.",
    ),
    device: DeviceOpt = "auto",
    seed: int = typer.Option(0, "--seed", help="Seed of the generated data and of training."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the demo's earlier outputs in --out and start again."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No stage messages or progress bars."),
) -> None:
    """Run the whole method on generated wind-turbine-blade data and write a report.

    Generates blade images with exact ground truth, labels them with a teacher,
    trains the student, scores teacher and student on the test split and writes
    OUT/report.html (self-contained) and OUT/report.md. A rerun into the same
    folder continues where a run stopped.
    """
    from rich.console import Console
    from rich.table import Table

    from ..demo import run_demo
    from ..report import ROW_LABELS, fmt

    result = run_demo(
        out,
        quick=quick,
        backbone_init=backbone_init,
        teacher=teacher,
        checkpoint=checkpoint,
        seed=seed,
        device=device,
        overwrite=overwrite,
        progress=not quiet,
    )
    stdout = Console()
    table = Table(title=f"test split vs ground truth ({result.scores['student'].images} images)")
    for column in ("model", "mIoU", "anomaly mIoU", "anomaly F1", "binary IoU"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for key, scores in result.scores.items():
        d = scores.to_dict()
        table.add_row(
            ROW_LABELS.get(key, key),
            *(fmt(d[k]) for k in ("miou", "anomaly_miou", "anomaly_f1", "binary_iou")),
        )
    stdout.print(table)
    if result.random_backbone:
        console.print(
            "[yellow]note:[/] the student's backbone used RANDOM weights "
            f"({result.backbone_note}); this run demonstrates the pipeline, not the paper's "
            "accuracy.",
            highlight=False,
        )
    if result.ablation_note and not quick:
        console.print(f"student without self-correction: {result.ablation_note}", highlight=False)
    stdout.print(f"report: {result.report_html}  (Markdown: {result.report_md})", highlight=False)
    stdout.print(f"finished in {result.seconds:.0f} s", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("demo")(demo_command)
