"""The training loop: ``Distiller(student, config).fit(train_data, val_data)``.

Each epoch trains on the pseudo-masks (AdamW, cosine schedule, AMP, gradient clipping,
non-finite steps skipped, EMA of the weights), validates the EMA weights against the
validation pseudo-masks (with ``crop_size``: a fixed, seeded sample of ``val_windows``
windows per photo each epoch, and each whole photo tiled at native resolution, as
``b2p predict`` runs the model, every ``val_full_every`` epochs and at the end; with
``val_windows`` 0 the tiled pass every epoch), keeps the best epoch's EMA student and
checkpoints the run
(DESIGN.md "Losses and training"). The run directory's files are described in
:mod:`.checkpoint`; under ``torchrun`` the same call trains with DistributedDataParallel
(see :mod:`.ddp`): a ``DistributedSampler`` for the training split, validation sharded
across ranks with confusion matrices summed, and only rank 0 writing files.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sized
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..config import TrainConfig
from ..errors import Boxes2PixelsError
from ..inference import plan_inference, segment
from ..inference.precision import autocast, resolve_precision
from ..metrics import SUMMARY_METRICS, ConfusionMatrix, SegmentationScores
from .checkpoint import (
    BEST_NAME,
    CHECKPOINT_NAME,
    Stateful,
    load_checkpoint,
    prepare_run_dir,
    save_best,
    save_checkpoint,
    seed_everything,
    write_metrics,
)
from .ddp import DDPContext
from .ema import ModelEMA
from .loaders import ValidationPasses, training_loader
from .loaders import worker_context as worker_context  # importable here, as before
from .losses import DistillationLoss, LossOutput
from .progress import EpochProgress, epoch_progress, log_tensorboard, open_tensorboard
from .state import EpochTotals, FitResult, TrainState


@dataclass
class _Parts:
    """Everything one ``fit`` call trains with, built once before the first epoch."""

    student: nn.Module
    model: nn.Module  # the student, wrapped in DistributedDataParallel with several processes
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEMA
    criterion: nn.Module
    train_loader: DataLoader
    generator: torch.Generator
    device: torch.device
    amp_dtype: torch.dtype | None
    mean: torch.Tensor
    std: torch.Tensor
    class_names: list[str] | None

    def stateful(self) -> dict[str, Stateful]:
        """The objects a checkpoint saves and restores, by name."""
        return {
            "model": self.student,
            "ema": self.ema,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images to normalised float on the training device."""
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        return (x - self.mean) / self.std

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision at ``amp_dtype`` (nothing in fp32)."""
        return autocast(self.device, self.amp_dtype)


class Distiller:
    """Trains a student (``forward(x) -> {"fine", "binary"?}``) on pseudo-masks.

    Args:
        student: the model, e.g. ``boxes2pixels.student.Student``. It must have
            ``num_classes``, ``mean``, ``std`` and ``save_pretrained(dir, metrics=...)``.
        config: the training configuration (defaults: the paper's).

    Attributes:
        criterion: the loss module (``DistillationLoss``), built from ``config``.
        ddp: the processes of the current run (one until ``fit`` joins ``torchrun``'s group).
    """

    def __init__(self, student: nn.Module, config: TrainConfig | None = None) -> None:
        self.student = student
        self.config = config or TrainConfig()
        cfg = self.config
        self.criterion: nn.Module = DistillationLoss(
            num_classes=int(student.num_classes),
            beta=cfg.dice_beta,
            dice_eps=cfg.dice_eps,
            background_weight=cfg.background_weight,
            defect_weight=cfg.defect_weight,
            tau=cfg.tau,
            binary_weight=cfg.binary_loss_weight,
            fine_weight=cfg.fine_loss_weight,
        )
        self.ddp = DDPContext()

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.ddp.is_main

    @property
    def distributed(self) -> bool:
        """True when training with more than one process."""
        return self.ddp.distributed

    def fit(self, train_data: Dataset, val_data: Dataset | None = None) -> FitResult:
        """Train, validate each epoch, keep the best EMA student, checkpoint every epoch.

        Args:
            train_data: items ``(image uint8 B×3×H×W or 3×H×W, mask H×W)``, e.g.
                ``PseudoMaskDataset(..., transform=JointTransform())``.
            val_data: the same without augmentation; ``None`` skips validation (``best/``
                then holds the final EMA weights and early stopping is off).

        Returns:
            A ``FitResult``; the files are in ``config.out``.

        Raises:
            Boxes2PixelsError: the run directory is not empty (without resume/overwrite),
                or the data does not fit the student.
            CheckpointError: the checkpoint to resume from is unusable or was written with
                another number of processes.
        """
        if not isinstance(train_data, Sized) or len(train_data) == 0:
            raise Boxes2PixelsError("the training data is empty")
        data_classes = getattr(train_data, "num_classes", None)
        if data_classes is not None and int(data_classes) != int(self.student.num_classes):
            raise Boxes2PixelsError(
                f"the data has {data_classes} label values but the student predicts "
                f"{self.student.num_classes} classes"
            )
        self.ddp = DDPContext.join(self.config.device)
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit(train_data, val_data)
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            self.ddp.close()

    def _fit(self, train_data: Dataset, val_data: Dataset | None) -> FitResult:
        cfg, ddp = self.config, self.ddp
        resume_from = prepare_run_dir(cfg, ddp)
        run = Path(cfg.out)
        for data in (train_data, val_data):  # the decoded-image cache, once the run may start
            prepare = getattr(data, "prepare_cache", None)
            if callable(prepare):
                prepare()
        seed_everything(cfg.seed)
        parts = self._build_parts(train_data)
        state = TrainState()
        if resume_from is not None:
            state = load_checkpoint(resume_from, parts.stateful(), cfg, ddp)
        val = ValidationPasses.build(val_data, cfg, ddp)
        writer = open_tensorboard(run, state.step) if ddp.is_main else None
        try:
            show = cfg.progress and ddp.is_main
            with epoch_progress(show, cfg.log_every) as progress:
                for epoch in range(state.epoch, cfg.epochs):
                    if state.stopped_early:
                        break
                    self._epoch(parts, state, epoch, val, progress, writer)
        finally:
            if writer is not None:
                writer.close()
        return _fit_result(state, run)

    def _build_parts(self, train_data: Dataset) -> _Parts:
        cfg, device = self.config, self.ddp.device
        student = self.student.to(device)
        student.train()
        model: nn.Module = student
        if self.ddp.distributed:
            model = nn.parallel.DistributedDataParallel(
                student, device_ids=[device.index] if device.type == "cuda" else None
            )
        params = [p for p in student.parameters() if p.requires_grad]
        if not params:
            raise Boxes2PixelsError("the student has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        train_loader, generator = training_loader(train_data, cfg, self.ddp)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, cfg.epochs * len(train_loader))
        )
        amp_dtype = resolve_precision(cfg.precision, device)
        class_names = list(getattr(student, "class_names", None) or []) or None
        if class_names is None and hasattr(train_data, "class_names"):
            class_names = list(train_data.class_names)
        shape = (1, -1, 1, 1)
        return _Parts(
            student=student,
            model=model,
            params=params,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
            ema=ModelEMA(student, decay=cfg.ema_decay, warmup=cfg.ema_warmup),
            criterion=self.criterion.to(device),
            train_loader=train_loader,
            generator=generator,
            device=device,
            amp_dtype=amp_dtype,
            mean=torch.as_tensor(student.mean, dtype=torch.float32, device=device).view(*shape),
            std=torch.as_tensor(student.std, dtype=torch.float32, device=device).view(*shape),
            class_names=class_names,
        )

    # ------------------------------------------------------------------------ one epoch
    def _epoch(
        self,
        parts: _Parts,
        state: TrainState,
        epoch: int,
        val: ValidationPasses,
        progress: EpochProgress,
        writer: Any,
    ) -> None:
        """Train one epoch, validate, record it, and (rank 0) write the run's files."""
        cfg = self.config
        started = time.perf_counter()
        correct = cfg.self_correction and epoch >= cfg.resolved_correction_warmup()
        task = progress.start(epoch, cfg.epochs, len(parts.train_loader))
        totals = self._train_epoch(parts, state, epoch, correct, progress, task)
        totals = EpochTotals.from_tensor(self.ddp.all_sum(totals.as_tensor()))
        val_started = time.perf_counter()
        scores = self._validate(parts, val.per_epoch)
        row = self._epoch_row(epoch, totals, scores, correct, parts.optimizer, started)
        last = epoch + 1 == cfg.epochs
        improved = state.end_epoch(
            row, validated=val.per_epoch is not None, last=last, patience=cfg.patience
        )
        if val.sampled:
            full = None
            due = cfg.val_full_every and (epoch + 1) % cfg.val_full_every == 0
            if last or state.stopped_early or due:
                progress.note(f"epoch {epoch + 1}: full tiled validation of {val.photos} photo(s)")
                full = self._validate(parts, val.full)
            for key in SUMMARY_METRICS:
                value = float(getattr(full, key)) if full is not None else math.nan
                row[f"val_full_{key}"] = None if math.isnan(value) else value
        if val.per_epoch is not None:
            row["val_time_s"] = round(time.perf_counter() - val_started, 3)
            row["time_s"] = round(time.perf_counter() - started, 3)
        if self.ddp.is_main:
            # best model, then the checkpoint, then the metrics row that announces the
            # epoch: a kill between them never leaves a row whose epoch --resume cannot see
            run = Path(cfg.out)
            if improved:
                save_best(parts.ema.module, run, row)
            save_checkpoint(
                run / CHECKPOINT_NAME, state, parts.stateful(), cfg, self.ddp.world_size
            )
            write_metrics(run, _same_columns(state.history))
            if writer is not None:
                log_tensorboard(writer, row)
        progress.finish(task, row)
        self.ddp.barrier()

    def _train_epoch(
        self,
        parts: _Parts,
        state: TrainState,
        epoch: int,
        correct: bool,
        progress: EpochProgress,
        task: Any,
    ) -> EpochTotals:
        """One pass over the training split; the step counter goes on in ``state``."""
        loader = parts.train_loader
        parts.generator.manual_seed(self.config.seed + epoch)
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)
        parts.student.train()
        totals = EpochTotals()
        for images, masks in loader:
            if images.dim() == 5:  # windows_per_image: B photos × K windows
                images, masks = images.flatten(0, 1), masks.flatten(0, 1)
            out, stepped = self._step(parts, images, masks, correct)
            state.step += 1
            if stepped:
                parts.ema.update(parts.student)
                totals.add(out)
            else:
                totals.skipped += 1
            progress.advance(
                task, float(out.total.detach()), totals.skipped, windows=int(images.shape[0])
            )
        return totals

    def _step(
        self, parts: _Parts, images: torch.Tensor, masks: torch.Tensor, correct: bool
    ) -> tuple[LossOutput, bool]:
        """Forward, loss, and an optimiser step unless the loss or gradient is not finite
        (on any process); returns the loss and whether the step was applied."""
        x = parts.prepare(images)
        y = masks.to(parts.device, non_blocking=True).long()
        with parts.autocast():
            outputs = parts.model(x)
        out = parts.criterion(outputs, y, correct)
        finite = self.ddp.all_true(bool(torch.isfinite(out.total.detach())))
        stepped = False
        optimizer, scaler = parts.optimizer, parts.scaler
        if finite:
            scaler.scale(out.total).backward()
            scaler.unscale_(optimizer)
            limit = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(parts.params, limit)
            if scaler.is_enabled():
                scaler.step(optimizer)  # skips the step itself on overflow
                scaler.update()
                stepped = True
            elif torch.isfinite(norm):
                optimizer.step()
                stepped = True
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # a skipped step keeps the schedule aligned with the step count
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            parts.scheduler.step()
        return out, stepped

    @torch.no_grad()
    def _validate(self, parts: _Parts, loader: DataLoader | None) -> SegmentationScores | None:
        """Scores of the EMA weights on this process's share of ``loader``, summed over
        processes."""
        if loader is None:
            return None
        model = parts.ema.module
        model.eval()
        num_classes = int(self.student.num_classes)
        cm = ConfusionMatrix(num_classes, parts.class_names)
        for images, masks in loader:
            if images.dim() == 5:  # ValidationWindows: B photos × K windows, one tile each
                images, masks = images.flatten(0, 1), masks.flatten(0, 1)
            if self.config.crop_size:  # whole images, tiled as b2p predict will run them
                cm.update(_tiled_labels(model, images, self.config), masks)
                continue
            with parts.autocast():
                logits = model(parts.prepare(images))["fine"]
            cm.update(logits.argmax(dim=1).cpu(), masks)
        if self.ddp.distributed:
            counts = torch.cat(
                [torch.from_numpy(cm.matrix).flatten(), torch.tensor([cm.images])]
            ).to(torch.float64)
            counts = self.ddp.all_sum(counts)
            cm.matrix = counts[:-1].round().to(torch.int64).reshape(num_classes, -1).numpy()
            cm.images = int(counts[-1].item())
        return cm.compute()

    def _epoch_row(
        self,
        epoch: int,
        totals: EpochTotals,
        scores: SegmentationScores | None,
        correct: bool,
        optimizer: torch.optim.Optimizer,
        started: float,
    ) -> dict[str, Any]:
        """The epoch's ``metrics.csv`` row (``started``: ``time.perf_counter()`` at its start)."""
        seconds = time.perf_counter() - started
        nan = float("nan")
        steps, binary_steps = totals.steps, totals.binary_steps
        world = self.ddp.world_size
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": totals.loss / steps if steps else nan,
            "loss_binary": totals.binary / binary_steps if binary_steps else nan,
            "loss_fine": totals.fine / steps if steps else nan,
            "self_correction": int(correct),
            "corrected_share": totals.corrected / totals.valid if totals.valid else 0.0,
            # sums over processes; every process takes (and skips) the same steps
            "steps": totals.steps // world,
            "skipped_steps": totals.skipped // world,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "time_s": round(seconds, 3),
        }
        for key in SUMMARY_METRICS:
            value = float(getattr(scores, key)) if scores is not None else nan
            row[f"val_{key}"] = None if math.isnan(value) else value
        return row


def _same_columns(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the union of their columns (in order of appearance), missing cells
    None: a run resumed from an older version's checkpoint adds columns."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    return [{k: row.get(k) for k in keys} for row in history]


def _fit_result(state: TrainState, run: Path) -> FitResult:
    best = state.best_score
    return FitResult(
        run_dir=run,
        best_dir=run / BEST_NAME,
        best_epoch=state.best_epoch,
        best_score=float("nan") if best == -math.inf else float(best),
        epochs_completed=state.epoch,
        stopped_early=state.stopped_early,
        history=list(state.history),
        last_checkpoint=run / CHECKPOINT_NAME,
    )


def _tiled_labels(model: nn.Module, images: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Label maps (B×H×W) of ``uint8`` images B×3×H×W, each segmented at its own resolution
    as ``b2p predict`` will run the model (tiled with ``crop_size`` windows)."""
    plan = plan_inference(model, tile=True, tile_size=config.crop_size, precision=config.precision)
    arrays = [image.permute(1, 2, 0).numpy() for image in images]
    maps = segment(model, arrays, plan, batch_size=config.batch).labels
    return torch.from_numpy(np.stack(maps))
