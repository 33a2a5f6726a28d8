"""Student and SegFormer-B2 latency on CUDA at batch 1 and 16, fp32, bf16 and compiled."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
import torch

from boxes2pixels.baselines import BaselineModel
from boxes2pixels.measure import time_interleaved
from boxes2pixels.profile import default_student

HEADS = ("fine",)


def _call(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> Any:
    def call() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            return model(x, heads=HEADS)["fine"]

    return call


@pytest.mark.parametrize("batch", [1, 16])
def test_student_and_segformer_latency(
    cuda: torch.device, gpu_report: dict[str, Any], batch: int
) -> None:
    student = default_student(imgsz=518).eval().to(cuda)
    segformer = BaselineModel("segformer", num_classes=3, encoder_init="random").eval().to(cuda)
    xs, xf = (
        torch.randn(batch, 3, 518, 518, device=cuda),
        torch.randn(batch, 3, 512, 512, device=cuda),
    )
    compiled = torch.compile(student)
    calls = {
        "student fp32": _call(student, xs, None),
        "student bf16": _call(student, xs, torch.bfloat16),
        "student bf16 compiled": _call(compiled, xs, torch.bfloat16),
        "segformer fp32": _call(segformer, xf, None),
        "segformer bf16": _call(segformer, xf, torch.bfloat16),
    }
    times = time_interleaved(list(calls.values()), repeats=20, warmup=5, device=cuda)
    ms = {name: statistics.median(t) for name, t in zip(calls, times, strict=True)}
    section = gpu_report.setdefault(f"latency batch {batch}", {})
    section.update({f"{k} ms": round(v, 3) for k, v in ms.items()})
    best_student = min(v for k, v in ms.items() if k.startswith("student"))
    best_segformer = min(v for k, v in ms.items() if k.startswith("segformer"))
    section["student / segformer (fastest paths)"] = round(best_student / best_segformer, 3)

    ref = calls["student fp32"]().float()
    for name in ("student bf16", "student bf16 compiled"):
        out = calls[name]().float()
        rel = float((out - ref).norm() / ref.norm())
        section[f"{name} relative error"] = round(rel, 5)
        assert rel < 0.05, f"{name} drifts from fp32 by {rel:.3f}"
    assert all(v > 0 for v in ms.values())
