"""User mistakes found by a second user-style break test: each is a clear message and exit
code 1, never a traceback, a file predict cannot use, or a believable score of zero."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boxes2pixels.config import TrainConfig
from boxes2pixels.errors import ConfigError


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_out_of_range_seed_is_a_cli_error(invoke_cli, tmp_path: Path, seed: str) -> None:
    # numpy refused -1 deep in the data loader and torch overflowed on 2**64 (tracebacks)
    code, out = invoke_cli("synth", tmp_path / "ds", "--train", "1", "--val", "0",
                           "--test", "0", "--size", "64x48", "--seed", seed)  # fmt: skip
    assert code == 2 and "--seed" in out
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("seed", [-5, 2**64])
def test_out_of_range_seed_is_a_config_error(seed: int, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="seed"):
        TrainConfig.load(seed=seed)
    monkeypatch.setenv("B2P_SEED", str(seed))
    with pytest.raises(ConfigError, match="seed"):
        TrainConfig.load()


def test_export_out_must_be_an_onnx_file(invoke_cli, make_student, tmp_path: Path) -> None:
    student = make_student(
        num_classes=3, backbone="test_vit", backbone_mode="full", decoder_channels=16, imgsz=28
    )
    student.save_pretrained(tmp_path / "run" / "best")
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    code, out = invoke_cli("export", tmp_path / "run", "--out", notes)
    assert code == 1 and "must end in .onnx" in out and "notes.onnx" in out
    assert notes.read_text() == "precious"  # was overwritten with an ONNX graph
    folder = tmp_path / "exports"
    folder.mkdir()
    code, out = invoke_cli("export", tmp_path / "run", "--out", folder)  # was IsADirectoryError
    assert code == 1 and "is a folder" in out and "model.onnx" in out
    assert list(folder.iterdir()) == []


def test_evaluate_pred_folder_without_any_prediction_is_an_error(
    invoke_cli, tmp_path: Path
) -> None:
    gt = tmp_path / "gt" / "test"
    gt.mkdir(parents=True)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    for name in ("a.png", "b.png"):
        Image.fromarray(mask).save(gt / name)
    wrong = tmp_path / "pred"
    (wrong / "val").mkdir(parents=True)
    Image.fromarray(mask).save(wrong / "val" / "a.png")  # another split's predictions
    code, out = invoke_cli("evaluate", "--pred", wrong, "--masks", tmp_path / "gt")
    assert code == 1 and "none of the 2 ground-truth masks" in out  # was exit 0, scores 0
    # one prediction of two is still scored, the other reported as missing
    (wrong / "test").mkdir()
    Image.fromarray(mask).save(wrong / "test" / "a.png")
    code, out = invoke_cli("evaluate", "--pred", wrong, "--masks", tmp_path / "gt")
    assert code == 0 and "1 ground-truth masks had no prediction" in out
