"""Synthetic blade data: determinism, layout, exact ground truth, loose and missing boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.data.synth import (
    SynthConfig,
    generate_dataset,
    load_manifest,
    render_scene,
    scene_rng,
)
from boxes2pixels.data.yolo import load_data_yaml
from boxes2pixels.errors import DatasetError
from boxes2pixels.io import read_image

SIZE = (192, 112)


@pytest.fixture(scope="module")
def scenes() -> list:
    """Scenes where every image has defects, so that per-defect checks have material."""
    cfg = SynthConfig(defect_free_fraction=0.0)
    return [render_scene(scene_rng(7, "train", i), (320, 180), cfg) for i in range(40)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    return generate_dataset(out, train=14, val=3, test=3, size=SIZE, seed=3)


def test_render_scene_is_deterministic_per_seed() -> None:
    a = render_scene(scene_rng(1, "train", 4), SIZE)
    b = render_scene(scene_rng(1, "train", 4), SIZE)
    c = render_scene(scene_rng(2, "train", 4), SIZE)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.boxes, b.boxes)
    assert a.jpeg_bytes() == b.jpeg_bytes()
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (SIZE[1], SIZE[0], 3) and a.image.dtype == np.uint8
    assert a.mask.shape == (SIZE[1], SIZE[0]) and a.mask.dtype == np.uint8


def test_images_differ_across_splits_and_indices() -> None:
    imgs = [
        render_scene(scene_rng(0, s, i), SIZE).image
        for s, i in [("train", 0), ("val", 0), ("train", 1)]
    ]
    assert not np.array_equal(imgs[0], imgs[1])
    assert not np.array_equal(imgs[0], imgs[2])


def test_layout_and_yaml_are_readable(dataset: Path) -> None:
    ds = load_data_yaml(dataset)
    assert ds.names == ["dirt", "damage"]
    assert ds.num_classes == 3
    root = dataset.parent
    for split, n in (("train", 14), ("val", 3), ("test", 3)):
        images = ds.images(split)
        assert len(images) == n
        for img in images:
            assert img.suffix == ".jpg"
            mask_path = root / "gt_masks" / split / ds.mask_name(img, split)
            mask = read_mask(mask_path)
            assert mask.shape == read_image(img).shape[:2] == (SIZE[1], SIZE[0])
            assert set(np.unique(mask).tolist()) <= {0, 1, 2}
            labels = ds.labels(img, strict=True)
            assert labels.issues == []


def test_defect_free_images_get_missing_and_empty_label_files(dataset: Path) -> None:
    ds = load_data_yaml(dataset)
    missing = empty = 0
    for img in ds.images("train"):
        label = dataset.parent / "labels" / "train" / f"{img.stem}.txt"
        if not label.exists():
            missing += 1
            assert len(ds.labels(img)) == 0
        elif label.read_text() == "":
            empty += 1
    assert missing > 0 and empty > 0


def test_generating_a_subset_reproduces_the_same_files(dataset: Path, tmp_path: Path) -> None:
    sub = generate_dataset(tmp_path / "sub", train=4, val=0, test=2, size=SIZE, seed=3)
    ds = load_data_yaml(sub)
    assert ds.splits == ["train", "test"]
    for split, n in (("train", 4), ("test", 2)):
        for i in range(n):
            for folder, ext in (("images", "jpg"), ("gt_masks", "png")):
                a = dataset.parent / folder / split / f"{split}_{i:05d}.{ext}"
                b = sub.parent / folder / split / f"{split}_{i:05d}.{ext}"
                assert a.read_bytes() == b.read_bytes()


def test_boxes_loosely_enclose_their_defect(scenes: list) -> None:
    looser = 0
    boxed = 0
    for scene in scenes:
        for d in scene.defects:
            ys, xs = np.nonzero(d.mask)
            assert len(xs) > 0
            assert d.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            if d.box is None:
                continue
            boxed += 1
            x0, y0, x1, y1 = d.box
            assert x0 <= xs.min() and y0 <= ys.min() and x1 >= xs.max() + 1 and y1 >= ys.max() + 1
            tight = (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min())
            looser += (x1 - x0) * (y1 - y0) > 1.1 * tight
    assert boxed > 20
    assert looser > 0.8 * boxed  # boxes are deliberately loose


def test_mask_is_exactly_the_union_of_the_defects(scenes: list) -> None:
    for scene in scenes:
        expected = np.zeros_like(scene.mask)
        for d in scene.defects:
            assert not expected[d.mask].any(), "defects must not overlap"
            expected[d.mask] = d.cls + 1
        assert np.array_equal(scene.mask, expected)
        assert set(np.unique(scene.mask).tolist()) <= {0, 1, 2}
        assert not (scene.mask > 0)[~scene.blade].any(), "defects only on the blade"


def test_every_defect_kind_and_both_classes_occur(scenes: list) -> None:
    kinds = {d.kind for s in scenes for d in s.defects}
    assert kinds == {"stain", "splatter", "streak", "crack", "erosion", "chip"}
    assert {d.cls for s in scenes for d in s.defects} == {0, 1}


def test_unboxed_defects_are_subtle_and_in_the_ground_truth(scenes: list) -> None:
    defects = [d for s in scenes for d in s.defects]
    unboxed = [d for d in defects if not d.boxed]
    assert 0.03 <= len(unboxed) / len(defects) <= 0.35
    mean_boxed = np.mean([d.strength for d in defects if d.boxed])
    for d in unboxed:
        assert d.strength < mean_boxed
    for scene in scenes:
        lines = scene.label_text().splitlines()
        assert len(lines) == sum(d.boxed for d in scene.defects)
        for d in scene.unboxed:
            assert (scene.mask[d.mask] == d.cls + 1).all()


def test_defect_free_fraction() -> None:
    n = 160
    cfg = SynthConfig()
    free = sum(not render_scene(scene_rng(11, "train", i), (96, 64), cfg).defects for i in range(n))
    assert 0.50 <= free / n <= 0.76
    always = SynthConfig(defect_free_fraction=1.0)
    assert all(
        not render_scene(scene_rng(0, "val", i), (96, 64), always).defects for i in range(10)
    )


def test_label_files_match_the_manifest_and_gt(dataset: Path) -> None:
    ds = load_data_yaml(dataset)
    manifest = load_manifest(dataset.parent)
    assert manifest["size"] == list(SIZE)
    unboxed_total = 0
    for split in ds.splits:
        for img in ds.images(split):
            record = manifest["images"][split][img.stem]
            labels = ds.labels(img)
            boxes = labels.xyxy(*SIZE)
            boxed = [d for d in record["defects"] if d["box"] is not None]
            unboxed_total += len(record["defects"]) - len(boxed)
            assert len(labels) == len(boxed)
            for cls, box in zip(labels.classes, boxes, strict=True):
                # each label box encloses the tight box of a boxed defect of its class
                assert any(
                    ds.names[cls] == d["class"]
                    and box[0] <= d["bbox"][0] + 1e-3
                    and box[1] <= d["bbox"][1] + 1e-3
                    and box[2] >= d["bbox"][2] - 1e-3
                    and box[3] >= d["bbox"][3] - 1e-3
                    for d in boxed
                )
            mask = read_mask(dataset.parent / "gt_masks" / split / f"{img.stem}.png")
            covered = np.zeros_like(mask)
            for d in record["defects"]:
                x0, y0, x1, y1 = d["bbox"]
                value = ds.names.index(d["class"]) + 1
                region = mask[y0:y1, x0:x1]
                assert (region == value).sum() == d["pixels"]
                covered[y0:y1, x0:x1][region == value] = value
            assert np.array_equal(covered, mask)
    assert unboxed_total == sum(s["unboxed"] for s in manifest["splits"].values())


def test_refuses_non_empty_folder_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate_dataset(out, train=3, val=0, test=0, size=(96, 64))
    with pytest.raises(DatasetError, match="not empty"):
        generate_dataset(out, train=2, val=0, test=0, size=(96, 64))
    (out / "notes.txt").write_text("keep me")
    generate_dataset(out, train=2, val=0, test=0, size=(96, 64), overwrite=True)
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
        "train_00000.jpg",
        "train_00001.jpg",
    ]
    assert (out / "notes.txt").read_text() == "keep me"


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to generate"):
        generate_dataset(tmp_path / "a", train=0, val=0, test=0)
    with pytest.raises(ValueError, match="at least 64"):
        generate_dataset(tmp_path / "b", train=1, size=(32, 32))
    with pytest.raises(ValueError, match="defect_free_fraction"):
        SynthConfig(defect_free_fraction=1.5)
    with pytest.raises(ValueError, match="box_padding"):
        SynthConfig(box_padding=(0.3, 0.1))
    assert not (tmp_path / "a").exists()


def test_progress_callback_counts_every_image(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_dataset(
        tmp_path / "p",
        train=2,
        val=1,
        test=1,
        size=(96, 64),
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cli_writes_dataset_and_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["synth", str(out), "--train", "3", "--val", "1", "--test", "1", "--size", "96x64"]
    result = runner.invoke(app, [*args, "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "unboxed" in result.output and "total" in result.output
    ds = load_data_yaml(out / "data.yaml")
    assert len(ds.images("train")) == 3
    assert read_image(ds.images("val")[0]).shape == (64, 96, 3)
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "not empty" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--size", "96by64"])
    assert bad.exit_code == 2
    zeros = ["--train", "0", "--val", "0", "--test", "0"]
    empty = runner.invoke(app, ["synth", str(tmp_path / "y"), *zeros])
    assert empty.exit_code == 1 and "nothing to generate" in empty.output
    assert not (tmp_path / "y").exists()
