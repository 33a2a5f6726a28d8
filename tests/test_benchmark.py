"""The benchmark suite: run parsing, Table 1 summaries, panels, an end-to-end run."""

from __future__ import annotations

import pytest

from boxes2pixels.benchmark import (
    SUITES,
    RunResult,
    parse_runs,
    run_benchmark,
    write_panels,
    write_summary,
)
from boxes2pixels.errors import Boxes2PixelsError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from boxes2pixels.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    return generate_dataset(root / "ds", train=2, val=1, test=2, size=(96, 64), seed=3)


def test_parse_runs() -> None:
    assert parse_runs("final") == ["student", "unet", "deeplabv3", "segformer"]
    assert parse_runs("ablations")[1:] == [
        "student-no-sc",
        "student-no-binary",
        "student-no-detail",
    ]
    assert len(parse_runs("all")) == 7 == len(set(SUITES["all"]))
    assert parse_runs("final", "unet, student,unet") == ["unet", "student"]
    with pytest.raises(Boxes2PixelsError, match="unknown suite 'best'"):
        parse_runs("best")
    with pytest.raises(Boxes2PixelsError, match="unknown run"):
        parse_runs("final", "student,fcn")


def _fake_run(name: str, pred_dir, miou: float) -> RunResult:
    scores = {
        "miou": miou,
        "anomaly_miou": 0.25,
        "anomaly_f1": 0.4,
        "binary_iou": None,
        "binary_f1": 0.3,
        "binary_precision": 0.9,
        "binary_recall": 0.125,
        "per_class": {"background": {"iou": 0.9}, "dirt": {"iou": 0.3}, "damage": {"iou": 0.2}},
    }
    return RunResult(
        name,
        name.upper(),
        scores,
        2_000_000,
        500_000,
        3,
        2,
        12.0,
        "encoder random",
        pred_dir,
        pred_dir,
    )


def test_summary_files_have_table_1_layout(tmp_path) -> None:
    runs = [_fake_run("student", tmp_path, 0.5), _fake_run("unet", tmp_path, 0.75)]
    csv_path, md_path = write_summary(tmp_path, runs, ["background", "dirt", "damage"], ["a note"])
    md = md_path.read_text()
    assert (
        "| Model | mIoU | anomaly mIoU | anomaly F1 | binary IoU | binary precision "
        "| binary recall | IoU dirt | IoU damage |" in md
    )
    assert "| STUDENT | 0.5000 | 0.2500 | 0.4000 | – | 0.9000 | 0.1250 | 0.3000 | 0.2000 |" in md
    assert "- a note" in md
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    assert [r["run"] for r in rows] == ["student", "unet"]
    assert float(rows[1]["miou"]) == 0.75
    assert rows[0]["binary_iou"] == ""
    assert float(rows[0]["iou_damage"]) == 0.2


def test_panels_one_row_per_image(tmp_path, synth) -> None:
    from boxes2pixels.data.labelmaps import read_mask, write_mask
    from boxes2pixels.data.yolo import load_data_yaml
    from boxes2pixels.io import read_image

    ds = load_data_yaml(synth)
    gt = synth.parent / "gt_masks"
    pred = tmp_path / "pred"
    for p in ds.images("test"):
        name = ds.mask_name(p, "test")
        write_mask(pred / name, read_mask(gt / "test" / name))
    runs = [_fake_run("a", pred, 0.1), _fake_run("b", tmp_path / "missing", 0.1)]
    paths = write_panels(tmp_path, runs, ds, "test", gt, ["background", "dirt", "damage"], limit=5)
    assert len(paths) == 2
    image = read_image(paths[0])
    # image, ground truth and two runs side by side: wider than four 96-px tiles
    assert image.shape[1] >= 4 * 96
    assert (
        write_panels(tmp_path, runs, ds, "test", gt, ["background", "dirt", "damage"], limit=0)
        == []
    )


@pytest.mark.slow
def test_run_benchmark_end_to_end_and_resume(tmp_path, synth, monkeypatch) -> None:
    from boxes2pixels.benchmark import suite
    from boxes2pixels.config import TrainConfig

    base = TrainConfig(
        backbone="test_vit",
        imgsz=128,
        backbone_mode="full",
        decoder_channels=32,
        workers=0,
        precision="fp32",
        device="cpu",
        patience=0,
    )
    gt = synth.parent / "gt_masks"
    kwargs = dict(
        runs="student,unet",
        epochs=1,
        imgsz=128,
        batch=2,
        backbone_init="random",
        encoder_init="random",
        config=base,
        progress=False,
        panels=2,
    )
    out = tmp_path / "bench"
    result = run_benchmark(synth, gt, gt, out, **kwargs)
    assert [r.name for r in result.runs] == ["student", "unet"]
    assert result.skipped == []
    for run in result.runs:
        assert (out / "runs" / run.name / "result.json").is_file()
        assert (run.model_dir / "config.json").is_file()
        assert len(list(run.pred_dir.glob("*.png"))) == 2
        assert 0.0 <= run.scores["miou"] <= 1.0
    assert result.runs[1].params_trainable == result.runs[1].params_total
    md = result.summary_md.read_text()
    assert "| Boxes2Pixels |" in md and "| U-Net (ResNet34) |" in md
    assert "Randomly initialised weights" in md
    assert len(result.panels) == 2

    def no_training(*args, **kw):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(suite, "_run_one", no_training)
    again = run_benchmark(synth, gt, gt, out, **kwargs)
    assert again.skipped == ["student", "unet"]
    assert [r.scores for r in again.runs] == [r.scores for r in result.runs]
    with pytest.raises(Boxes2PixelsError, match=r"epochs 1 → 2"):
        run_benchmark(synth, gt, gt, out, **{**kwargs, "epochs": 2})
