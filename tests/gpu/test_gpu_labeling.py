"""SAM and MobileSAM labeling on CUDA (random weights in the official checkpoint layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.data.synth import generate_dataset
from boxes2pixels.label import label_dataset
from boxes2pixels.teachers import load_teacher


@pytest.fixture(scope="module")
def blades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 generated 640×360 blade photos, about 40 % with boxes."""
    root = tmp_path_factory.mktemp("blades")
    generate_dataset(root, train=24, val=0, test=0, seed=0)
    return root


@pytest.mark.parametrize(("name", "model_type"), [("mobile-sam", "vit_t"), ("sam", "vit_b")])
def test_label_on_cuda(
    cuda: torch.device,
    sam_checkpoint: Any,
    blades: Path,
    tmp_path: Path,
    gpu_report: dict[str, Any],
    name: str,
    model_type: str,
) -> None:
    ckpt = str(sam_checkpoint(model_type))
    section = gpu_report.setdefault(f"label {name}", {})
    masks: dict[str, list[np.ndarray]] = {}
    for precision in ("fp32", "auto"):
        teacher = load_teacher(name, checkpoint=ckpt, device="cuda", precision=precision)
        assert next(teacher.predictor.model.parameters()).device.type == "cuda"
        out = tmp_path / precision
        summary = label_dataset(
            blades / "data.yaml", teacher, out, splits=["train"], progress=False
        )
        assert summary.labelled == 24 and summary.boxes > 0
        section[f"images_per_s {teacher.precision}"] = round(24 / summary.wall_time_s, 2)
        masks[precision] = [read_mask(p) for p in sorted((out / "train").glob("*.png"))]
    agree = np.mean([np.mean(a == b) for a, b in zip(masks["fp32"], masks["auto"], strict=True)])
    section["pixel_agreement_auto_vs_fp32 (random weights)"] = round(float(agree), 5)
    assert len(masks["fp32"]) == len(masks["auto"]) == 24
