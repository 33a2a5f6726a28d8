"""Exponential moving average (EMA) of a model's weights with a warm-up of the decay."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a ``DistributedDataParallel`` (or similar) wrapper."""
    return (
        model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    )


class ModelEMA:
    """A smoothed copy of a model, used for validation, checkpoints and inference.

    After each optimiser step, ``update`` moves every floating-point parameter of the copy
    towards the model's: ``ema = d·ema + (1 − d)·param`` with
    ``d = min(decay, (1 + t) / (10 + t))`` at update ``t`` when ``warmup`` is on (so the random
    start is forgotten quickly in short runs), ``d = decay`` otherwise. Frozen parameters
    (``requires_grad=False``) are left alone; buffers (BatchNorm running statistics and
    counters) are copied from the model.

    Args:
        model: the model to follow (a DDP wrapper is unwrapped).
        decay: the final decay.
        warmup: ramp the decay up from 0.1 as described above.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        # ``requires_grad`` flags stay as in the model (a saved copy then reports the same
        # trainable-parameter count); the copy is only ever run under ``torch.no_grad``.
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next ``update`` will use."""
        if not self.warmup:
            return self.decay
        t = self.updates
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        d = self.current_decay()
        src = unwrap(model)
        ema_params = list(self.module.parameters())
        src_params = list(src.parameters())
        if len(ema_params) != len(src_params):
            raise ValueError("the EMA copy and the model have different parameters")
        for e, p in zip(ema_params, src_params, strict=True):
            # frozen parameters never change, so their average is the parameter itself
            if p.requires_grad and p.dtype.is_floating_point:
                e.lerp_(p.detach().to(e.dtype), 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), src.buffers(), strict=True):
            ema_b.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Weights of the average and the update counter."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
