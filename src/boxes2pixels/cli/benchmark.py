"""`b2p benchmark`: train the student, its ablations and the baselines, and compare them."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from ._common import (
    BackboneInitOpt,
    BackboneModeOpt,
    BackboneOpt,
    BackboneWeightsOpt,
    ConfigFileOpt,
    ImgszOpt,
    OptionalBatchOpt,
    OptionalDeviceOpt,
    OptionalPrecisionOpt,
    handle_errors,
    say,
)


def _encoder_weights(values: list[str] | None) -> dict[str, Path] | None:
    from ..errors import Boxes2PixelsError

    if not values:
        return None
    out: dict[str, Path] = {}
    for item in values:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise Boxes2PixelsError(
                "--encoder-weights expects NAME=FILE (e.g. unet=resnet34.safetensors), "
                f"got '{item}'"
            )
        out[name.strip().lower()] = Path(path)
    return out


@handle_errors
def benchmark_command(
    data_yaml: Path = typer.Argument(..., help="data.yaml of the YOLO dataset."),
    masks: Path = typer.Option(..., "--masks", help="Pseudo-masks to train on (b2p label output)."),
    gt: Path = typer.Option(
        ..., "--gt", help="Ground-truth masks of the test split (GT_DIR/test/ or GT_DIR)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder; rerun the same command to resume."),
    suite: str = typer.Option(
        "final",
        "--suite",
        help="final (student + U-Net, DeepLabV3, SegFormer) | ablations (student without "
        "self-correction / binary head / detail branch) | all.",
    ),
    runs: str | None = typer.Option(
        None,
        "--runs",
        help="Comma-separated runs instead of a suite: student, student-no-sc, "
        "student-no-binary, student-no-detail, unet, deeplabv3, segformer.",
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per run (default 200)."),
    imgsz: ImgszOpt = None,
    batch: OptionalBatchOpt = None,
    device: OptionalDeviceOpt = None,
    precision: OptionalPrecisionOpt = None,
    backbone: BackboneOpt = None,
    backbone_init: BackboneInitOpt = None,
    backbone_mode: BackboneModeOpt = None,
    backbone_weights: BackboneWeightsOpt = None,
    encoder_init: str = typer.Option(
        "imagenet", "--encoder-init", help="Baselines' encoders: imagenet (default) | random."
    ),
    encoder_weights: list[str] | None = typer.Option(
        None,
        "--encoder-weights",
        help="NAME=FILE: a local smp encoder weights file for baseline NAME (repeatable).",
    ),
    split: str = typer.Option("test", "--split", help="Split to predict and score."),
    panels: int = typer.Option(8, "--panels", min=0, help="Test images in comparison panels."),
    config: ConfigFileOpt = None,
) -> None:
    """Train each run on the same pseudo-masks and compare them on ground truth.

    Writes OUT/summary.csv, OUT/summary.md (the paper's Table 1 layout plus binary
    precision/recall and per-class IoU) and OUT/panels/*.png (image, ground truth and each
    run's prediction). Finished runs are skipped when the command is run again. The
    backbone options apply to the students, the encoder options to the baselines.

    Examples:

      b2p benchmark data.yaml --masks masks --gt gt_masks --out bench --epochs 20 --imgsz 224

      b2p benchmark data.yaml --masks masks --gt gt_masks --out bench --suite ablations
    """
    from ..benchmark import run_benchmark
    from ..config import TrainConfig
    from ..student import RandomBackboneWarning
    from ..student.backbone import collapse_warning

    base = TrainConfig.load(config) if config is not None else None
    problem = collapse_warning(
        backbone_init or (base.backbone_init if base else "pretrained"),
        backbone_mode or (base.backbone_mode if base else "bitfit"),
        base.train_layerscale if base else False,
    )
    if problem:
        say("[yellow]warning:[/] ", problem)
    with warnings.catch_warnings():  # said above in the CLI's own words
        warnings.simplefilter("ignore", RandomBackboneWarning)
        result = run_benchmark(
            data_yaml,
            masks,
            gt,
            out,
            suite=suite,
            runs=runs,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            precision=precision,
            backbone_init=backbone_init,
            backbone_mode=backbone_mode,
            backbone_weights=backbone_weights,
            backbone=backbone,
            encoder_init=encoder_init,
            encoder_weights=_encoder_weights(encoder_weights),
            split=split,
            panels=panels,
            config=base,
            say=lambda msg: say("[bold]benchmark[/] ", msg),
        )
    typer.echo(result.summary_md.read_text(encoding="utf-8"))
    say(
        "",
        f"wrote {result.summary_csv}, {result.summary_md} and {len(result.panels)} panels "
        f"in {result.out / 'panels'}",
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("benchmark")(benchmark_command)
