"""`b2p demo`: the whole method on generated blade data, with an HTML/Markdown report."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import DeviceOpt, SeedOpt, handle_errors, say


@handle_errors
def demo_command(
    out: Path = typer.Option(Path("b2p-demo"), "--out", "-o", help="Demo folder to write."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Small smoke run (about a minute on a 2-core CPU) instead of the default (20 "
        "epochs: minutes on an idle 2-core CPU, more on a busy one, where PyTorch then runs on "
        "the cores left free; the extra student without self-correction is left out when it "
        "would end after ten minutes).",
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
    seed: SeedOpt = 0,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the demo's earlier outputs in --out and start again."
    ),
    keep_checkpoint: bool = typer.Option(
        False,
        "--keep-checkpoint",
        help="Keep the training checkpoints (last.ckpt, about half of the folder) once the demo "
        "has finished; only resuming an interrupted training run needs them.",
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

    from ..demo import ROW_LABELS, run_demo
    from ..reporting import METRIC_LABELS, format_metric

    result = run_demo(
        out,
        quick=quick,
        backbone_init=backbone_init,
        teacher=teacher,
        checkpoint=checkpoint,
        seed=seed or 0,
        device=device,
        overwrite=overwrite,
        progress=not quiet,
        keep_checkpoint=keep_checkpoint,
    )
    columns = ("miou", "anomaly_miou", "anomaly_f1", "binary_iou")
    stdout = Console()
    table = Table(title=f"test split vs ground truth ({result.scores['student'].images} images)")
    table.add_column("model", justify="left")
    for key in columns:
        table.add_column(METRIC_LABELS[key], justify="right")
    for key, scores in result.scores.items():
        d = scores.to_dict()
        table.add_row(ROW_LABELS.get(key, key), *(format_metric(d[k]) for k in columns))
    stdout.print(table)
    if result.random_backbone:
        say(
            "[yellow]note:[/] ",
            f"the student's backbone used RANDOM weights ({result.backbone_note}); this run "
            "demonstrates the pipeline, not the paper's accuracy.",
        )
    if result.ablation_note and not quick:
        say("", f"student without self-correction: {result.ablation_note}")
    stdout.print(
        f"report: {result.report_html}  (Markdown: {result.report_md})",
        markup=False,
        highlight=False,
    )
    stdout.print(f"finished in {result.seconds:.0f} s", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("demo")(demo_command)
