"""The Distiller: trains a student on teacher pseudo-masks (single process or DDP).

One call, ``Distiller(student, config).fit(train_data, val_data)``, runs the paper's recipe
(DESIGN.md "Losses and training") and writes the run directory:

- ``config.yaml``: the full resolved configuration;
- ``metrics.csv``: one row per epoch (loss parts, corrected-pixel share, skipped steps,
  validation metrics against the pseudo-masks, learning rate, time);
- ``best/``: the EMA weights of the epoch with the best validation anomaly mIoU, saved with
  ``save_pretrained`` (metrics in the model card);
- ``last.ckpt``: everything needed to continue exactly (model, EMA, optimiser, scheduler,
  grad scaler, epoch, step, best score, patience counter, history, RNG states), written
  atomically at the end of every epoch;
- ``tensorboard/``: event files, when the ``tensorboard`` package is installed.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same call trains with DistributedDataParallel:
gloo on CPU, nccl on CUDA, a ``DistributedSampler`` for the training split, validation
sharded across ranks with confusion matrices summed, and only rank 0 writing files.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Iterator, Sized
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from ..config import TrainConfig
from ..device import resolve_device, resolve_precision
from ..errors import Boxes2PixelsError, CheckpointError
from ..io import atomic_path, remove_outputs, write_text_atomic
from ..metrics import SUMMARY_METRICS, ConfusionMatrix, SegmentationScores
from .ema import ModelEMA
from .losses import DistillationLoss, LossOutput

CHECKPOINT_NAME = "last.ckpt"
CHECKPOINT_FORMAT = "boxes2pixels.last/1"
_OUTPUTS = ("best", CHECKPOINT_NAME, "metrics.csv", "config.yaml", "tensorboard")
# Settings that may differ between a run and its resumption without changing the result.
_RUNTIME_KEYS = {"resume", "overwrite", "progress", "workers", "device", "data", "masks", "out"}


@dataclass
class FitResult:
    """What ``Distiller.fit`` produced.

    Attributes:
        run_dir: the run directory.
        best_dir: ``run_dir/best`` (the saved EMA student of the best epoch).
        best_epoch: 1-based epoch of the best validation anomaly mIoU (the last epoch when
            there is no validation data).
        best_score: that validation anomaly mIoU (NaN when undefined or not measured).
        epochs_completed: epochs finished, including those of an earlier run when resumed.
        stopped_early: training stopped because of the patience rule.
        history: one dict per epoch, as in ``metrics.csv``.
        last_checkpoint: ``run_dir/last.ckpt``.
    """

    run_dir: Path
    best_dir: Path
    best_epoch: int | None
    best_score: float
    epochs_completed: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: Path = Path()


@dataclass
class _EpochTotals:
    loss: float = 0.0
    binary: float = 0.0
    fine: float = 0.0
    steps: int = 0
    binary_steps: int = 0
    skipped: int = 0
    corrected: int = 0
    valid: int = 0

    def add(self, out: LossOutput) -> None:
        self.loss += float(out.total.detach())
        if out.binary is not None:
            self.binary += float(out.binary)
            self.binary_steps += 1
        self.fine += float(out.fine)
        self.steps += 1
        self.corrected += out.corrected_pixels
        self.valid += out.valid_pixels

    def as_tensor(self) -> torch.Tensor:
        values = [self.loss, self.binary, self.fine, self.steps, self.binary_steps]
        values += [self.skipped, self.corrected, self.valid]
        return torch.tensor(values, dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> _EpochTotals:
        v = t.tolist()
        return cls(v[0], v[1], v[2], *(int(x) for x in v[3:]))


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def run_dir_problem(run: Path, resume: bool, overwrite: bool) -> str:
    """Why ``run`` cannot be used as a run directory (an empty string when it can).

    A new run needs a missing or empty directory unless ``overwrite``; ``resume`` needs
    ``run/last.ckpt``.
    """
    run = Path(run)
    if resume:
        ckpt = run / CHECKPOINT_NAME
        if ckpt.is_file():
            return ""
        return (
            f"{ckpt}: nothing to resume (no epoch of this run finished); start the run again "
            "with --overwrite instead of --resume"
        )
    if run.exists() and not run.is_dir():
        return f"{run}: exists and is not a directory"
    if run.is_dir() and any(run.iterdir()) and not overwrite:
        return (
            f"{run}: run directory is not empty; pass --resume to continue the run in it, "
            "--overwrite to replace its results, or choose another --out"
        )
    return ""


class Distiller:
    """Trains a student (``forward(x) -> {"fine", "binary"?}``) on pseudo-masks.

    Args:
        student: the model, e.g. ``boxes2pixels.student.Student``. It must have
            ``num_classes``, ``mean``, ``std`` and ``save_pretrained(dir, metrics=...)``.
        config: the training configuration (defaults: the paper's).

    Attributes:
        criterion: the loss module (``DistillationLoss``), built from ``config``.
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
        self.rank = 0
        self.world_size = 1
        self.device = torch.device("cpu")
        self._owns_process_group = False

    # ------------------------------------------------------------------ distributed helpers
    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when training with more than one process."""
        return self.world_size > 1

    def _setup(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        device = resolve_device(self.config.device)
        if world > 1 and device.type == "cuda":
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self._owns_process_group = True
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = device

    def _teardown(self) -> None:
        if self._owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_process_group = False

    def _all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return tensor
        comm = tensor.to(self.device) if self.device.type == "cuda" else tensor
        dist.all_reduce(comm, op=dist.ReduceOp.SUM)
        return comm.cpu()

    def _all_true(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0.5)

    def _from_main(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.broadcast(t, src=0)
        return bool(t.item() > 0.5)

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    # ------------------------------------------------------------------------- run folder
    def _prepare_run_dir(self) -> Path | None:
        """Check the run directory (rank 0 decides); returns the checkpoint to resume from."""
        cfg = self.config
        run = Path(cfg.out)
        ckpt = run / CHECKPOINT_NAME
        problem = run_dir_problem(run, cfg.resume, cfg.overwrite) if self.is_main else ""
        if self._from_main(bool(problem)):
            raise Boxes2PixelsError(problem or f"{run}: rank 0 refused the run directory")
        if self.is_main:
            run.mkdir(parents=True, exist_ok=True)
            if not cfg.resume and cfg.overwrite:
                remove_outputs(run, _OUTPUTS)
            write_text_atomic(run / "config.yaml", cfg.to_yaml())
        self._barrier()
        return ckpt if cfg.resume else None

    # ---------------------------------------------------------------------------- loaders
    def _train_loader(self, data: Dataset) -> tuple[DataLoader, torch.Generator]:
        cfg = self.config
        generator = torch.Generator()
        sampler: Any
        if self.distributed:
            sampler = DistributedSampler(
                data, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=cfg.seed
            )
        else:
            sampler = RandomSampler(data, generator=generator)
        loader = DataLoader(
            data,
            batch_size=cfg.batch,
            sampler=sampler,
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
            generator=generator,
        )
        return loader, generator

    def _val_loader(self, data: Dataset) -> DataLoader:
        cfg = self.config
        if self.distributed:
            n = len(data)  # type: ignore[arg-type]
            data = Subset(data, list(range(self.rank, n, self.world_size)))
        return DataLoader(
            data,
            batch_size=cfg.batch,
            shuffle=False,
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
        )

    # ------------------------------------------------------------------------------ fit
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
                there is nothing to resume, or the data does not fit the student.
        """
        if not isinstance(train_data, Sized) or len(train_data) == 0:
            raise Boxes2PixelsError("the training data is empty")
        data_classes = getattr(train_data, "num_classes", None)
        if data_classes is not None and int(data_classes) != int(self.student.num_classes):
            raise Boxes2PixelsError(
                f"the data has {data_classes} label values but the student predicts "
                f"{self.student.num_classes} classes"
            )
        self._setup()
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit(train_data, val_data)
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            self._teardown()

    def _fit(self, train_data: Dataset, val_data: Dataset | None) -> FitResult:
        cfg = self.config
        resume_from = self._prepare_run_dir()
        run = Path(cfg.out)
        _seed_everything(cfg.seed)

        device = self.device
        student = self.student.to(device)
        student.train()
        model: nn.Module = student
        if self.distributed:
            model = nn.parallel.DistributedDataParallel(
                student, device_ids=[device.index] if device.type == "cuda" else None
            )
        params = [p for p in student.parameters() if p.requires_grad]
        if not params:
            raise Boxes2PixelsError("the student has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        train_loader, generator = self._train_loader(train_data)
        steps_per_epoch = len(train_loader)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, cfg.epochs * steps_per_epoch)
        )
        amp_dtype = resolve_precision(cfg.precision, device)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        ema = ModelEMA(student, decay=cfg.ema_decay, warmup=cfg.ema_warmup)
        criterion = self.criterion.to(device)
        mean = torch.as_tensor(student.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.as_tensor(student.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        class_names = list(getattr(student, "class_names", None) or []) or None
        if class_names is None and hasattr(train_data, "class_names"):
            class_names = list(train_data.class_names)

        state: dict[str, Any] = {
            "epoch": 0,
            "step": 0,
            "best_score": -math.inf,
            "best_epoch": None,
            "bad_epochs": 0,
            "stopped_early": False,
            "history": [],
        }
        if resume_from is not None:
            state = self._load_checkpoint(
                resume_from, student, ema, optimizer, scheduler, scaler, state
            )
        warmup_epochs = cfg.resolved_correction_warmup()
        val_loader = self._val_loader(val_data) if val_data is not None else None
        writer = self._tensorboard(run, state["step"]) if self.is_main else None

        def prepare(images: torch.Tensor) -> torch.Tensor:
            x = images.to(device, non_blocking=True).float().div_(255.0)
            return (x - mean) / std

        def autocast() -> Any:
            if amp_dtype is None:
                return nullcontext()
            return torch.autocast(device_type=device.type, dtype=amp_dtype)

        try:
            with self._progress() as progress:
                for epoch in range(state["epoch"], cfg.epochs):
                    if state["stopped_early"]:
                        break
                    started = time.perf_counter()
                    correct = cfg.self_correction and epoch >= warmup_epochs
                    generator.manual_seed(cfg.seed + epoch)
                    if isinstance(train_loader.sampler, DistributedSampler):
                        train_loader.sampler.set_epoch(epoch)
                    if hasattr(train_data, "set_epoch"):
                        train_data.set_epoch(epoch)
                    student.train()
                    totals = _EpochTotals()
                    task = progress.start(epoch, cfg.epochs, steps_per_epoch)
                    for images, masks in train_loader:
                        x = prepare(images)
                        y = masks.to(device, non_blocking=True).long()
                        with autocast():
                            outputs = model(x)
                        out = criterion(outputs, y, correct)
                        finite = self._all_true(bool(torch.isfinite(out.total.detach())))
                        stepped = False
                        if finite:
                            scaler.scale(out.total).backward()
                            scaler.unscale_(optimizer)
                            limit = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
                            norm = torch.nn.utils.clip_grad_norm_(params, limit)
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
                            scheduler.step()
                        state["step"] += 1
                        if stepped:
                            ema.update(student)
                            totals.add(out)
                        else:
                            totals.skipped += 1
                        progress.advance(task, float(out.total.detach()), totals.skipped)

                    totals = _EpochTotals.from_tensor(self._all_sum(totals.as_tensor()))
                    scores = self._validate(ema.module, val_loader, prepare, autocast, class_names)
                    row = self._epoch_row(
                        epoch, totals, scores, correct, optimizer, time.perf_counter() - started
                    )
                    state["history"].append(row)
                    state["epoch"] = epoch + 1
                    score = row.get("val_anomaly_miou")
                    score = -math.inf if score is None or val_loader is None else float(score)
                    improved = state["best_epoch"] is None or score > state["best_score"]
                    if val_loader is None:
                        improved = epoch + 1 == cfg.epochs
                    if improved:
                        state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
                    else:
                        state["bad_epochs"] += 1
                    if (
                        val_loader is not None
                        and cfg.patience
                        and state["bad_epochs"] >= cfg.patience
                    ):
                        state["stopped_early"] = True
                    if self.is_main:
                        if improved:
                            self._save_best(ema.module, run, row)
                        self._write_metrics(run, state["history"])
                        if writer is not None:
                            _log_tensorboard(writer, row, state["step"])
                        self._save_checkpoint(
                            run / CHECKPOINT_NAME, student, ema, optimizer, scheduler, scaler, state
                        )
                    progress.finish(task, row)
                    self._barrier()
        finally:
            if writer is not None:
                writer.close()

        best = state["best_score"]
        return FitResult(
            run_dir=run,
            best_dir=run / "best",
            best_epoch=state["best_epoch"],
            best_score=float("nan") if best == -math.inf else float(best),
            epochs_completed=state["epoch"],
            stopped_early=state["stopped_early"],
            history=list(state["history"]),
            last_checkpoint=run / CHECKPOINT_NAME,
        )

    # ------------------------------------------------------------------------- validation
    @torch.no_grad()
    def _validate(
        self,
        model: nn.Module,
        loader: DataLoader | None,
        prepare: Any,
        autocast: Any,
        class_names: list[str] | None,
    ) -> SegmentationScores | None:
        if loader is None:
            return None
        model.eval()
        num_classes = int(self.student.num_classes)
        cm = ConfusionMatrix(num_classes, class_names)
        for images, masks in loader:
            with autocast():
                logits = model(prepare(images))["fine"]
            cm.update(logits.argmax(dim=1).cpu(), masks)
        if self.distributed:
            counts = torch.cat(
                [torch.from_numpy(cm.matrix).flatten(), torch.tensor([cm.images])]
            ).to(torch.float64)
            counts = self._all_sum(counts)
            cm.matrix = counts[:-1].round().to(torch.int64).reshape(num_classes, -1).numpy()
            cm.images = int(counts[-1].item())
        return cm.compute()

    def _epoch_row(
        self,
        epoch: int,
        totals: _EpochTotals,
        scores: SegmentationScores | None,
        correct: bool,
        optimizer: torch.optim.Optimizer,
        seconds: float,
    ) -> dict[str, Any]:
        nan = float("nan")
        steps, binary_steps = totals.steps, totals.binary_steps
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": totals.loss / steps if steps else nan,
            "loss_binary": totals.binary / binary_steps if binary_steps else nan,
            "loss_fine": totals.fine / steps if steps else nan,
            "self_correction": int(correct),
            "corrected_share": totals.corrected / totals.valid if totals.valid else 0.0,
            # sums over processes; every process takes (and skips) the same steps
            "steps": totals.steps // self.world_size,
            "skipped_steps": totals.skipped // self.world_size,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "time_s": round(seconds, 3),
        }
        for key in SUMMARY_METRICS:
            value = getattr(scores, key) if scores is not None else float("nan")
            row[f"val_{key}"] = _nan_to_none(float(value))
        return row

    # ------------------------------------------------------------------------------ files
    def _save_best(self, model: nn.Module, run: Path, row: dict[str, Any]) -> None:
        metrics: dict[str, Any] = {
            k: v for k, v in row.items() if k.startswith("val_") and v is not None
        }
        metrics["epoch"] = row["epoch"]
        metrics["validated_against"] = "pseudo-masks of the validation split (EMA weights)"
        tmp = run / ".best.tmp"
        old = run / ".best.old"
        for path in (tmp, old):
            if path.exists():
                shutil.rmtree(path)
        model.save_pretrained(tmp, metrics=metrics)
        best = run / "best"
        if best.exists():
            best.rename(old)
        tmp.rename(best)
        if old.exists():
            shutil.rmtree(old)

    @staticmethod
    def _write_metrics(run: Path, history: list[dict[str, Any]]) -> None:
        if not history:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        write_text_atomic(run / "metrics.csv", buf.getvalue())

    def _tensorboard(self, run: Path, step: int) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(log_dir=str(run / "tensorboard"), purge_step=step or None)

    def _save_checkpoint(
        self,
        path: Path,
        student: nn.Module,
        ema: ModelEMA,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        state: dict[str, Any],
    ) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "epoch": state["epoch"],
            "step": state["step"],
            "best_score": state["best_score"],
            "best_epoch": state["best_epoch"],
            "bad_epochs": state["bad_epochs"],
            "stopped_early": state["stopped_early"],
            "history": state["history"],
            "model": student.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "config": self.config.model_dump(mode="json"),
            "world_size": self.world_size,
            "rng": _rng_state(),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def _load_checkpoint(
        self,
        path: Path,
        student: nn.Module,
        ema: ModelEMA,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        state: dict[str, Any],
    ) -> dict[str, Any]:
        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # corrupt, truncated or foreign file
            raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a boxes2pixels training checkpoint")
        try:
            student.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: checkpoint does not fit this student/configuration ({exc})"
            ) from exc
        changed = sorted(
            k
            for k, v in ckpt.get("config", {}).items()
            if k not in _RUNTIME_KEYS and self.config.model_dump(mode="json").get(k) != v
        )
        if changed and self.is_main:
            warnings.warn(
                f"{path}: resuming with settings that differ from the checkpoint's: "
                + ", ".join(changed),
                stacklevel=3,
            )
        _set_rng_state(ckpt["rng"])
        state = dict(state)
        for key in ("epoch", "step", "best_epoch", "bad_epochs", "stopped_early", "history"):
            state[key] = ckpt[key]
        state["best_score"] = float(ckpt["best_score"])
        return state

    # --------------------------------------------------------------------------- progress
    @contextmanager
    def _progress(self) -> Iterator[_Progress]:
        show = self.config.progress and self.is_main
        reporter = _Progress(show)
        try:
            yield reporter
        finally:
            reporter.close()


class _Progress:
    """Rich progress bar with the running loss; a summary line per epoch (rank 0 only)."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self._progress: Any = None
        self._loss = 0.0
        self._n = 0
        if show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._console = Console(stderr=True)
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()

    def start(self, epoch: int, epochs: int, steps: int) -> Any:
        self._loss, self._n = 0.0, 0
        if not self.show:
            return None
        return self._progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, info="")

    def advance(self, task: Any, loss: float, skipped: int) -> None:
        if math.isfinite(loss):
            self._loss += loss
            self._n += 1
        if self.show:
            info = f"loss {self._loss / max(self._n, 1):.4f}"
            if skipped:
                info += f" skipped {skipped}"
            self._progress.update(task, advance=1, info=info)

    def finish(self, task: Any, row: dict[str, Any]) -> None:
        if not self.show:
            return
        self._progress.remove_task(task)

        def fmt(v: Any) -> str:
            return "—" if v is None else f"{v:.4f}"

        self._console.print(
            f"epoch {row['epoch']}: loss {row['loss']:.4f} (binary {row['loss_binary']:.4f}, "
            f"fine {row['loss_fine']:.4f}), corrected {100 * row['corrected_share']:.3g}%"
            f"{', skipped ' + str(row['skipped_steps']) if row['skipped_steps'] else ''} | val "
            f"mIoU {fmt(row['val_miou'])}, anomaly mIoU {fmt(row['val_anomaly_miou'])}, "
            f"binary IoU {fmt(row['val_binary_iou'])} | {row['time_s']:.1f}s",
            highlight=False,
        )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _log_tensorboard(writer: Any, row: dict[str, Any], step: int) -> None:
    for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
            group = "val" if key.startswith("val_") else "train"
            writer.add_scalar(f"{group}/{key.removeprefix('val_')}", value, row["epoch"])
    writer.flush()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def build_student(
    config: TrainConfig, class_names: list[str], load_backbone_weights: bool = True
) -> nn.Module:
    """A ``Student`` with the architecture and backbone choices of ``config``.

    Args:
        config: the training configuration (backbone, init, weights, mode, switches, imgsz).
        class_names: names of the label values, background first.
        load_backbone_weights: load the pretrained or file backbone weights now; ``False``
            when every weight comes from a checkpoint next (resuming), so nothing is
            downloaded or read twice. The student still records its original initialisation.
    """
    from ..student import Student
    from ..student.backbone import no_backbone_weights

    with nullcontext() if load_backbone_weights else no_backbone_weights():
        return Student(
            num_classes=len(class_names),
            class_names=list(class_names),
            backbone=config.backbone,
            feature_indices=config.feature_indices,
            decoder_channels=config.decoder_channels,
            detail_branch=config.detail_branch,
            binary_head=config.binary_head,
            backbone_mode=config.backbone_mode,
            backbone_init=config.backbone_init,
            backbone_weights=(
                str(config.backbone_weights) if config.backbone_weights is not None else None
            ),
            imgsz=config.imgsz,
            train_layerscale=config.train_layerscale,
        )


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets of ``config``, as ``b2p train`` builds them.

    The training split is augmented (unless ``config.augment`` is off); validation uses the
    ``val_split`` when ``data.yaml`` defines it, otherwise ``None`` (with a warning).
    """
    from ..data.dataset import PseudoMaskDataset
    from ..data.transforms import JointTransform
    from ..data.yolo import load_data_yaml

    if config.data is None or config.masks is None:
        raise Boxes2PixelsError("training needs a data.yaml (data) and a mask folder (masks)")
    data = load_data_yaml(config.data)
    transform = None
    if config.augment:
        transform = JointTransform(
            hflip=config.hflip,
            vflip=config.vflip,
            scale_crop=config.scale_crop,
            min_scale=config.min_scale,
            colour=config.colour_jitter,
            hue=config.hue_jitter,
        )
    train_data = PseudoMaskDataset(
        data,
        config.masks,
        config.train_split,
        imgsz=config.imgsz,
        transform=transform,
        missing=config.missing_masks,
        seed=config.seed,
    )
    if config.val_split not in data.splits:
        warnings.warn(
            f"{data.yaml_path}: no '{config.val_split}' split; training without validation "
            "(best/ will hold the final weights)",
            stacklevel=2,
        )
        return train_data, None
    val_data = PseudoMaskDataset(
        data, config.masks, config.val_split, imgsz=config.imgsz, missing=config.missing_masks
    )
    return train_data, val_data


def train(config: TrainConfig) -> FitResult:
    """Everything ``b2p train`` does: :func:`build_datasets`, a new student from ``config``,
    and ``Distiller.fit``.

    Raises:
        Boxes2PixelsError: ``config.data`` or ``config.masks`` is unset, or the dataset or
            run directory is unusable.
    """
    if config.data is None or config.masks is None:
        raise Boxes2PixelsError("training needs a data.yaml (data) and a mask folder (masks)")
    if os.environ.get("RANK", "0") == "0":  # fail before the (slow) model construction
        problem = run_dir_problem(Path(config.out), config.resume, config.overwrite)
        if problem:
            raise Boxes2PixelsError(problem)
    train_data, val_data = build_datasets(config)
    torch.manual_seed(config.seed)
    student = build_student(config, train_data.class_names, load_backbone_weights=not config.resume)
    return Distiller(student, config).fit(train_data, val_data)
