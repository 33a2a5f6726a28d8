"""Baselines: smp models behind the student's interface, explicit encoder initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import segmentation_models_pytorch  # noqa: F401  (the dev extra installs it)
import torch

from boxes2pixels.baselines import (
    BASELINES,
    BaselineModel,
    baseline_spec,
    nearest_multiple,
    read_baseline_config,
)
from boxes2pixels.errors import (
    Boxes2PixelsError,
    CheckpointError,
    WeightsUnavailableError,
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(518, 512), (512, 512), (500, 512), (543, 544), (48, 32), (10, 32), (80, 64)],
    ids=["518", "exact", "up", "up-543", "tie-goes-down", "tiny", "tie-80"],
)
def test_nearest_multiple(size: int, expected: int) -> None:
    assert nearest_multiple(size, 32) == expected


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_forward_any_size_returns_fine_logits(name: str) -> None:
    model = BaselineModel(name, num_classes=3, encoder_init="random").eval()
    x = torch.randn(2, 3, 70, 45)  # not multiples of 32: padded inside, cropped back
    with torch.inference_mode():
        out = model(x)
    assert set(out) == {"fine"}
    assert out["fine"].shape == (2, 3, 70, 45)
    assert torch.isfinite(out["fine"]).all()


def test_backward_reaches_encoder() -> None:
    model = BaselineModel("unet", num_classes=2, encoder_init="random").train()
    out = model(torch.randn(2, 3, 64, 64))["fine"]
    out.mean().backward()
    grads = [p.grad for p in model.net.encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_unknown_name_and_init_are_errors() -> None:
    with pytest.raises(Boxes2PixelsError, match="unknown baseline 'pspnet'"):
        baseline_spec("pspnet")
    with pytest.raises(Boxes2PixelsError, match="unknown encoder_init"):
        BaselineModel("unet", encoder_init="pretrained")
    with pytest.raises(Boxes2PixelsError, match="only used with encoder_init='imagenet'"):
        BaselineModel("unet", encoder_init="random", encoder_weights="w.safetensors")


def test_imagenet_unavailable_raises_never_random(monkeypatch: pytest.MonkeyPatch) -> None:
    import segmentation_models_pytorch.encoders as encoders
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args: object, **kwargs: object) -> str:
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr(encoders, "hf_hub_download", offline)
    with pytest.raises(WeightsUnavailableError, match=r"smp-hub/resnet34\.imagenet"):
        BaselineModel("unet", encoder_init="imagenet")


def test_local_encoder_weights_load_in_smp_format(tmp_path) -> None:
    from safetensors.torch import save_file

    source = BaselineModel("unet", num_classes=3, encoder_init="random")
    weights = tmp_path / "model.safetensors"  # the file smp-hub/resnet34.imagenet holds
    save_file({k: v.contiguous() for k, v in source.net.encoder.state_dict().items()}, weights)
    model = BaselineModel("unet", num_classes=3, encoder_init="imagenet", encoder_weights=weights)
    for key, value in source.net.encoder.state_dict().items():
        assert torch.equal(model.net.encoder.state_dict()[key], value), key
    assert model.encoder_init == "imagenet"


def test_local_encoder_weights_that_do_not_fit(tmp_path) -> None:
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"conv1.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        BaselineModel("unet", encoder_init="imagenet", encoder_weights=bad)
    with pytest.raises(CheckpointError, match="not found"):
        BaselineModel("unet", encoder_init="imagenet", encoder_weights=tmp_path / "none.pth")


def test_save_and_load_round_trip(tmp_path) -> None:
    model = BaselineModel(
        "unet", num_classes=3, class_names=["background", "dirt", "damage"], encoder_init="random"
    ).eval()
    model.save_pretrained(tmp_path / "m", metrics={"val_miou": 0.5})
    config = read_baseline_config(tmp_path / "m")
    assert config is not None and config["name"] == "unet"
    assert config["encoder_init"] == "random"
    loaded = BaselineModel.from_pretrained(tmp_path / "m")
    assert loaded.class_names == ["background", "dirt", "damage"]
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x)["fine"], model(x)["fine"])
    assert read_baseline_config(tmp_path) is None
    with pytest.raises(CheckpointError, match=r"no baseline config\.json"):
        BaselineModel.from_pretrained(tmp_path)


def test_predict_returns_label_maps_at_image_size() -> None:
    model = BaselineModel("unet", num_classes=3, encoder_init="random", imgsz=64)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (50, 90, 3), dtype=np.uint8),
        rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
    ]
    preds = model.predict(images, batch_size=2)
    assert [p.shape for p in preds] == [(50, 90), (40, 30)]
    assert all(p.dtype == np.uint8 and p.max() < 3 for p in preds)
    # the same as argmax of forward on the letterboxed image when no resize is needed
    from boxes2pixels.student.preprocess import letterbox, normalize

    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    padded, _ = letterbox(image, 64, multiple=32)
    with torch.inference_mode():
        expected = model.eval()(normalize(padded[None], model.mean, model.std))["fine"].argmax(1)[0]
    assert np.array_equal(model.predict(image)[0], expected.numpy().astype(np.uint8))


# ------------------------------------------------------------------------ benchmark suite
from boxes2pixels.benchmark import (  # noqa: E402
    SUITES,
    RunResult,
    parse_runs,
    run_benchmark,
    write_panels,
    write_summary,
)


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
    from boxes2pixels.data.yolo import load_data_yaml
    from boxes2pixels.io import read_image, read_mask, write_mask

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
    from boxes2pixels import benchmark
    from boxes2pixels.config import TrainConfig

    base = TrainConfig(
        backbone="test_vit",
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
        imgsz=112,
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

    monkeypatch.setattr(benchmark, "_run_one", no_training)
    again = run_benchmark(synth, gt, gt, out, **kwargs)
    assert again.skipped == ["student", "unet"]
    assert [r.scores for r in again.runs] == [r.scores for r in result.runs]
    with pytest.raises(Boxes2PixelsError, match=r"epochs 1 → 2"):
        run_benchmark(synth, gt, gt, out, **{**kwargs, "epochs": 2})
