"""The run directory of a training run and what makes it resumable.

Layout (DESIGN.md "Losses and training"):

- ``config.yaml``: the full resolved configuration;
- ``metrics.csv``: one row per epoch;
- ``best/``: the EMA student of the best epoch, saved with ``save_pretrained``;
- ``last.ckpt``: everything needed to continue exactly (model, EMA, optimiser, scheduler,
  grad scaler, the loop's counters and history, the number of processes, RNG states),
  written atomically at the end of every epoch;
- ``tensorboard/``: event files (see :mod:`.progress`).

Only rank 0 writes; every rank reads ``last.ckpt`` when resuming.
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..atomic import fsync_dir, remove_stale_temps
from ..config import TrainConfig
from ..errors import Boxes2PixelsError, CheckpointError
from ..io import atomic_path, remove_outputs, write_text_atomic
from .ddp import DDPContext
from .state import TrainState

CHECKPOINT_NAME = "last.ckpt"
CHECKPOINT_FORMAT = "boxes2pixels.last/1"
BEST_NAME = "best"
METRICS_NAME = "metrics.csv"
CONFIG_NAME = "config.yaml"
RUN_OUTPUTS = (BEST_NAME, CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME, "tensorboard")
REPLACED_NAME = "replaced"
"""Folder of a run that keeps the files added to a ``best/`` that a better epoch replaced."""
_BEST_TMP, _BEST_OLD = ".best.tmp", ".best.old"  # save_best's folders between its renames
# The objects a checkpoint restores through ``load_state_dict``, in this order.
STATE_PARTS = ("model", "ema", "optimizer", "scheduler", "scaler")
# Settings that may differ between a run and its resumption without changing the result.
_RUNTIME_KEYS = {
    "resume", "overwrite", "progress", "workers", "device", "data", "masks", "out",
    "cache", "cache_dir", "log_every",
}  # fmt: skip


class Stateful(Protocol):
    """Anything with ``state_dict`` / ``load_state_dict`` (modules, optimisers, schedulers)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any], /) -> Any: ...


# ----------------------------------------------------------------------------- run folder
def run_dir_problem(run: Path, resume: bool, overwrite: bool) -> str:
    """Why ``run`` cannot be used as a run directory (an empty string when it can).

    A new run needs a missing or empty directory unless ``overwrite``. ``resume`` continues
    from ``run/last.ckpt``; without one (killed before its first epoch was saved) the run
    starts again from epoch 1, which needs a folder holding only this run's own files.
    """
    run = Path(run)
    if run.exists() and not run.is_dir():
        return f"{run}: exists and is not a directory"
    if resume:
        foreign = sorted(_foreign_files(run)) if not resumable(run) else []
        if foreign:
            return (
                f"{run}: nothing to resume (no {CHECKPOINT_NAME}) and the folder holds files "
                f"that are not this run's ({', '.join(foreign[:3])}); choose another --out"
            )
        return ""
    if run.is_dir() and any(run.iterdir()) and not overwrite:
        return (
            f"{run}: run directory is not empty; pass --resume to continue the run in it, "
            "--overwrite to replace its results, or choose another --out"
        )
    return ""


def resumable(run: Path) -> bool:
    """True when ``run`` holds a checkpoint to resume from (at least one epoch finished)."""
    return (Path(run) / CHECKPOINT_NAME).is_file()


def _foreign_files(run: Path) -> list[str]:
    """Names in ``run`` that a training run does not write (nothing when it does not exist)."""
    if not run.is_dir():
        return []
    own = {*RUN_OUTPUTS, _BEST_TMP, _BEST_OLD}
    return [p.name for p in run.iterdir() if p.name not in own and not p.name.startswith(".")]


def resume_hint(run: Path) -> str:
    """What to do after the run in ``run`` was interrupted: resume it (from its last finished
    epoch, or from the start when none finished)."""
    ckpt = Path(run) / CHECKPOINT_NAME
    if ckpt.is_file():
        return (
            f"the last finished epoch is in {ckpt}; continue with the same command and "
            "--resume (the interrupted epoch starts again from its beginning)."
        )
    return (
        "no epoch had finished; the same command with --resume starts the run again from epoch 1."
    )


def prepare_run_dir(config: TrainConfig, ddp: DDPContext) -> Path | None:
    """Check the run directory (rank 0 decides) and write ``config.yaml`` into it.

    Returns:
        The checkpoint to resume from, or None for a new run (also for ``resume`` when no
        epoch was saved: the run's earlier files are then replaced).

    Raises:
        Boxes2PixelsError: the directory cannot be used (see :func:`run_dir_problem`).
    """
    run = Path(config.out)
    problem = run_dir_problem(run, config.resume, config.overwrite) if ddp.is_main else ""
    if ddp.from_main(bool(problem)):
        raise Boxes2PixelsError(problem or f"{run}: rank 0 refused the run directory")
    resume = ddp.from_main(bool(config.resume) and resumable(run))  # rank 0 decides
    if ddp.is_main:
        run.mkdir(parents=True, exist_ok=True)
        clean_run_dir(run)
        if not resume and (config.overwrite or config.resume):
            remove_outputs(run, RUN_OUTPUTS)
        write_text_atomic(run / CONFIG_NAME, config.to_yaml())
    ddp.barrier()
    return run / CHECKPOINT_NAME if resume else None


def write_metrics(run: Path, history: list[dict[str, Any]]) -> None:
    """Write ``run/metrics.csv``: one row per epoch (None as an empty cell)."""
    if not history:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text_atomic(run / METRICS_NAME, buf.getvalue())


def save_best(model: nn.Module, run: Path, row: dict[str, Any]) -> None:
    """Replace ``run/best`` with ``model`` (``save_pretrained``; the row's validation
    metrics go into the model card), never leaving a half-written folder behind."""
    metrics: dict[str, Any] = {
        k: v for k, v in row.items() if k.startswith("val_") and v is not None
    }
    metrics["epoch"] = row["epoch"]
    metrics["validated_against"] = "pseudo-masks of the validation split (EMA weights)"
    tmp, old = run / _BEST_TMP, run / _BEST_OLD
    for path in (tmp, old):
        if path.exists():
            shutil.rmtree(path)
    try:
        model.save_pretrained(tmp, metrics=metrics)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. the disk is full: leave no half folder
        raise
    best = run / BEST_NAME
    if best.exists():
        best.rename(old)
    tmp.rename(best)
    fsync_dir(run)
    if old.exists():
        _keep_added_files(old, best, run / REPLACED_NAME / f"best-before-epoch-{row['epoch']}")
        shutil.rmtree(old)


def _keep_added_files(old: Path, best: Path, keep: Path) -> None:
    """Move the files someone added to the replaced ``best/`` (an ONNX export of it, notes)
    into ``keep`` instead of deleting them, and warn: an export of the old best model beside
    the new weights would predict with the old model."""
    added = sorted(p for p in old.iterdir() if not (best / p.name).exists())
    if not added:
        return
    keep.mkdir(parents=True, exist_ok=True)
    for path in added:
        path.rename(keep / path.name)
    fsync_dir(keep)
    names = ", ".join(p.name for p in added)
    warnings.warn(
        f"{best} was replaced by a better epoch; the files added to the earlier best ({names}: "
        f"an export of the earlier model?) were moved to {keep}. Export the new best again",
        stacklevel=3,
    )


def clean_run_dir(run: Path) -> None:
    """Undo what a run killed while saving left behind: put ``best/`` back when the kill came
    between its two renames, and delete the half-written ``.best.tmp/`` and temporary files."""
    best, old = run / BEST_NAME, run / _BEST_OLD
    if old.is_dir() and not best.exists():
        old.rename(best)
    for path in (run / _BEST_TMP, old):
        if path.exists():
            shutil.rmtree(path)
    remove_stale_temps(run, older_than=0)  # only rank 0 of this run writes here


# ---------------------------------------------------------------------------- checkpoint
def save_checkpoint(
    path: Path,
    state: TrainState,
    parts: Mapping[str, Stateful],
    config: TrainConfig,
    world_size: int,
) -> None:
    """Write ``last.ckpt`` atomically.

    Args:
        path: the file to write.
        state: the loop's counters and history.
        parts: the objects named in ``STATE_PARTS``.
        config: the run's configuration (compared on resume).
        world_size: number of processes (a resumed run must use as many).
    """
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT, **asdict(state)}
    payload.update({name: parts[name].state_dict() for name in STATE_PARTS})
    payload["config"] = config.model_dump(mode="json")
    payload["world_size"] = world_size
    payload["rng"] = rng_state()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)  # through a Python file, so a full disk raises an OSError


def load_checkpoint(
    path: Path,
    parts: Mapping[str, Stateful],
    config: TrainConfig,
    ddp: DDPContext,
) -> TrainState:
    """Restore ``parts`` and the RNG states from ``path``; returns the loop's saved state.

    Settings that differ from the checkpoint's (other than run-time ones such as ``device``
    or ``workers``) are listed in a warning on rank 0.

    Raises:
        CheckpointError: the file is unreadable or foreign, does not fit the student or the
            configuration, or was written by a run with another number of processes.
    """
    try:
        ckpt = torch.load(path, map_location=ddp.device, weights_only=True)
    except Exception as exc:  # corrupt, truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a boxes2pixels training checkpoint")
    saved_world = int(ckpt.get("world_size", 1))
    if saved_world != ddp.world_size:
        raise CheckpointError(
            f"{path}: the run was trained with {saved_world} process(es) and cannot be resumed "
            f"with {ddp.world_size}: the data shards, steps per epoch and learning-rate "
            f"schedule depend on it. Resume with {saved_world} process(es) (WORLD_SIZE="
            f"{saved_world}), or start a new run with --overwrite or another --out"
        )
    try:
        for name in STATE_PARTS:
            parts[name].load_state_dict(ckpt[name])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint does not fit this student/configuration ({exc})"
        ) from exc
    current = config.model_dump(mode="json")
    changed = sorted(
        k
        for k, v in ckpt.get("config", {}).items()
        if k not in _RUNTIME_KEYS and current.get(k) != v
    )
    if changed and ddp.is_main:
        warnings.warn(
            f"{path}: resuming with settings that differ from the checkpoint's: "
            + ", ".join(changed),
            stacklevel=2,
        )
    set_rng_state(ckpt["rng"])
    return TrainState(**{f.name: ckpt[f.name] for f in fields(TrainState)})


# ------------------------------------------------------------------------------ RNG state
def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states, in a form ``torch.load(weights_only=True)`` reads back."""
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


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
