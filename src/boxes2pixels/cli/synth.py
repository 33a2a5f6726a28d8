"""`b2p synth`: write a synthetic wind-turbine-blade defect dataset with exact ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import SeedOpt, console, handle_errors, say


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``640x360``) into ``(width, height)``."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    return w, h


@handle_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder (new or empty unless --overwrite)."),
    train: int = typer.Option(200, "--train", min=0, help="Number of training images."),
    val: int = typer.Option(50, "--val", min=0, help="Number of validation images."),
    test: int = typer.Option(50, "--test", min=0, help="Number of test images."),
    size: str = typer.Option("640x360", "--size", help="Image size WIDTHxHEIGHT."),
    seed: SeedOpt = 0,
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace images/, labels/, gt_masks/, data.yaml and synth.json in a non-empty OUT.",
    ),
) -> None:
    """Generate a YOLO box dataset of blade photos, with exact masks in gt_masks/.

    Boxes are loose and some subtle defects are left unboxed, like real annotations. The
    same --seed gives byte-identical files.
    """
    from ..data.synth import generate_dataset, load_manifest, summary_table

    yaml_path = generate_dataset(
        out,
        train=train,
        val=val,
        test=test,
        size=parse_size(size),
        seed=seed,
        overwrite=overwrite,
        progress=True,
    )
    console.print(summary_table(load_manifest(yaml_path.parent)))
    say("dataset: ", f"{yaml_path}   ground truth: {yaml_path.parent / 'gt_masks'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("synth")(synth)
