"""`b2p train`: distil pseudo-masks into the student (single process, or DDP under torchrun)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import typer

from ._common import console, handle_errors

_HELP = """Train the student on the pseudo-masks in MASKS/train, validating on MASKS/val.

Writes RUN_DIR/best/ (the best EMA student by validation anomaly mIoU), RUN_DIR/last.ckpt,
RUN_DIR/metrics.csv and RUN_DIR/config.yaml. Settings: defaults < --config file (YAML or
TOML) < B2P_* environment variables < the flags given here. For several GPUs or nodes run
the same command under `torchrun --nproc-per-node N $(which b2p) train ...`.
"""


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@handle_errors
def train(
    data_yaml: Path = typer.Argument(..., help="data.yaml of the YOLO dataset."),
    masks: Path = typer.Option(..., "--masks", help="Pseudo-mask folder (with train/ and val/)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (default 200)."),
    imgsz: int | None = typer.Option(
        None, "--imgsz", help="Square training size, a multiple of 14 (default 518)."
    ),
    batch: int | None = typer.Option(None, "--batch", help="Images per step and process."),
    backbone_init: str | None = typer.Option(
        None, "--backbone-init", help="pretrained (default) | random."
    ),
    backbone_weights: Path | None = typer.Option(
        None,
        "--backbone-weights",
        help="Local backbone weights (official DINOv2 .pth or timm .safetensors).",
    ),
    backbone_mode: str | None = typer.Option(
        None, "--backbone-mode", help="bitfit (default) | frozen | full."
    ),
    self_correction: bool | None = typer.Option(
        None,
        "--self-correction/--no-self-correction",
        help="Online self-correction of the fine target (default on).",
    ),
    correction_warmup: int | None = typer.Option(
        None,
        "--correction-warmup",
        help="Epochs without self-correction (default: 10% of the epochs, at least 1; "
        "0 reproduces the research code).",
    ),
    binary_head: bool | None = typer.Option(
        None, "--binary-head/--no-binary-head", help="Binary defect head (default on)."
    ),
    detail: bool | None = typer.Option(
        None, "--detail/--no-detail", help="CNN detail branch (default on)."
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto (default) | cpu | cuda | cuda:N | mps."
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="auto (default) | fp32 | bf16 | fp16; fp32 turns AMP off."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Data-loading processes."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default 0)."),
    patience: int | None = typer.Option(
        None, "--patience", help="Early-stopping patience in epochs (default 25; 0 = off)."
    ),
    missing_masks: str | None = typer.Option(
        None, "--missing-masks", help="error (default) | skip: what to do with unmasked images."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in RUN_DIR from last.ckpt."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the results of an earlier run in RUN_DIR."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="YAML or TOML file of settings (field names of TrainConfig). With --resume and "
        "no --config, RUN_DIR/config.yaml is used.",
    ),
) -> None:
    from ..config import TrainConfig

    if resume and overwrite:
        raise typer.BadParameter("--resume and --overwrite exclude each other")
    config_file = config
    if config_file is None and resume and (out / "config.yaml").is_file():
        config_file = out / "config.yaml"
    flags: dict[str, Any] = {
        "data": data_yaml,
        "masks": masks,
        "out": out,
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "backbone_init": backbone_init,
        "backbone_weights": backbone_weights,
        "backbone_mode": backbone_mode,
        "self_correction": self_correction,
        "correction_warmup": correction_warmup,
        "binary_head": binary_head,
        "detail_branch": detail,
        "device": device,
        "precision": precision,
        "workers": workers,
        "seed": seed,
        "patience": patience,
        "missing_masks": missing_masks,
        "resume": True if resume else None,
        "overwrite": True if overwrite else None,
    }
    cfg = TrainConfig.load(config_file, **flags)
    main = _is_main_process()
    if main:
        _announce(cfg, config_file)

    from ..distill import train as run_training
    from ..student import RandomBackboneWarning

    with warnings.catch_warnings():
        # the CLI has already said it in its own words (see _announce)
        warnings.simplefilter("ignore", RandomBackboneWarning)
        try:
            result = run_training(cfg)
        except KeyboardInterrupt:
            if main and (cfg.out / "last.ckpt").is_file():
                console.print(
                    "[yellow]interrupted[/]: the last finished epoch is in "
                    f"{cfg.out / 'last.ckpt'}; continue with the same command and --resume "
                    "(the interrupted epoch starts again from its beginning)."
                )
            elif main:
                console.print(
                    "[yellow]interrupted[/] before the first epoch finished: nothing to resume; "
                    "run the same command with --overwrite to start again."
                )
            raise typer.Exit(130) from None
    if not main:
        return
    score = "n/a" if result.best_score != result.best_score else f"{result.best_score:.4f}"
    stop = " (early stop)" if result.stopped_early else ""
    console.print(
        f"[bold green]done[/]: {result.epochs_completed} epochs{stop}; best epoch "
        f"{result.best_epoch} with validation anomaly mIoU {score} (against pseudo-masks)\n"
        f"  model: {result.best_dir}\n  metrics: {result.run_dir / 'metrics.csv'}\n"
        f"  checkpoint: {result.last_checkpoint}",
        highlight=False,
    )


def _announce(cfg: Any, config_file: Path | None) -> None:
    source = f" (settings from {config_file})" if config_file else ""
    console.print(
        f"training {cfg.epochs} epochs at {cfg.imgsz}×{cfg.imgsz}, batch {cfg.batch}, "
        f"backbone {cfg.backbone} ({cfg.backbone_init}, {cfg.backbone_mode}), "
        f"self-correction {'on' if cfg.self_correction else 'off'} after "
        f"{cfg.resolved_correction_warmup()} warm-up epoch(s){source}",
        highlight=False,
    )
    if cfg.backbone_init == "random":
        console.print(
            "[yellow]note[/]: the backbone starts from [bold]random weights[/] (tests, offline "
            "demo); the model it gives is not meant for real use.",
            highlight=False,
        )
        if cfg.backbone_mode != "full" and not cfg.train_layerscale:
            console.print(
                f"[yellow]warning[/]: random backbone with --backbone-mode {cfg.backbone_mode}: "
                "the backbone weights (and DINOv2's LayerScale, which starts at 1e-5) stay "
                "frozen, so its features collapse (all four feature maps are nearly identical) "
                "and the student barely learns. Use --backbone-mode full to train from random "
                "weights.",
                highlight=False,
            )


def register(app: typer.Typer) -> None:
    """Add ``b2p train`` to ``app``."""
    app.command("train", help=_HELP)(train)
