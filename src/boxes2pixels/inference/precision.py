"""Devices and precisions: where a model runs, what this machine can do fast, and which
precision ``--precision auto`` picks from it. Everything that chooses a device or a
precision, or sets up autocast, goes through this module.

:func:`resolve_device` turns ``auto|cpu|cuda|cuda:N|mps`` into a ``torch.device``.

:func:`cpu_info` reads the processor's model name and instruction-set flags (``/proc/cpuinfo``
on Linux; elsewhere only PyTorch's own view, so no bf16 flag is assumed) and asks PyTorch
which vector kernels it dispatches to (``torch.backends.cpu.get_cpu_capability()``).
:func:`choose_precision` turns that into the fastest precision that stays exact enough.

The CPU rule is measured, not assumed (``benchmarks/inference_paths.py``, see
docs/performance.md): on an Intel Xeon with AMX, bf16 autocast ran the student 2.3–2.5× faster
than fp32 with ≥ 99.5 % pixel agreement on a fitted model, while int8 dynamic quantisation of
the linear layers (torch.ao and torchao) was slower than bf16 and the math attention kernel
slower than PyTorch's fused one. On an AMD EPYC (Zen 4, avx512_bf16, no AMX) bf16 ran it
1.5× faster (issue 13's table). Without bf16 matrix instructions bf16 is emulated and slower
than fp32, so fp32 stays.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import Boxes2PixelsError

FEATURES = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx512f", "avx2")
"""The instruction-set flags that matter for inference speed, as Linux names them."""


@dataclass(frozen=True)
class CpuInfo:
    """The processor as far as speed is concerned.

    Attributes:
        model: the model name (``/proc/cpuinfo`` "model name", else ``platform.processor()``).
        flags: the flags of :data:`FEATURES` the processor reports.
        capability: PyTorch's vector kernel level (``AVX512``, ``AVX2``, ``DEFAULT``, ...).
        cores: logical CPUs available to this process.
    """

    model: str
    flags: frozenset[str]
    capability: str
    cores: int

    @property
    def bf16_matrix(self) -> bool:
        """True with bf16 matrix instructions (AMX-bf16 tiles or AVX512-bf16 dot products)."""
        return bool({"amx_bf16", "avx512_bf16"} & self.flags)

    def describe(self) -> str:
        """One line: model, cores, PyTorch's kernel level and the detected flags."""
        flags = ", ".join(f for f in FEATURES if f in self.flags) or "none of " + ", ".join(
            FEATURES
        )
        return f"{self.model} ({self.cores} CPUs; torch kernels {self.capability}; {flags})"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """Model name and the :data:`FEATURES` flags from the text of ``/proc/cpuinfo``."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split()) & frozenset(FEATURES)
    return model, flags


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (read once per process)."""
    model, flags = "", frozenset[str]()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        with contextlib.suppress(OSError):
            model, flags = parse_cpuinfo(cpuinfo.read_text(encoding="utf-8", errors="replace"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return CpuInfo(
        model=model or platform.processor() or platform.machine() or "unknown CPU",
        flags=flags,
        capability=str(torch.backends.cpu.get_cpu_capability()),
        cores=int(cores or 1),
    )


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``--precision auto`` runs with on a device, and why.

    Attributes:
        precision: ``fp32``, ``bf16`` or ``fp16``.
        reason: the detected feature and the measurement behind the choice.
    """

    precision: str
    reason: str


def choose_precision(device: torch.device, info: CpuInfo | None = None) -> PrecisionChoice:
    """The fastest precision that stays exact enough on ``device``.

    CUDA: bf16 where the GPU computes it natively (Ampere and later), else fp16 (with a
    gradient scaler in training). CPU: bf16 with bf16 matrix instructions (AMX or
    AVX512-bf16), else fp32. Other devices (MPS): fp32, the only path measured there.

    Args:
        device: where the model runs.
        info: the CPU to decide for (default: this machine's :func:`cpu_info`).
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return PrecisionChoice("bf16", "CUDA GPU with native bf16")
        return PrecisionChoice("fp16", "CUDA GPU without native bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"{device.type}: only fp32 has been measured")
    info = info or cpu_info()
    if "amx_bf16" in info.flags:
        return PrecisionChoice("bf16", "AMX bf16 tiles (measured: 2.5× fp32 for the student)")
    if "avx512_bf16" in info.flags:
        return PrecisionChoice("bf16", "AVX512-bf16 (measured: 1.5× fp32 for the student)")
    return PrecisionChoice("fp32", "no bf16 matrix instructions (bf16 would be emulated)")


def machine_summary(device: torch.device) -> list[str]:
    """Lines for ``b2p profile``: the CPU and its features, the GPU if any, ``auto``'s pick."""
    lines = [f"CPU: {cpu_info().describe()}"]
    if device.type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}")
    choice = choose_precision(device)
    lines.append(f"--precision auto on {device}: {choice.precision} ({choice.reason})")
    return lines


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; otherwise ``cpu``, ``cuda``, ``cuda:N``, ``mps``.

    Raises:
        Boxes2PixelsError: the requested device is not available on this machine.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise Boxes2PixelsError(
            f"unknown device '{spec}' (use auto, cpu, cuda, cuda:N or mps)"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Boxes2PixelsError(f"device '{spec}' requested but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise Boxes2PixelsError(f"device '{spec}' requested but MPS is not available here")
    return device


_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str) -> torch.dtype | None:
    """Autocast dtype of ``fp32`` (``None``: plain fp32), ``bf16`` or ``fp16``.

    Raises:
        Boxes2PixelsError: an unknown name (``auto`` must be resolved first).
    """
    if precision.lower() not in _DTYPES:
        raise Boxes2PixelsError(f"unknown precision '{precision}' (use auto, fp32, bf16 or fp16)")
    return _DTYPES[precision.lower()]


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``auto|fp32|bf16|fp16`` on ``device`` (``None`` means plain fp32).

    ``auto``: :func:`choose_precision` (bf16 on GPUs that compute it natively, else fp16;
    bf16 on CPUs with bf16 matrix instructions; fp32 otherwise).
    """
    if precision.lower() == "auto":
        precision = choose_precision(device).precision
    return precision_dtype(precision)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision at ``dtype`` on ``device`` (nothing for ``None``: plain fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
