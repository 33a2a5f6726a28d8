"""Measuring a model: parameter and multiply-accumulate counts, and wall-clock timing.

The primitives behind ``b2p profile`` (:mod:`boxes2pixels.profile`): counts use
:class:`torch.utils.flop_counter.FlopCounterMode`; timings synchronise CUDA after each call
and can interleave several models so that changes of machine load affect them alike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .errors import Boxes2PixelsError


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def count_gmacs(model: nn.Module | Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
    """Multiply-accumulates per image (billions) of one forward pass on batch ``x``.

    Uses :class:`torch.utils.flop_counter.FlopCounterMode`, which counts matrix products,
    convolutions and attention; MACs are half its FLOPs. Element-wise work is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / 2 / x.shape[0] / 1e9


def precision_context(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager[Any]:
    """Autocast context for ``fp32`` (none), ``bf16`` or ``fp16`` on ``device``."""
    from .inference.precision import autocast, resolve_precision

    return autocast(device, resolve_precision(precision, device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any], *, repeats: int, warmup: int, device: torch.device | None = None
) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; return each time in ms."""
    if repeats < 1:
        raise Boxes2PixelsError("repeats must be at least 1")
    device = device or torch.device("cpu")
    for _ in range(max(0, warmup)):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def time_interleaved(
    calls: Sequence[Callable[[], Any]],
    *,
    repeats: int,
    warmup: int,
    device: torch.device | None = None,
) -> list[list[float]]:
    """Time several calls round-robin (each repeat calls every one once), in ms.

    Interleaving spreads changes of machine load evenly over the models, so their ratios
    stay meaningful on a busy machine.
    """
    if repeats < 1:
        raise Boxes2PixelsError("repeats must be at least 1")
    device = device or torch.device("cpu")
    for _ in range(max(0, warmup)):
        for fn in calls:
            fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for i, fn in enumerate(calls):
            start = time.perf_counter()
            fn()
            _sync(device)
            times[i].append((time.perf_counter() - start) * 1000.0)
    return times


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (``None``: leave the setting alone)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
