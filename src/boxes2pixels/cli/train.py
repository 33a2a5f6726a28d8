"""`b2p train`: distil pseudo-masks into the student (single process, or DDP under torchrun)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    SeedOpt,
    console,
    handle_errors,
    say,
)

if TYPE_CHECKING:
    from ..config import TrainConfig

_HELP = """Train the student on the pseudo-masks in MASKS/train, validating on MASKS/val.

Writes RUN_DIR/best/ (the best EMA student by validation anomaly mIoU), RUN_DIR/last.ckpt,
RUN_DIR/metrics.csv and RUN_DIR/config.yaml. Settings: defaults < --config file (YAML or
TOML; with --resume and no --config, RUN_DIR/config.yaml) < B2P_* environment variables <
the flags given here. For several GPUs or nodes run the same command under
`torchrun --nproc-per-node N $(which b2p) train ...`; --resume needs the same number of
processes.
"""


@handle_errors
def train(
    data_yaml: Annotated[Path, typer.Argument(help="data.yaml of the YOLO dataset.")],
    masks: Annotated[
        Path, typer.Option("--masks", help="Pseudo-mask folder (with train/ and val/).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (default 200).")] = None,
    imgsz: ImgszOpt = None,
    crop_size: Annotated[
        int | None,
        typer.Option(
            "--crop-size",
            min=0,
            help="0 (default): each whole image resized to --imgsz, as in the paper. N: train "
            "on N×N windows at native resolution (half of them on a defect), validate tiled; "
            "predict and evaluate then tile by themselves. See docs/resolution.md.",
        ),
    ] = None,
    validate_on: Annotated[
        str | None,
        typer.Option(
            "--validate-on",
            help="val (default): the val split's pseudo-masks, as in the paper. corrected: the "
            "human-corrected images of every split (b2p label --corrections), against their "
            "corrected masks; they then choose the best epoch and early stopping.",
        ),
    ] = None,
    corrected_repeat: Annotated[
        int | None,
        typer.Option(
            "--corrected-repeat",
            min=0,
            help="Times each human-corrected training image is seen per epoch (default 1; 0 "
            "holds them out of training, e.g. to validate on them).",
        ),
    ] = None,
    batch: OptionalBatchOpt = None,
    backbone: BackboneOpt = None,
    backbone_init: BackboneInitOpt = None,
    backbone_weights: BackboneWeightsOpt = None,
    backbone_mode: BackboneModeOpt = None,
    self_correction: Annotated[
        bool | None,
        typer.Option(
            "--self-correction/--no-self-correction",
            help="Online self-correction of the fine target (default on).",
        ),
    ] = None,
    correction_warmup: Annotated[
        int | None,
        typer.Option(
            "--correction-warmup",
            help="Epochs without self-correction (default: 10% of the epochs, at least 1; "
            "0 reproduces the research code).",
        ),
    ] = None,
    binary_head: Annotated[
        bool | None,
        typer.Option("--binary-head/--no-binary-head", help="Binary defect head (default on)."),
    ] = None,
    detail: Annotated[
        bool | None, typer.Option("--detail/--no-detail", help="CNN detail branch (default on).")
    ] = None,
    device: OptionalDeviceOpt = None,
    precision: OptionalPrecisionOpt = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Data-loading processes.")
    ] = None,
    seed: SeedOpt = None,
    patience: Annotated[
        int | None,
        typer.Option("--patience", help="Early-stopping patience in epochs (default 25; 0 = off)."),
    ] = None,
    missing_masks: Annotated[
        str | None,
        typer.Option(
            "--missing-masks", help="error (default) | skip: what to do with unmasked images."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in RUN_DIR from last.ckpt (from epoch 1 when the run was "
            "stopped before its first epoch was saved).",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the results of an earlier run in RUN_DIR.")
    ] = False,
    config: ConfigFileOpt = None,
) -> None:
    from .. import distill
    from ..config import TrainConfig
    from ..student import RandomBackboneWarning

    if resume and overwrite:
        raise typer.BadParameter("--resume and --overwrite exclude each other")
    config_file = distill.settings_file(out, resume, config)
    cfg = TrainConfig.load(
        config_file,
        data=data_yaml,
        masks=masks,
        out=out,
        epochs=epochs,
        imgsz=imgsz,
        crop_size=crop_size,
        validate_on=validate_on,
        corrected_repeat=corrected_repeat,
        batch=batch,
        backbone=backbone,
        backbone_init=backbone_init,
        backbone_weights=backbone_weights,
        backbone_mode=backbone_mode,
        self_correction=self_correction,
        correction_warmup=correction_warmup,
        binary_head=binary_head,
        detail_branch=detail,
        device=device,
        precision=precision,
        workers=workers,
        seed=seed,
        patience=patience,
        missing_masks=missing_masks,
        resume=True if resume else None,
        overwrite=True if overwrite else None,
    )
    main = distill.launched_as_main()
    if main:
        _announce(cfg, config_file)
    with warnings.catch_warnings():
        # the CLI has already said it in its own words (see _announce)
        warnings.simplefilter("ignore", RandomBackboneWarning)
        try:
            result = distill.train(cfg)
        except KeyboardInterrupt:
            if main:
                say("[yellow]interrupted[/]: ", distill.resume_hint(cfg.out))
            raise typer.Exit(130) from None
    if not main:
        return
    score = "n/a" if result.best_score != result.best_score else f"{result.best_score:.4f}"
    stop = " (early stop)" if result.stopped_early else ""
    against = "human-corrected masks" if cfg.validate_on == "corrected" else "pseudo-masks"
    say(
        f"[bold green]done[/]: {result.epochs_completed} epochs{stop}; best epoch "
        f"{result.best_epoch} with validation anomaly mIoU {score} (against {against})\n",
        f"  model: {result.best_dir}\n  metrics: {result.run_dir / 'metrics.csv'}\n"
        f"  checkpoint: {result.last_checkpoint}",
    )


def _announce(cfg: TrainConfig, config_file: Path | None) -> None:
    from ..distill.checkpoint import resumable
    from ..student.backbone import collapse_warning

    source = f" (settings from {config_file})" if config_file else ""
    size = (
        f"on {cfg.crop_size}×{cfg.crop_size} windows at native resolution (validated tiled)"
        if cfg.crop_size
        else f"at {cfg.imgsz}×{cfg.imgsz}"
    )
    say(
        "",
        f"training {cfg.epochs} epochs {size}, batch {cfg.batch}, "
        f"backbone {cfg.backbone} ({cfg.backbone_init}, {cfg.backbone_mode}), "
        f"self-correction {'on' if cfg.self_correction else 'off'} after "
        f"{cfg.resolved_correction_warmup()} warm-up epoch(s){source}",
    )
    if cfg.backbone_init == "random":
        console.print(
            "[yellow]note[/]: the backbone starts from [bold]random weights[/] (tests, offline "
            "demo); the model it gives is not meant for real use.",
            highlight=False,
        )
    problem = collapse_warning(cfg.backbone_init, cfg.backbone_mode, cfg.train_layerscale)
    if problem:
        say("[yellow]warning[/]: ", problem)
    if cfg.resume and not resumable(cfg.out):
        say(
            "[yellow]note[/]: ",
            f"nothing to resume in {cfg.out} (no epoch was saved): starting from epoch 1",
        )


def register(app: typer.Typer) -> None:
    """Add ``b2p train`` to ``app``."""
    app.command("train", help=_HELP)(train)
