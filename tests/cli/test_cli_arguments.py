"""The CLI is a thin layer: each command passes its flags to the Python API unchanged (as
huggingface_hub's CLI tests check), and prints what the API says ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import boxes2pixels.evaluate as evaluate_module
import boxes2pixels.predict as predict_module
from boxes2pixels.inference import InferencePlan
from boxes2pixels.predict import PredictSummary


class Stop(Exception):
    """Raised by a fake API function once it has recorded its arguments."""


def test_predict_flags_reach_predict_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke_cli
) -> None:
    seen: dict[str, Any] = {}

    def fake(model: Any, source: Any, out: Any, **kwargs: Any) -> PredictSummary:
        seen.update(model=model, source=source, out=out, **kwargs)
        plan = InferencePlan("torch", "cpu", "bf16", "auto: AVX512-bf16", True, 518, 0.5,
                             None, "asked")  # fmt: skip
        return PredictSummary(out=Path(out), plan=plan, windows=12)

    monkeypatch.setattr(predict_module, "predict_files", fake)
    code, output = invoke_cli(
        "predict", "runs/exp1", "photos", "--out", tmp_path / "pred", "--tile", "--tile-size",
        "518", "--tile-overlap", "0.5", "--batch", "3", "--device", "cpu", "--precision",
        "bf16", "--runtime", "torch", "--overlay", "--json", "--palette", "--overwrite",
    )  # fmt: skip
    assert code == 0, output
    assert seen["model"] == "runs/exp1" and str(seen["source"]) == "photos"
    assert seen["out"] == tmp_path / "pred"
    assert (seen["tile"], seen["tile_size"], seen["tile_overlap"]) == (True, 518, 0.5)
    assert (seen["batch_size"], seen["device"], seen["precision"]) == (3, "cpu", "bf16")
    assert (seen["runtime"], seen["overlay"], seen["json"], seen["palette"]) == (
        "torch", True, True, True,
    )  # fmt: skip
    assert seen["imgsz"] is None and seen["revision"] is None and seen["overwrite"] is True
    assert "ran: torch on cpu, bf16 (auto: AVX512-bf16), tiled, 518 px windows" in output


def test_evaluate_flags_reach_evaluate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke_cli
) -> None:
    seen: dict[str, Any] = {}

    def fake(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(evaluate_module, "evaluate", fake)
    masks = tmp_path / "gt"
    masks.mkdir()
    with pytest.raises(Stop):
        invoke_cli("evaluate", "runs/exp1", tmp_path / "data.yaml", "--masks", masks, "--split",
                   "test", "--imgsz", "322", "--precision", "bf16", "--device", "cpu",
                   "--batch", "2")  # fmt: skip
    assert seen["model"] == "runs/exp1" and Path(seen["masks"]) == masks
    assert Path(seen["data_yaml"]) == tmp_path / "data.yaml" and seen["batch_size"] == 2
    assert (seen["split"], seen["imgsz"], seen["precision"], seen["device"]) == (
        "test", 322, "bf16", "cpu",
    )  # fmt: skip
