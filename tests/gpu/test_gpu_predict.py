"""`b2p predict` of full-size drone photos on CUDA: the precision ``auto`` picks, tiling, memory.

A student is trained briefly on CUDA (so its argmax has real decision boundaries: a random
student's near-tied logits make any agreement meaningless), then two generated 5280×2970
photos are predicted tiled through the command line (at the batch the plan picks for a GPU),
once with ``--precision auto`` and once with ``fp32``; the label maps are compared pixel by
pixel.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.config import TrainConfig
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.data.synth import SynthConfig, generate_dataset, render_scene
from boxes2pixels.distill import train

PHOTO = (5280, 2970)


@pytest.fixture(scope="module")
def trained_run(cuda: torch.device, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student trained for a few epochs on CUDA on generated blades (their exact masks)."""
    root = tmp_path_factory.mktemp("predict")
    generate_dataset(root / "ds", train=48, val=8, test=0, seed=3)
    cfg = TrainConfig.load(
        data=root / "ds" / "data.yaml", masks=root / "ds" / "gt_masks", out=root / "run",
        epochs=20, imgsz=518, batch=8, workers=0, device=str(cuda), precision="auto",
        progress=False, backbone_init="random", backbone_mode="full", correction_warmup=0,
        seed=1,
    )  # fmt: skip
    return train(cfg).best_dir.parent


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated 5280×2970 blade photos with several defects each."""
    folder = tmp_path_factory.mktemp("photos")
    cfg = SynthConfig(defect_free_fraction=0.0, defect_scale=2.0, max_defects=6)
    for seed in (7, 8):
        image = render_scene(np.random.default_rng(seed), PHOTO, cfg).image
        cv2.imwrite(str(folder / f"blade_{seed}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def test_predict_full_size_photos_on_cuda(
    cuda: torch.device, trained_run: Path, photos: Path, tmp_path: Path, gpu_report: dict[str, Any]
) -> None:
    section = gpu_report.setdefault("predict 5280x2970 tiled", {})
    labels: dict[str, list[np.ndarray]] = {}
    for precision in ("auto", "fp32"):
        out = tmp_path / precision
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = CliRunner().invoke(app, [
            "predict", str(trained_run), str(photos), "--out", str(out), "--tile",
            "--device", str(cuda), "--precision", precision,
        ])  # fmt: skip
        seconds = time.perf_counter() - start
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "b2p_predict.json").read_text(encoding="utf-8"))
        plan = summary["settings"]["ran"]
        assert plan["device"].startswith("cuda") and plan["tiled"], plan
        assert plan["batch_size"] == 16, plan  # the GPU's default
        if precision == "auto":
            assert plan["precision"] == "bf16", plan
            assert "CUDA" in plan["precision_reason"], plan
        section[f"{plan['precision']} s for 2 photos (model load included)"] = round(seconds, 2)
        section[f"{plan['precision']} peak GiB"] = round(
            torch.cuda.max_memory_allocated() / 2**30, 2
        )
        masks = sorted(out.glob("*.png"))
        assert [p.stem for p in masks] == ["blade_7", "blade_8"]
        labels[precision] = [read_mask(p) for p in masks]
        assert all(m.shape == (PHOTO[1], PHOTO[0]) for m in labels[precision])
    section["windows per photo"] = plan["windows"] // 2
    agree = float(np.mean([np.mean(a == b) for a, b in zip(*labels.values(), strict=True)]))
    defect = [(a > 0, b > 0) for a, b in zip(*labels.values(), strict=True)]
    inter = sum(int((a & b).sum()) for a, b in defect)
    union = sum(int((a | b).sum()) for a, b in defect)
    section["pixel agreement auto vs fp32"] = round(agree, 5)
    section["defect IoU auto vs fp32"] = round(inter / max(union, 1), 4)
    share = float(np.mean([np.mean(b > 0) for b in labels["fp32"]]))
    section["defect share of pixels (fp32)"] = round(share, 4)
    assert 0 < share < 0.5, (
        f"the trained student calls {share:.1%} defect: too degenerate to compare"
    )
    assert agree >= 0.995, f"bf16 labels agree with fp32 on only {agree:.4f} of the pixels"
