"""`b2p synth`: write a synthetic wind-turbine-blade defect dataset with exact ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import console, handle_errors


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``640x360``) into ``(width, height)``."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    if w < 64 or h < 64:
        raise typer.BadParameter(f"width and height must be at least 64, got {text!r}")
    return w, h


@handle_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder (new or empty unless --overwrite)."),
    train: int = typer.Option(200, "--train", min=0, help="Number of training images."),
    val: int = typer.Option(50, "--val", min=0, help="Number of validation images."),
    test: int = typer.Option(50, "--test", min=0, help="Number of test images."),
    size: str = typer.Option("640x360", "--size", help="Image size WIDTHxHEIGHT."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed; the same seed gives the same files."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace images/, labels/, gt_masks/, data.yaml and synth.json in a non-empty OUT.",
    ),
) -> None:
    """Generate a YOLO box dataset of blade photos, with exact masks in gt_masks/.

    Boxes are loose and some subtle defects are left unboxed, like real annotations.
    """
    from rich.table import Table

    from ..data.synth import CLASS_NAMES, generate_dataset, load_manifest

    width, height = parse_size(size)
    if train + val + test == 0:
        raise typer.BadParameter("nothing to generate: --train, --val and --test are all 0")
    yaml_path = generate_dataset(
        out,
        train=train,
        val=val,
        test=test,
        size=(width, height),
        seed=seed,
        overwrite=overwrite,
        progress=True,
    )
    manifest = load_manifest(yaml_path.parent)
    table = Table(title=f"synthetic blade dataset ({width}×{height}, seed {seed})")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("with defects", justify="right")
    for name in CLASS_NAMES:
        table.add_column(f"{name} boxes", justify="right")
    table.add_column("unboxed defects", justify="right")
    totals = [0] * (3 + len(CLASS_NAMES))
    for split, stats in manifest["splits"].items():
        row = [stats["images"], stats["with_defects"]]
        row += [stats["boxes"][n] for n in CLASS_NAMES] + [stats["unboxed"]]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        table.add_row(split, *(str(v) for v in row))
    table.add_row("total", *(str(v) for v in totals), style="bold")
    console.print(table)
    console.print(f"dataset: {yaml_path}   ground truth: {yaml_path.parent / 'gt_masks'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("synth")(synth)
