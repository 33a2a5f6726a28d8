"""Choosing the torch device and precision from user-facing names."""

from __future__ import annotations

import torch

from . import cpu
from .errors import Boxes2PixelsError


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


def cpu_supports_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AMX-bf16 or AVX512-bf16)."""
    return cpu.cpu_info().bf16_matrix


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``auto|fp32|bf16|fp16`` on ``device`` (``None`` means plain fp32).

    ``auto``: :func:`boxes2pixels.cpu.choose_precision` (bf16 on GPUs that compute it
    natively, else fp16; bf16 on CPUs with bf16 matrix instructions; fp32 otherwise).
    """
    precision = precision.lower()
    if precision == "auto":
        precision = cpu.choose_precision(device).precision
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in table:
        raise Boxes2PixelsError(f"unknown precision '{precision}' (use auto, fp32, bf16 or fp16)")
    return table[precision]
