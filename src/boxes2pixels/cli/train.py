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
    windows_per_image: Annotated[
        int | None,
        typer.Option(
            "--windows-per-image",
            min=1,
            help="With --crop-size: windows drawn from each decoded photo per visit (default "
            "1; --batch must be a multiple). An epoch still visits every photo once, so it "
            "holds K times the windows and steps; it spreads one decode over K windows when "
            "--cache is off.",
        ),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache",
            help="Decoded-image cache: off (default; every item decodes its photo and mask) | "
            "disk (each photo and mask decoded once into memory-mapped arrays under "
            "--cache-dir, keyed by the files' sha256, kept for later runs) | ram (decoded once "
            "into memory for this run). Training results are the same either way; the size "
            "needed is checked before anything is decoded.",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Root of the disk cache (arrays in DIR/decoded/); default RUN_DIR/.cache, or "
            "$B2P_CACHE_DIR when set.",
        ),
    ] = None,
    val_windows: Annotated[
        int | None,
        typer.Option(
            "--val-windows",
            min=0,
            help="With --crop-size: score each epoch on this many fixed, seeded windows per "
            "validation photo (half on defects; default 8), so validation time follows the "
            "sample, not the photo size. 0: tile every validation photo in full every epoch.",
        ),
    ] = None,
    val_full_every: Annotated[
        int | None,
        typer.Option(
            "--val-full-every",
            min=0,
            help="With --crop-size and --val-windows: also tile every validation photo in "
            "full every N epochs (metrics.csv val_full_* columns); default 0: after the last "
            "epoch (or an early stop) only.",
        ),
    ] = None,
    log_every: Annotated[
        int | None,
        typer.Option(
            "--log-every",
            min=1,
            help="When the output is not a terminal (a scheduler's log): a progress line every "
            "N steps with windows/s and ETA (default 50).",
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
        windows_per_image=windows_per_image,
        cache=cache,
        cache_dir=cache_dir,
        val_windows=val_windows,
        val_full_every=val_full_every,
        log_every=log_every,
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
    if not cfg.crop_size:
        size = f"at {cfg.imgsz}×{cfg.imgsz}"
    elif cfg.val_windows:
        every = f"every {cfg.val_full_every} epochs and " if cfg.val_full_every else ""
        size = (
            f"on {cfg.crop_size}×{cfg.crop_size} windows at native resolution (validated on "
            f"{cfg.val_windows} windows per photo, tiled in full {every}at the end)"
        )
    else:
        size = f"on {cfg.crop_size}×{cfg.crop_size} windows at native resolution (validated tiled)"
    if cfg.crop_size and cfg.windows_per_image > 1:
        size += f", {cfg.windows_per_image} windows per decoded photo"
    if cfg.cache != "off":
        where = f" in {cfg.resolved_cache_root()}" if cfg.cache == "disk" else ""
        size += f", decoded-image cache {cfg.cache}{where}"
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
