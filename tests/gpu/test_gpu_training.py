"""Training on CUDA: bf16 and fp16 with a gradient scaler, EMA, resume."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from boxes2pixels.config import TrainConfig
from boxes2pixels.distill import train


def _config(data: Path, out: Path, precision: str, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "data": data / "data.yaml",
        "masks": data / "masks",
        "out": out,
        "epochs": 2,
        "imgsz": 112,
        "batch": 4,
        "workers": 0,
        "device": "cuda",
        "precision": precision,
        "progress": False,
        "backbone_init": "random",
        "backbone_mode": "full",
        "correction_warmup": 0,
        "seed": 1,
    }
    values.update(overrides)
    return TrainConfig.load(**values)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "auto"])
def test_train_resume_and_ema_on_cuda(
    cuda: torch.device, make_square_dataset: Any, tmp_path: Path, precision: str
) -> None:
    data = make_square_dataset(tmp_path / "data", n_train=8, n_val=2, size=112)
    cfg = _config(data, tmp_path / "run", precision)
    first = train(cfg)
    assert first.epochs_completed == 2
    assert all(math.isfinite(row["loss"]) for row in first.history)
    ckpt = torch.load(first.last_checkpoint, weights_only=True)
    # fp16 trains with a live gradient scaler; bf16 needs none
    assert bool(ckpt["scaler"]) is (precision == "fp16")
    model, ema = ckpt["model"], ckpt["ema"]["module"]
    changed = [
        k for k in model if model[k].is_floating_point() and not torch.equal(model[k], ema[k])
    ]
    assert changed, "the EMA weights must differ from the trained weights"
    assert (first.best_dir / "model.safetensors").is_file()

    resumed = train(cfg.model_copy(update={"resume": True, "epochs": 3}))
    assert resumed.epochs_completed == 3
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    after = torch.load(resumed.last_checkpoint, weights_only=True)
    assert after["step"] > ckpt["step"]
