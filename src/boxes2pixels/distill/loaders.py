"""The data loaders of a training run: shuffled training batches and the validation passes."""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from ..config import TrainConfig
from ..data.dataset import ValidationWindows
from .ddp import DDPContext


def worker_context(data: Dataset, workers: int) -> multiprocessing.context.BaseContext | None:
    """How the loader starts its workers: PyTorch's default, except in a process on Linux
    that has loaded OpenVINO (``b2p label``'s encoder, an exported student), where workers
    come from a fork server (the dataset must then be picklable, as it must on macOS and
    Windows) that imports the dataset's module once.

    In the test suite, forked workers (one of them failing) after OpenVINO had run
    MobileSAM's encoder crashed the interpreter in the next PyTorch convolution: the exit of a
    child process, handled by the SIGCHLD handler in Python that PyTorch installs for its
    workers, is what set it off. A fork server's workers are not this process's children.
    The preload list is the fork server's, process-wide; it takes effect when the server
    starts (the first loader that uses it).
    """
    if workers == 0 or "openvino" not in sys.modules or sys.platform != "linux":
        return None
    source = getattr(data, "dataset", data)  # a Subset (validation under DDP) wraps it
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", type(source).__module__])
    return context


def training_loader(
    data: Dataset, config: TrainConfig, ddp: DDPContext
) -> tuple[DataLoader, torch.Generator]:
    """Shuffled batches of ``data`` (this process's shard under DDP) and the generator that
    the loop reseeds every epoch; ``batch`` windows per batch, also when each item is a stack
    of ``windows_per_image`` windows."""
    generator = torch.Generator()
    sampler: Any
    if ddp.distributed:
        sampler = DistributedSampler(
            data, num_replicas=ddp.world_size, rank=ddp.rank, shuffle=True, seed=config.seed
        )
    else:
        sampler = RandomSampler(data, generator=generator)
    # with windows_per_image K, each item is K windows of one photo: batch / K photos a step
    per_item = getattr(data, "windows_per_image", 1)
    loader = DataLoader(
        data,
        batch_size=max(1, config.batch // per_item),
        sampler=sampler,
        num_workers=config.workers,
        multiprocessing_context=worker_context(data, config.workers),
        pin_memory=ddp.device.type == "cuda",
        drop_last=False,
        generator=generator,
    )
    return loader, generator


def validation_loader(
    data: Dataset, config: TrainConfig, ddp: DDPContext, stacks: bool = False
) -> DataLoader:
    """Batches of ``data`` in order; under DDP every ``world_size``-th item from ``rank``.
    With ``crop_size`` the items are whole images of any size: one per batch; ``stacks``:
    items of ``val_windows`` windows each, as many per batch as make about ``batch``
    windows."""
    if ddp.distributed:
        n = len(data)  # type: ignore[arg-type]
        data = Subset(data, list(range(ddp.rank, n, ddp.world_size)))
    if stacks:
        batch = max(1, config.batch // max(1, config.val_windows))
    else:
        batch = 1 if config.crop_size else config.batch
    return DataLoader(
        data,
        batch_size=batch,
        shuffle=False,
        num_workers=config.workers,
        multiprocessing_context=worker_context(data, config.workers),
        pin_memory=ddp.device.type == "cuda",
    )


@dataclass
class ValidationPasses:
    """The validation passes of a run.

    ``per_epoch`` gives the score of every epoch (best epoch, early stopping): the sample of
    windows when ``sampled``, else every photo (tiled with ``crop_size``). ``full`` is the
    tiled pass over every photo that a sampled run adds every ``val_full_every`` epochs and
    at the end."""

    per_epoch: DataLoader | None
    full: DataLoader | None
    sampled: bool
    photos: int

    @classmethod
    def build(cls, data: Dataset | None, config: TrainConfig, ddp: DDPContext) -> ValidationPasses:
        if data is None:
            return cls(None, None, False, 0)
        full = validation_loader(data, config, ddp)
        photos = len(data)  # type: ignore[arg-type]
        if not config.crop_size or not config.val_windows:
            return cls(full, None, False, photos)
        windows = ValidationWindows(data, config.crop_size, config.val_windows, config.seed)
        return cls(validation_loader(windows, config, ddp, stacks=True), full, True, photos)
