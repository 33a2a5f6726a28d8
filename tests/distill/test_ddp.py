"""`b2p train` under torchrun: two CPU processes with gloo, DDP for a couple of steps."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels.cli.main import app


def _b2p_script() -> str:
    found = shutil.which("b2p") or str(Path(sys.executable).with_name("b2p"))
    if not Path(found).is_file():
        pytest.fail("the b2p console script is not installed next to this Python")
    return found


@pytest.mark.slow
def test_two_process_gloo_training_writes_the_run_directory_once(
    tmp_path: Path, make_square_dataset: Any
) -> None:
    data = make_square_dataset(tmp_path / "data", n_train=4, n_val=2)
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        _b2p_script(), "train", str(data / "data.yaml"), "--masks", str(data / "masks"),
        "--out", str(out), "--epochs", "1", "--imgsz", "56", "--batch", "1",
        "--backbone-init", "random", "--backbone-mode", "full", "--device", "cpu",
        "--precision", "fp32", "--workers", "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # only rank 0 reports and writes
    assert log.count("done: 1 epochs") == 1, log[-4000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "best", "config.yaml", "last.ckpt", "metrics.csv"
    ]  # fmt: skip
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    # 4 images shared by 2 processes at batch 1: 2 steps each (a single process would take 4)
    assert rows[0]["steps"] == "2"
    assert rows[0]["val_miou"] != ""  # validation gathered from both ranks
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 2 and ckpt["epoch"] == 1
    assert (out / "best" / "model.safetensors").is_file()

    # resuming the two-process run with one process is refused, naming both numbers
    resumed = CliRunner().invoke(app, [*cmd[7:], "--resume"])
    assert resumed.exit_code == 1, resumed.output
    message = " ".join(resumed.output.split())
    assert "trained with 2 process(es) and cannot be resumed with 1" in message
