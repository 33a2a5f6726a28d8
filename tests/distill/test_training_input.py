"""Issue 23: the decoded-image cache trains the same weights, validation on a fixed sample
of windows with the full tiled pass at the end or every K epochs, progress lines in logs."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from boxes2pixels.config import TrainConfig
from boxes2pixels.data.cache import CACHE_SUBDIR
from boxes2pixels.distill import train
from boxes2pixels.distill.progress import EpochProgress, format_duration
from boxes2pixels.errors import ConfigError


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_square_dataset: Any) -> Path:
    return make_square_dataset(tmp_path_factory.mktemp("sq") / "data", n_train=4, n_val=2, size=70)


def _config(data: Path, out: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "data": data / "data.yaml", "masks": data / "masks", "out": out, "epochs": 2,
        "imgsz": 28, "crop_size": 28, "batch": 2, "workers": 0, "device": "cpu",
        "precision": "fp32", "progress": False, "backbone_init": "random",
        "backbone_mode": "full", "seed": 3, "decoder_channels": 16, "val_windows": 2,
    }  # fmt: skip
    values.update(overrides)
    return TrainConfig.load(**values)


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "best" / "model.safetensors")


DETERMINISTIC = ("loss", "loss_binary", "loss_fine", "val_anomaly_miou", "val_full_anomaly_miou")


@pytest.mark.parametrize("cache", ["disk", "ram"])
def test_training_with_the_cache_is_identical_to_without(
    data: Path, tmp_path: Path, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("B2P_CACHE_DIR", raising=False)  # the default root: RUN_DIR/.cache
    plain = train(_config(data, tmp_path / "plain", windows_per_image=2))
    cached = train(_config(data, tmp_path / "cached", windows_per_image=2, cache=cache))
    for a, b in zip(plain.history, cached.history, strict=True):
        assert all(a[k] == b[k] for k in DETERMINISTIC), (a, b)
    wa, wb = _weights(tmp_path / "plain"), _weights(tmp_path / "cached")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    entries = list((tmp_path / "cached" / ".cache" / CACHE_SUBDIR).rglob("*.npy"))
    assert bool(entries) == (cache == "disk")
    # K windows per photo: an epoch visits each photo once, K× the windows and steps
    assert plain.history[0]["steps"] == 4


def test_sampled_validation_scores_every_epoch_and_tiles_in_full_at_the_end(
    data: Path, tmp_path: Path
) -> None:
    result = train(_config(data, tmp_path / "run", epochs=3, val_full_every=2))
    rows = _rows(tmp_path / "run")
    assert [bool(r["val_full_anomaly_miou"]) for r in rows] == [False, True, True]
    assert all(r["val_anomaly_miou"] and float(r["val_time_s"]) >= 0 for r in rows)
    assert result.history[0]["val_full_miou"] is None
    # --val-windows 0: every epoch tiled in full, as before; no val_full_* columns
    train(_config(data, tmp_path / "full", epochs=1, val_windows=0))
    row = _rows(tmp_path / "full")[0]
    assert "val_full_miou" not in row and row["val_anomaly_miou"]


def test_windows_per_image_needs_crop_size_and_a_fitting_batch(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="windows_per_image applies to window training"):
        _config(data, tmp_path, crop_size=0, windows_per_image=2)
    with pytest.raises(ConfigError, match="multiple of windows_per_image"):
        _config(data, tmp_path, batch=3, windows_per_image=2)


def test_progress_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    progress = EpochProgress(True, log_every=2, interactive=False)
    task = progress.start(0, 5, 5)
    for _ in range(5):
        progress.advance(task, 0.5, 0, windows=8)
    progress.note("epoch 1: full tiled validation of 3 photo(s)")
    progress.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4  # steps 2, 4 and 5, then the note
    assert lines[0].startswith("epoch 1/5: step 2/5, loss 0.5000, ")
    assert "windows/s, ETA" in lines[0] and lines[2].startswith("epoch 1/5: step 5/5")
    assert format_duration(3723) == "1h02m03s" and format_duration(59.6) == "1m00s"
    quiet = EpochProgress(False, interactive=False)
    quiet.advance(quiet.start(0, 1, 1), 1.0, 0, windows=1)
    assert capsys.readouterr().err == ""


def test_b2p_train_cache_flags_are_real(data: Path, tmp_path: Path, invoke_cli: Any) -> None:
    out, root = tmp_path / "run", tmp_path / "cache-root"
    code, output = invoke_cli(
        "train", str(data / "data.yaml"), "--masks", str(data / "masks"), "--out", str(out),
        "--epochs", "1", "--imgsz", "28", "--crop-size", "28", "--batch", "2",
        "--backbone-init", "random", "--backbone-mode", "full", "--device", "cpu",
        "--precision", "fp32", "--workers", "0", "--cache", "disk", "--cache-dir", str(root),
        "--windows-per-image", "2", "--val-windows", "2", "--val-full-every", "1",
        "--log-every", "1",
    )  # fmt: skip
    assert code == 0, output
    assert "decoded-image cache disk" in output and "2 windows per decoded photo" in output
    assert list((root / CACHE_SUBDIR).rglob("*.npy"))
    row = _rows(out)[0]
    assert row["val_full_anomaly_miou"] and not math.isnan(float(row["val_full_anomaly_miou"]))
    code, output = invoke_cli("train", "--help")
    for flag in ("--cache", "--cache-dir", "--windows-per-image", "--val-windows",
                 "--val-full-every", "--log-every"):  # fmt: skip
        assert flag in output
