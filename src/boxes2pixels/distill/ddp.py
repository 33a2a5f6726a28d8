"""The processes of a training run: one, or several under ``torchrun`` (DDP).

:class:`DDPContext` joins the process group (gloo on CPU, nccl on CUDA) when ``WORLD_SIZE``
is above 1 and offers the few collective operations the training loop needs. With one
process every operation returns its input, so the loop has no ``if distributed`` branches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..inference.precision import resolve_device


def launched_as_main() -> bool:
    """True unless ``torchrun`` started this process with a rank other than 0 (usable before
    the process group exists, e.g. to report errors and results once)."""
    return os.environ.get("RANK", "0") == "0"


@dataclass
class DDPContext:
    """This process's place in the run, and the collectives between processes.

    Attributes:
        rank: this process's rank (0 writes the files).
        world_size: number of processes.
        device: the device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _owns_group: bool = False

    @classmethod
    def join(cls, device: str) -> DDPContext:
        """Resolve ``device`` and, under ``torchrun``, join (or reuse) the process group.

        Args:
            device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; with several processes
                on CUDA each takes ``cuda:LOCAL_RANK``.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        resolved = resolve_device(device)
        if world > 1 and resolved.type == "cuda":
            resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(resolved)
        owns = False
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
            owns = True
        ctx = cls(device=resolved, _owns_group=owns)
        if dist.is_available() and dist.is_initialized():
            ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
        return ctx

    def close(self) -> None:
        """Leave the process group if :meth:`join` created it."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when training with more than one process."""
        return self.world_size > 1

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over all processes (on the CPU)."""
        if not self.distributed:
            return tensor
        comm = tensor.to(self.device) if self.device.type == "cuda" else tensor
        dist.all_reduce(comm, op=dist.ReduceOp.SUM)
        return comm.cpu()

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` is true on every process."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0.5)

    def from_main(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every process."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.broadcast(t, src=0)
        return bool(t.item() > 0.5)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier()
