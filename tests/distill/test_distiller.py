"""Distiller, EMA, training data and `b2p train` on a tiny generated dataset (56×56 images)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from boxes2pixels.config import ConfigError, TrainConfig
from boxes2pixels.data.dataset import PseudoMaskDataset
from boxes2pixels.data.labelmaps import read_mask, write_mask
from boxes2pixels.data.transforms import JointTransform
from boxes2pixels.distill import (
    CHECKPOINT_FORMAT,
    DDPContext,
    Distiller,
    ModelEMA,
    TrainState,
    build_student,
    resume_hint,
    run_dir_problem,
    train,
)
from boxes2pixels.distill import loop as distill_loop
from boxes2pixels.distill.checkpoint import load_checkpoint
from boxes2pixels.errors import Boxes2PixelsError, CheckpointError, DatasetError

RED = (230, 30, 30)


@pytest.fixture()
def dataset(tmp_path: Path, make_square_dataset: Any) -> Path:
    return make_square_dataset(tmp_path / "data")


def tiny_config(data: Path, out: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "data": data / "data.yaml",
        "masks": data / "masks",
        "out": out,
        "epochs": 2,
        "imgsz": 56,
        "batch": 2,
        "workers": 0,
        "device": "cpu",
        "precision": "fp32",
        "progress": False,
        "backbone_init": "random",
        "backbone_mode": "full",
        "seed": 3,
    }
    values.update(overrides)
    return TrainConfig.load(**values)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_b2p_train_writes_the_run_directory(dataset: Path, tmp_path: Path) -> None:
    from boxes2pixels.cli.main import app
    from boxes2pixels.student import Student

    out = tmp_path / "run"
    args = [
        "train", str(dataset / "data.yaml"), "--masks", str(dataset / "masks"), "--out", str(out),
        "--epochs", "2", "--imgsz", "56", "--batch", "2", "--backbone-init", "random",
        "--backbone-mode", "full", "--device", "cpu", "--precision", "fp32", "--workers", "0",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("config.yaml", "metrics.csv", "last.ckpt", "best/model.safetensors"):
        assert (out / name).is_file(), name
    rows = read_rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for key in ("loss", "loss_binary", "loss_fine", "corrected_share", "skipped_steps", "lr",
                "time_s", "val_miou", "val_anomaly_miou", "val_binary_iou"):  # fmt: skip
        assert key in rows[0], key
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert [r["steps"] for r in rows] == ["2", "2"]  # 4 images, batch 2
    # the default warm-up (10 % of 2 epochs, at least 1) keeps the correction off in epoch 1
    assert [r["self_correction"] for r in rows] == ["0", "1"]
    assert float(rows[-1]["lr"]) == pytest.approx(0.0, abs=1e-12)  # cosine reaches 0

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["imgsz"] == 56 and saved["lr"] == 5e-4
    assert saved["backbone_init"] == "random"

    model = Student.from_pretrained(out / "best")
    assert model.num_classes == 3 and model.class_names == ["background", "dirt", "damage"]
    best_epoch = max(rows, key=lambda r: float(r["val_anomaly_miou"] or "nan"))["epoch"]
    card = (out / "best" / "README.md").read_text()
    assert "val_anomaly_miou" in card
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4 and ckpt["best_epoch"] == int(best_epoch)
    # the saved best model holds the EMA weights of the best epoch
    if ckpt["best_epoch"] == 2:
        ema = ckpt["ema"]["module"]
        assert all(torch.equal(model.state_dict()[k], ema[k]) for k in ema)

    # a second run into the same folder is refused without --resume / --overwrite
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1
    assert "not empty" in again.output


@pytest.mark.slow
def test_resume_after_interruption_matches_an_uninterrupted_run(
    tmp_path: Path, make_square_dataset: Any
) -> None:
    dataset = make_square_dataset(tmp_path / "small", n_train=2, n_val=1)  # one step per epoch
    full = train(tiny_config(dataset, tmp_path / "full", correction_warmup=0, tau=0.5))

    cfg = tiny_config(dataset, tmp_path / "cut", correction_warmup=0, tau=0.5)
    torch.manual_seed(cfg.seed)  # as train() does before building the student
    student = build_student(cfg, ["background", "dirt", "damage"])
    distiller = Distiller(student, cfg)
    calls = {"n": 0}
    forward = distiller.criterion.forward

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the step of epoch 2
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    distiller.criterion.forward = interrupted  # type: ignore[method-assign]
    data = PseudoMaskDataset(dataset / "data.yaml", dataset / "masks", "train", 56,
                             transform=JointTransform(), seed=cfg.seed)  # fmt: skip
    val = PseudoMaskDataset(dataset / "data.yaml", dataset / "masks", "val", 56)
    with pytest.raises(KeyboardInterrupt):
        distiller.fit(data, val)
    assert torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert len(read_rows(tmp_path / "cut" / "metrics.csv")) == 1

    torch.manual_seed(123)  # the resumed run must not depend on the fresh model's weights
    resumed = train(cfg.model_copy(update={"resume": True}))
    assert resumed.epochs_completed == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    a = torch.load(tmp_path / "full" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)
    assert a["step"] == b["step"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]) for k in a["model"])
    assert full.history[1]["loss"] == pytest.approx(resumed.history[1]["loss"], rel=0, abs=0)
    # different weights than after epoch 1: training really continued
    first = full.history[0]["loss"]
    assert resumed.history[1]["loss"] != first

    # a checkpoint of two processes is not resumed by one
    b["world_size"] = 2
    torch.save(b, tmp_path / "cut" / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"trained with 2 process\(es\).*resumed with 1"):
        train(cfg.model_copy(update={"resume": True}))


@pytest.mark.slow
def test_non_finite_loss_is_skipped_and_counted(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(dataset, tmp_path / "run", epochs=1, binary_head=False, detail_branch=False)
    student = build_student(cfg, ["background", "dirt", "damage"])
    distiller = Distiller(student, cfg)
    forward = distiller.criterion.forward
    calls = {"n": 0}

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            out.total = out.total * float("nan")
        return out

    distiller.criterion.forward = poisoned  # type: ignore[method-assign]

    class Writer:  # stands in for tensorboard's SummaryWriter (an optional dependency)
        def __init__(self) -> None:
            self.scalars: dict[str, tuple[float, int]] = {}
            self.closed = False

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            self.scalars[tag] = (value, step)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    writer = Writer()
    monkeypatch.setattr(distill_loop, "open_tensorboard", lambda run, step: writer)
    data = PseudoMaskDataset(dataset / "data.yaml", dataset / "masks", "train", 56)
    result = distiller.fit(data, None)
    row = result.history[0]
    assert writer.closed and writer.scalars["train/skipped_steps"] == (1, 1)
    assert "train/loss_binary" not in writer.scalars  # NaN values are not logged
    assert row["skipped_steps"] == 1 and row["steps"] == 1
    assert math.isnan(row["loss_binary"])  # no binary head
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert result.best_epoch == 1


def test_resume_with_another_number_of_processes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"format": CHECKPOINT_FORMAT, "world_size": 4}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, {}, TrainConfig.load(), DDPContext())
    message = str(caught.value)
    assert "last.ckpt" in message and "with 4 process(es)" in message
    assert "resumed with 1" in message


def test_train_state_keeps_the_best_epoch_and_applies_patience() -> None:
    state = TrainState()
    rows = [0.2, 0.5, 0.4, 0.5]
    improved = [
        state.end_epoch({"epoch": i + 1, "val_anomaly_miou": v}, True, i == 3, patience=2)
        for i, v in enumerate(rows)
    ]
    assert improved == [True, True, False, False]  # a tie is no improvement
    assert (state.epoch, state.best_epoch, state.best_score) == (4, 2, 0.5)
    assert state.bad_epochs == 2 and state.stopped_early and len(state.history) == 4
    unvalidated = TrainState()
    assert not unvalidated.end_epoch({"epoch": 1, "val_anomaly_miou": None}, False, False, 1)
    assert unvalidated.end_epoch({"epoch": 2, "val_anomaly_miou": None}, False, True, 1)
    assert unvalidated.best_epoch == 2 and not unvalidated.stopped_early


# ------------------------------------------------------------------------------ the EMA
def test_ema_warms_up_copies_buffers_and_skips_frozen_parameters() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    model[0].bias.requires_grad_(False)
    ema = ModelEMA(model, decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(5.0)
        model[1].running_mean.fill_(3.0)
    start = ema.module[0].weight.clone()
    ema.update(model)  # decay (1 + 0) / (10 + 0) = 0.1
    assert torch.allclose(ema.module[0].weight, 0.1 * start + 0.9)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))
    assert not torch.equal(ema.module[0].bias, model[0].bias)  # frozen: left alone
    ema.update(model)
    assert ema.updates == 2 and ema.current_decay() == pytest.approx(3 / 12)
    ema.updates = 100_000
    assert ema.current_decay() == 0.999
    assert ModelEMA(model, decay=0.9, warmup=False).current_decay() == 0.9


# ------------------------------------------------------------------ data and augmentation
def test_dataset_letterboxes_to_a_square_and_pads_masks_with_ignore(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "images" / "train").mkdir(parents=True)
    img = np.zeros((30, 60, 3), np.uint8)
    img[:, :30] = RED
    mask = np.zeros((30, 60), np.uint8)
    mask[:, :30] = 2
    Image.fromarray(img).save(root / "images" / "train" / "wide.png")
    write_mask(root / "masks" / "train" / "wide.png", mask)
    (root / "data.yaml").write_text("train: images/train\nnames: [a, b]\n")
    ds = PseudoMaskDataset(root / "data.yaml", root / "masks", "train", imgsz=56)
    image_t, mask_t = ds[0]
    assert image_t.shape == (3, 56, 56) and image_t.dtype == torch.uint8
    assert mask_t.shape == (56, 56)
    assert torch.all(mask_t[28:] == 255)  # padding below the 56×28 content
    assert torch.all(mask_t[:28, :28] == 2) and torch.all(mask_t[:28, 28:] == 0)
    assert ds.class_names == ["background", "a", "b"]


def test_missing_mask_is_an_error_naming_the_file_or_skipped(dataset: Path) -> None:
    (dataset / "masks" / "train" / "im1.png").unlink()
    with pytest.raises(DatasetError, match=r"masks/train/im1\.png"):
        PseudoMaskDataset(dataset / "data.yaml", dataset / "masks", "train", 56)
    with pytest.warns(UserWarning, match="1 image"):
        ds = PseudoMaskDataset(dataset / "data.yaml", dataset / "masks", "train", 56,
                               missing="skip")  # fmt: skip
    assert len(ds) == 3


def test_mask_with_unknown_class_value_is_rejected(dataset: Path) -> None:
    write_mask(dataset / "masks" / "val" / "im0.png", np.full((56, 56), 7, np.uint8))
    ds = PseudoMaskDataset(dataset / "data.yaml", dataset / "masks", "val", 56)
    with pytest.raises(DatasetError, match="label value 7"):
        ds[0]


def test_augmentation_keeps_image_and_mask_aligned_and_is_reproducible(dataset: Path) -> None:
    transform = JointTransform(hflip=0.5, vflip=0.5, scale_crop=1.0, min_scale=0.5, colour=0.0)
    ds = PseudoMaskDataset(dataset / "data.yaml", dataset / "masks", "train", 56, transform, seed=1)
    seen_flip = False
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, mask = ds[i]
            red = (image[0] > 160) & (image[1] < 100)
            defect = (mask > 0) & (mask != 255)
            # resizing blurs the square's edge in the image only; the bulk must coincide
            iou = (red & defect).sum() / (red | defect).sum()
            assert iou > 0.8, (epoch, i, float(iou))
            assert set(torch.unique(mask).tolist()) <= {0, 1, 2, 255}
            original = read_mask(ds.samples[i][1])
            seen_flip |= not torch.equal(mask, torch.from_numpy(original))
    assert seen_flip
    ds.set_epoch(2)
    a, b = ds[1], ds[1]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_colour_jitter_changes_only_the_image() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
    out = JointTransform(colour=0.4, hue=0.05).photometric(image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    assert np.array_equal(JointTransform(colour=0, hue=0).photometric(image, rng), image)


# ---------------------------------------------------------------------- configuration
def test_config_precedence_defaults_file_env_explicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert TrainConfig.load().lr == 5e-4 and TrainConfig.load().tau == 0.9
    assert TrainConfig.load().resolved_correction_warmup() == 20  # 10 % of 200
    assert TrainConfig.load(correction_warmup=0).resolved_correction_warmup() == 0
    yml = tmp_path / "c.yaml"
    yml.write_text("epochs: 7\nbatch: 3\nlr: 0.01\n")
    toml = tmp_path / "c.toml"
    toml.write_text("epochs = 9\ntau = 0.8\n")
    c = TrainConfig.load(yml)
    assert (c.epochs, c.batch, c.lr) == (7, 3, 0.01)
    assert TrainConfig.load(toml).tau == 0.8
    monkeypatch.setenv("B2P_BATCH", "5")
    monkeypatch.setenv("B2P_LR", "0.02")
    c = TrainConfig.load(yml, lr=0.03, epochs=None)  # None = flag not given
    assert (c.epochs, c.batch, c.lr) == (7, 5, 0.03)


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rate"):
        TrainConfig.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="multiple of 14"):
        TrainConfig.load(imgsz=100)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epochs: [1\n", r"broken\.yaml: cannot read the settings \(while parsing"),
        ("- 1\n- 2\n", r"broken\.yaml: cannot read the settings \(expected a mapping"),
        ("epochs: 2\nimgsz: 100\nlearning_rate: 1\n", r"broken\.yaml: invalid training"),
    ],
    ids=["unparsable", "not-a-mapping", "invalid-values"],
)
def test_config_file_errors_are_config_errors_of_one_paragraph(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as caught:
        TrainConfig.load(path)
    assert "\n" not in str(caught.value)


def test_direct_construction_and_assignment_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"epochs: Input should be .*\(got 'many'\)"):
        TrainConfig(epochs="many")
    with pytest.raises(ConfigError, match="backbone_weights is set but backbone_init"):
        TrainConfig(backbone_init="random", backbone_weights=Path("w.pth"))
    cfg = TrainConfig()
    with pytest.raises(ConfigError, match="imgsz must be a multiple of 14"):
        cfg.imgsz = 100
    cfg.imgsz = 112
    assert cfg.imgsz == 112


def test_cli_passes_only_given_flags_and_resume_reuses_the_run_config(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boxes2pixels.distill as distill
    from boxes2pixels.cli.main import app

    seen: list[TrainConfig] = []

    def fake_train(config: TrainConfig) -> Any:
        seen.append(config)
        raise Boxes2PixelsError("stop here")

    monkeypatch.setattr(distill, "train", fake_train)
    file = tmp_path / "settings.toml"
    file.write_text("epochs = 11\nbatch = 6\nbackbone_init = 'random'\n")
    monkeypatch.setenv("B2P_BATCH", "4")
    base = ["train", str(dataset / "data.yaml"), "--masks", str(dataset / "masks")]
    result = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "r1"), "--config", str(file), "--no-binary-head"]
    )
    assert result.exit_code == 1 and "stop here" in result.output
    cfg = seen[-1]
    assert (cfg.epochs, cfg.batch, cfg.binary_head, cfg.detail_branch) == (11, 4, False, True)
    assert cfg.self_correction is True and cfg.imgsz == 518
    assert "--backbone-mode full" in " ".join(result.output.split())  # random + bitfit warning

    run = tmp_path / "r2"
    run.mkdir()
    (run / "config.yaml").write_text(tiny_config(dataset, run, epochs=3).to_yaml())
    result = CliRunner().invoke(app, [*base, "--out", str(run), "--resume"])
    cfg = seen[-1]
    assert cfg.resume and cfg.epochs == 3 and cfg.imgsz == 56 and cfg.batch == 4  # env > file


def test_resume_without_a_finished_epoch_starts_again_only_over_its_own_files(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 2\n")  # what a run killed in epoch 1 leaves
    assert run_dir_problem(run, resume=True, overwrite=False) == ""
    assert "--overwrite" in run_dir_problem(run, resume=False, overwrite=False)
    assert run_dir_problem(run, resume=False, overwrite=True) == ""
    assert "epoch 1" in resume_hint(run)
    (run / "notes.txt").write_text("mine")  # not a file a run writes: never replaced
    assert "notes.txt" in run_dir_problem(run, resume=True, overwrite=False)
    (run / "last.ckpt").write_bytes(b"")
    assert "--resume" in resume_hint(run) and "last.ckpt" in resume_hint(run)
