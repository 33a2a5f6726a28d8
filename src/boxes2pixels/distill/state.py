"""The numbers a training run keeps: the loop's :class:`TrainState` (what ``last.ckpt``
carries besides the weights), one epoch's loss totals, and the :class:`FitResult` of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .losses import LossOutput


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
class TrainState:
    """The loop's counters and history: what ``last.ckpt`` carries besides the weights.

    Attributes:
        epoch: epochs finished.
        step: optimiser steps taken (skipped ones included).
        best_score: best validation anomaly mIoU so far (``-inf`` before any).
        best_epoch: 1-based epoch of ``best_score`` (None before the first epoch).
        bad_epochs: epochs since the last improvement (the patience counter).
        stopped_early: the patience rule ended the run.
        history: one ``metrics.csv`` row per finished epoch.
    """

    epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.best_score = float(self.best_score)

    def end_epoch(self, row: dict[str, Any], validated: bool, last: bool, patience: int) -> bool:
        """Record a finished epoch's ``row``; True when it is the new best epoch.

        Without validation the best epoch is the ``last`` one and early stopping is off.
        """
        self.history.append(row)
        self.epoch = int(row["epoch"])
        score = row.get("val_anomaly_miou")
        score = -math.inf if score is None or not validated else float(score)
        improved = self.best_epoch is None or score > self.best_score
        if not validated:
            improved = last
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
        else:
            self.bad_epochs += 1
        if validated and patience and self.bad_epochs >= patience:
            self.stopped_early = True
        return improved


@dataclass
class EpochTotals:
    """Sums of one epoch's losses and pixel counts (summed over processes with a tensor)."""

    loss: float = 0.0
    binary: float = 0.0
    fine: float = 0.0
    steps: int = 0
    binary_steps: int = 0
    skipped: int = 0
    corrected: int = 0
    valid: int = 0

    def add(self, out: LossOutput) -> None:
        """Count an applied step's loss parts and pixels."""
        self.loss += float(out.total.detach())
        if out.binary is not None:
            self.binary += float(out.binary)
            self.binary_steps += 1
        self.fine += float(out.fine)
        self.steps += 1
        self.corrected += out.corrected_pixels
        self.valid += out.valid_pixels

    def as_tensor(self) -> torch.Tensor:
        """The sums as a float64 tensor (for ``all_reduce``)."""
        values = [self.loss, self.binary, self.fine, self.steps, self.binary_steps]
        values += [self.skipped, self.corrected, self.valid]
        return torch.tensor(values, dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> EpochTotals:
        """Inverse of :meth:`as_tensor`."""
        v = t.tolist()
        return cls(v[0], v[1], v[2], *(int(x) for x in v[3:]))
