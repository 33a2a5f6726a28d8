"""The review queue: doubt signals, ranking against exact ground truth, the gallery, the
correction bundle and the round trip back through ``b2p label --corrections`` into training."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from boxes2pixels.convert import masks_to_coco
from boxes2pixels.data.labelmaps import read_mask, write_mask
from boxes2pixels.data.synth import generate_dataset
from boxes2pixels.data.yolo import load_data_yaml
from boxes2pixels.errors import ConfigError
from boxes2pixels.label import MANIFEST_NAME, label_dataset
from boxes2pixels.label.corrections import corrected_keys
from boxes2pixels.label.imitation import imitate_teacher
from boxes2pixels.review import (
    DoubtSettings,
    doubt_score,
    gallery_document,
    parse_weights,
    review_dataset,
    review_image,
    review_split,
    teacher_scores,
    write_bundle,
    write_gallery,
)

K = 10
SIZE = (160, 96)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, float]]:
    """A generated dataset with imitation-SAM pseudo-masks and their true IoUs."""
    root = tmp_path_factory.mktemp("review")
    generate_dataset(root / "ds", train=150, val=0, test=0, size=SIZE, seed=1)
    masks = root / "masks"
    return root / "ds", masks, imitate_teacher(root / "ds", masks)


def ranking_figures(queue: Any, ious: dict[str, float], k: int) -> tuple[float, float, float]:
    """Mean IoU of the top k boxed images, of all boxed images, and the share of the k worst
    masks found in the top k."""
    ranked = [r.key for r in queue.images if r.key in ious]
    values = np.array([ious[key] for key in ranked])
    worst = set(sorted(ious, key=lambda key: ious[key])[:k])
    return float(values[:k].mean()), float(values.mean()), len(worst & set(ranked[:k])) / k


# ------------------------------------------------------------------------------- signals
def test_score_is_the_weighted_mean_of_measured_signals_only() -> None:
    weights = {"coverage": 2.0, "fragmentation": 1.0, "teacher": 1.0}
    score = doubt_score({"coverage": 0.5, "fragmentation": 0.0, "teacher": None}, weights)
    assert score.value == pytest.approx(2 * 0.5 / 3)  # teacher missing: renormalised away
    assert score.shares == {"coverage": pytest.approx(1.0), "fragmentation": 0.0}
    assert parse_weights("coverage=2, missed=0")["missed"] == 0.0
    with pytest.raises(ConfigError, match="unknown doubt signal"):
        parse_weights("colour=1")
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_weights("coverage")


def test_box_signals_name_empty_filled_and_split_masks() -> None:
    mask = np.zeros((40, 120), np.uint8)
    mask[5:35, 45:75] = 1  # box 2 filled
    mask[10:14, 85:89] = 2  # box 3 in two pieces
    mask[25:29, 105:109] = 2
    boxes = np.array([[5, 5, 35, 35], [45, 5, 75, 35], [85, 5, 115, 35]], np.float32)
    review = review_image(
        mask,
        boxes,
        np.array([0, 0, 1]),
        ["dirt", "damage"],
        DoubtSettings(),
        teacher_scores=[None, 0.9, 0.3],
    )
    empty, filled, split = review.boxes
    assert (empty.coverage, empty.signals["coverage"], empty.signals["fragmentation"]) == (
        0.0, 1.0, None,
    )  # fmt: skip
    assert filled.coverage == 1.0 and filled.signals["coverage"] == 1.0
    assert split.pieces == 2 and split.signals["fragmentation"] == 0.5
    assert split.signals["teacher"] == pytest.approx(0.7) and empty.signals["teacher"] is None
    assert review.signals["coverage"] == 1.0 and review.worst_box == 0  # ranked by box 1
    assert review.reasons[0] == "box 1 (dirt): mask is empty"  # the worst box first
    assert "box 2 (dirt): mask fills 100% of it" in review.reasons
    assert 0 < split.shares["fragmentation"] < split.shares["teacher"]  # named if it carries
    assert any("covers only 4% of it" in r for r in review.reasons)
    assert any("teacher score 0.30" in r for r in review.reasons)


# ------------------------------------------------------------------------------- ranking
def test_top_k_holds_the_worst_pseudo_masks_without_a_model(synth: Any) -> None:
    data, masks, ious = synth
    queue = review_split(data / "data.yaml", masks, split="train")
    top_iou, mean_iou, caught = ranking_figures(queue, ious, K)
    print(
        f"no model: top-{K} IoU {top_iou:.3f}, mean {mean_iou:.3f}, "
        f"worst caught {caught:.2f}, random {K / len(ious):.2f}"
    )
    assert top_iou < mean_iou - 0.2, (top_iou, mean_iou)
    assert caught >= 0.4 and caught >= 2 * K / len(ious), (caught, K / len(ious))
    assert [r.rank for r in queue.images] == list(range(1, len(queue.images) + 1))
    assert all(a.score >= b.score for a, b in zip(queue.images, queue.images[1:], strict=False))


@pytest.fixture(scope="module")
def model_queue(synth: Any, tiny_student: Any) -> Any:
    """The queue of ``synth`` scored with a random-weight model (every signal but teacher)."""
    import torch

    data, masks, _ = synth
    settings = DoubtSettings(min_confidence=0.0, min_area=1, confident=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 150 tiny forward passes: threads only contend on a shared CPU
    try:
        return review_split(data / "data.yaml", masks, model=tiny_student, settings=settings)
    finally:
        torch.set_num_threads(threads)


def test_top_k_with_a_model_adds_disagreement_and_missed(synth: Any, model_queue: Any) -> None:
    _, _, ious = synth
    queue = model_queue
    top_iou, mean_iou, caught = ranking_figures(queue, ious, K)
    print(
        f"model: top-{K} IoU {top_iou:.3f}, mean {mean_iou:.3f}, "
        f"worst caught {caught:.2f}, random {K / len(ious):.2f}"
    )
    assert top_iou < mean_iou - 0.2, (top_iou, mean_iou)
    assert caught >= 0.4 and caught >= 2 * K / len(ious), (caught, K / len(ious))
    assert "random backbone" in (queue.model or "")
    assert all(r.signals["disagreement"] is not None for r in queue.images)
    assert all(r.signals["missed"] is not None for r in queue.images)
    boxed = [r for r in queue.images if r.boxes]
    assert all(b.agreement is not None for r in boxed for b in r.boxes)


# ------------------------------------------------------------------------------- outputs
def test_gallery_queue_files_and_bundle(
    model_queue: Any, tiny_student: Any, tmp_path: Path
) -> None:
    queue, out = model_queue, tmp_path / "out"
    top = queue.top(3)
    doc = gallery_document(queue, top, tiny_student, None, "b2p label data.yaml ...")
    page = write_gallery(doc, out).read_text(encoding="utf-8")
    csv_path, json_path = queue.write(out)
    write_bundle(top, queue.class_names[1:], out / "correct")
    assert page.startswith("<!DOCTYPE html>") and "<h1>Review queue: train split" in page
    assert len(re.findall(r'<figure><img alt="review of ', page)) == 3
    assert page.count('src="data:image/png;base64,') == 3  # self-contained
    for review in top:
        assert f"#{review.rank} <code>{review.key}</code>" in page
        assert review.reasons[0].replace("%", "%") in page.replace("&#x27;", "'")
    assert "<th>share of the score</th>" in page and "b2p label" in page
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [r["key"] for r in rows] == [r.key for r in queue.images]
    assert {"coverage_share", "disagreement", "reasons"} <= set(rows[0])
    saved = json.loads(json_path.read_text(encoding="utf-8"))
    assert saved["weights"]["coverage"] == 1.0 and len(saved["images"]) == len(rows)
    coco = json.loads((tmp_path / "out" / "correct" / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [r.key.replace(".png", ".jpg") for r in top]
    for review in top:
        assert (tmp_path / "out" / "correct" / "images" / review.key).with_suffix(".jpg").is_file()
        bundled = read_mask(tmp_path / "out" / "correct" / "masks" / review.key)
        assert np.array_equal(bundled, read_mask(review.mask))


def test_cli_review_writes_the_queue(synth: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from boxes2pixels.cli.main import app

    data, masks, _ = synth
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        ["review", str(data / "data.yaml"), "--masks", str(masks), "--out", str(out),
         "--top", "2", "--weights", "fragmentation=0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "images ranked" in result.output
    saved = json.loads((out / "queue.json").read_text())
    assert saved["weights"]["fragmentation"] == 0.0
    assert all(r["shares"].get("fragmentation", 0.0) == 0.0 for r in saved["images"])


# ---------------------------------------------------------------------------- round trip
def test_round_trip_export_correct_import_train(tmp_path: Path) -> None:
    from boxes2pixels.config import TrainConfig
    from boxes2pixels.distill import train

    data = tmp_path / "ds"
    generate_dataset(data, train=12, val=2, test=0, size=SIZE, seed=2)
    masks = tmp_path / "masks"
    label_dataset(data / "data.yaml", "box", masks, progress=False)
    result = review_dataset(data / "data.yaml", masks, tmp_path / "review", top=3)
    top = [r.key for r in result.queue.top(3)]
    bundle = tmp_path / "review" / "correct"
    exported = json.loads((bundle / "annotations.json").read_text())
    # the expert: every exported image's mask replaced by the ground truth, saved as COCO
    names = [i["file_name"] for i in exported["images"]]
    truth = [read_mask(data / "gt_masks" / Path(n).with_suffix(".png")) for n in names]
    corrected_file = tmp_path / "from_cvat.json"
    corrected_file.write_text(json.dumps(masks_to_coco(names, truth, ["dirt", "damage"])))

    label_dataset(data / "data.yaml", "box", masks, progress=False, corrections=corrected_file)
    manifest = json.loads((masks / MANIFEST_NAME).read_text())
    assert sorted(manifest["human_corrected"]) == sorted(top)
    assert corrected_keys(masks) == set(top)
    scores = teacher_scores(masks)  # the box teacher has no scores: no signal, never a 0
    assert set(scores).isdisjoint(top) and all(v is None for s in scores.values() for v in s)
    for key in top:
        expected = read_mask(data / "gt_masks" / key)
        assert np.array_equal(read_mask(masks / key), expected)
    label_dataset(data / "data.yaml", "box", masks, progress=False, overwrite=True)
    for key in top:  # the teacher never overwrites a correction
        assert np.array_equal(read_mask(masks / key), read_mask(data / "gt_masks" / key))

    cfg = TrainConfig.load(
        data=data / "data.yaml", masks=masks, out=tmp_path / "run", epochs=1, imgsz=56,
        batch=2, workers=0, device="cpu", precision="fp32", progress=False,
        backbone_init="random", backbone_mode="full", validate_on="corrected",
        corrected_repeat=0,
    )  # fmt: skip
    fit = train(cfg)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert sorted(saved["corrected_images"]) == sorted(top)
    assert saved["validate_on"] == "corrected"
    assert fit.history[0]["val_miou"] is not None  # validated on the corrected images


def test_corrections_from_a_png_folder_and_errors(tmp_path: Path) -> None:
    from boxes2pixels.errors import DatasetError

    data = tmp_path / "ds"
    generate_dataset(data, train=4, val=0, test=0, size=SIZE, seed=3)
    masks = tmp_path / "masks"
    fixes = tmp_path / "fixes"
    gt = read_mask(data / "gt_masks" / "train" / "train_00001.png")
    write_mask(fixes / "train_00001.png", gt)  # a bare name matches when it is unique
    write_mask(fixes / "nowhere.png", gt)
    label_dataset(data / "data.yaml", "box", masks, splits=["train"], progress=False,
                  corrections=fixes)  # fmt: skip
    assert corrected_keys(masks) == {"train/train_00001.png"}
    assert np.array_equal(read_mask(masks / "train" / "train_00001.png"), gt)
    write_mask(tmp_path / "bad" / "train" / "train_00002.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match="corrected mask is 5×5"):
        label_dataset(data / "data.yaml", "box", masks, splits=["train"], progress=False,
                      corrections=tmp_path / "bad")  # fmt: skip


def test_corrected_validation_tiles_whole_images_when_training_on_windows(
    tmp_path: Path,
) -> None:
    from boxes2pixels.config import TrainConfig
    from boxes2pixels.distill.corrected import corrected_val_data

    data = tmp_path / "ds"
    generate_dataset(data, train=3, val=0, test=0, size=SIZE, seed=4)
    imitate_teacher(data, tmp_path / "masks")
    keys = ["train/train_00001.png", "train/train_00002.png"]
    for crop, shape in ((0, (56, 56)), (28, (SIZE[1], SIZE[0]))):
        cfg = TrainConfig.load(
            data=data / "data.yaml", masks=tmp_path / "masks", imgsz=56, crop_size=crop,
            corrected_repeat=0, validate_on="corrected",
        )  # fmt: skip
        val = corrected_val_data(load_data_yaml(data / "data.yaml"), cfg, keys)
        assert len(val) == 2
        image, mask = val[0]
        assert tuple(mask.shape) == shape and tuple(image.shape[1:]) == shape
