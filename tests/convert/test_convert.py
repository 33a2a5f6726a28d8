"""Label maps to COCO instances and YOLO-seg polygons, and back; `b2p convert`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.convert import (
    coco_to_masks,
    label_studio_to_masks,
    mask_to_yolo_seg,
    masks_to_coco,
    pixel_polygons,
    polygon_area,
    write_yolo_seg,
    yolo_seg_difference,
    yolo_seg_to_mask,
)
from boxes2pixels.data.labelmaps import label_regions, write_mask
from boxes2pixels.data.yolo import load_data_yaml, parse_label_text
from boxes2pixels.errors import DatasetError

# pycocotools 2.0.x decodes through a numpy-1 style __array__ (a DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

NAMES = ["dirt", "damage"]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def label_map() -> np.ndarray:
    """Two compact dirt blobs, a compact damage region, a 1-px crack, a lone pixel, ignore."""
    m = np.zeros((120, 160), np.uint8)
    cv2.circle(m, (30, 30), 14, 1, -1)
    cv2.ellipse(m, (120, 40), (22, 12), 25, 0, 360, 1, -1)
    cv2.rectangle(m, (60, 70), (100, 100), 2, -1)
    cv2.line(m, (5, 116), (150, 106), 2, 1)  # a hairline crack, 1 px wide
    m[5, 150] = 1
    m[60:64, 10:14] = 255
    return m


def test_coco_rle_decodes_exactly_with_pycocotools(label_map: np.ndarray, tmp_path: Path) -> None:
    coco = masks_to_coco(["a.png"], [label_map], NAMES)
    assert [c["name"] for c in coco["categories"]] == NAMES
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    assert coco["images"] == [{"id": 1, "file_name": "a.png", "width": 160, "height": 120}]
    instances = list(label_regions(label_map))
    assert len(coco["annotations"]) == len(instances) == 5  # 3 dirt, 2 damage; 255 left out
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    api = COCO(str(path))
    rebuilt = np.zeros_like(label_map)
    for ann in api.loadAnns(api.getAnnIds(imgIds=[1])):
        component = api.annToMask(ann).astype(bool)
        assert ann["area"] == int(component.sum())
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(component)
        assert (x, y) == (xs.min(), ys.min())
        assert (w, h) == (xs.max() - x + 1, ys.max() - y + 1)
        assert not rebuilt[component].any()  # components do not overlap
        rebuilt[component] = ann["category_id"]
    expected = np.where(label_map == 255, 0, label_map)
    np.testing.assert_array_equal(rebuilt, expected)
    np.testing.assert_array_equal(coco_to_masks(path)["a.png"], expected)


def test_coco_polygons_are_exact_valid_and_their_area_is_the_pixel_count(
    label_map: np.ndarray,
) -> None:
    m = label_map.copy()
    cv2.circle(m, (30, 30), 5, 0, -1)  # a hole in the first blob
    coco = masks_to_coco(["a.png"], [m], NAMES, encoding="polygon")
    truths = list(label_regions(m))
    assert len(coco["annotations"]) == len(truths) == 5
    for ann, truth in zip(coco["annotations"], truths, strict=True):
        assert isinstance(ann["segmentation"], list)  # every component drawn as polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 120, 160))
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), truth.mask)
        areas = [polygon_area(np.reshape(p, (-1, 2))) for p in ann["segmentation"]]
        assert min(areas) >= 1 and sum(areas) == ann["area"] == truth.area
        assert all(len(p) >= 8 for p in ann["segmentation"])  # 4+ corners, no repeated point
    lone = next(a for a in coco["annotations"] if a["area"] == 1)
    assert lone["segmentation"] == [[150.0, 5.0, 151.0, 5.0, 151.0, 6.0, 150.0, 6.0]]
    ring = next(a for a in coco["annotations"] if a["bbox"][:2] == [16.0, 16.0])
    assert len(ring["segmentation"]) == 2  # cut through the hole: two simple polygons
    np.testing.assert_array_equal(coco_to_masks(coco)["a.png"], np.where(m == 255, 0, m))


def test_pixel_polygons_are_simple_and_exact_for_random_shapes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        mask = rng.random((12, 17)) < 0.45  # holes, diagonal touches, lone pixels
        polygons = pixel_polygons(mask)
        assert sum(polygon_area(p) for p in polygons) == mask.sum()
        flat = [p.reshape(-1).astype(float).tolist() for p in polygons]
        decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, 12, 17)))
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        for p in polygons:  # simple: no corner visited twice
            assert len({tuple(c) for c in p.tolist()}) == len(p) >= 4


def test_a_component_needing_too_many_polygons_is_rle() -> None:
    m = np.zeros((40, 40), np.uint8)
    idx = np.arange(40)
    m[idx, idx] = 2  # a diagonal hairline: 8-connected, one polygon per pixel
    (ann,) = masks_to_coco(["d.png"], [m], NAMES, encoding="polygon")["annotations"]
    assert isinstance(ann["segmentation"], dict) and ann["area"] == 40
    np.testing.assert_array_equal(coco_to_masks({**_coco(ann)})["d.png"], m)


def test_ignore_pixels_are_exported_only_when_asked(label_map: np.ndarray) -> None:
    plain = masks_to_coco(["a.png"], [label_map], NAMES)
    assert 255 not in {a["category_id"] for a in plain["annotations"]}
    with_ignore = masks_to_coco(["a.png"], [label_map], NAMES, encoding="polygon", ignore=True)
    assert with_ignore["categories"][-1] == {"id": 255, "name": "ignore", "supercategory": "ignore"}
    np.testing.assert_array_equal(coco_to_masks(with_ignore)["a.png"], label_map)
    renamed = {
        **with_ignore,
        "categories": [{**c, "id": c["id"] + 10} for c in with_ignore["categories"]],
    }
    renamed["annotations"] = [
        {**a, "category_id": a["category_id"] + 10} for a in with_ignore["annotations"]
    ]
    np.testing.assert_array_equal(coco_to_masks(renamed, names=NAMES)["a.png"], label_map)


def _coco(ann: dict) -> dict:
    return {
        "images": [{"id": 1, "file_name": "d.png", "width": 40, "height": 40}],
        "categories": [{"id": 1, "name": "dirt"}, {"id": 2, "name": "damage"}],
        "annotations": [ann],
    }


def test_yolo_seg_polygons_rasterise_back(label_map: np.ndarray) -> None:
    lines = mask_to_yolo_seg(label_map, len(NAMES))
    assert len(lines) == 4  # the lone pixel encloses nothing as a polygon: left out
    back = yolo_seg_to_mask(lines, 160, 120)
    truth = np.where(label_map == 255, 0, label_map)
    truth[5, 150] = 0
    for value in (1, 2):  # compact blobs and the crack, at full resolution
        assert _iou(back == value, truth == value) > 0.99
    labels = parse_label_text("\n".join(lines), len(NAMES))  # read as Ultralytics reads them
    assert not labels.issues
    assert sorted(labels.classes.tolist()) == [0, 0, 1, 1]
    assert all(p is not None and len(p) >= 3 for p in labels.polygons)


def test_yolo_seg_difference_counts_what_polygons_cannot_hold() -> None:
    m = np.zeros((60, 80), np.uint8)
    m[20:40, 20:40] = 1
    m[26:34, 26:34] = 0  # a hole of 64 px: the outer outline fills it
    m[50, 70] = 2  # a lone pixel: no polygon
    m[5:9, 5:9] = 255  # ignore: YOLO-seg cannot hold it, counted in neither
    lines = mask_to_yolo_seg(m)
    assert yolo_seg_difference(m, lines) == (64 + 1, 400 - 64 + 1)
    exact = np.zeros_like(m)
    exact[10:30, 40:70] = 2
    assert yolo_seg_difference(exact, mask_to_yolo_seg(exact)) == (0, 600)


def test_cli_convert_to_yolo_seg_says_what_the_labels_lose(
    tmp_path: Path, make_square_dataset
) -> None:
    root = make_square_dataset(tmp_path / "ds", n_train=2, n_val=1)
    args = ["convert", str(root / "masks"), "--to", "yolo-seg", "--data", str(root / "data.yaml")]
    exact = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "exact")])
    assert exact.exit_code == 0, exact.output
    assert "approximate" not in exact.output  # squares: the polygons hold them exactly
    image = load_data_yaml(root / "data.yaml").images("train")[0]
    mask_path = root / "masks" / "train" / f"{image.stem}.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    ys, xs = np.nonzero((mask > 0) & (mask < 255))
    mask[ys.min() + 3 : ys.min() + 5, xs.min() + 3 : xs.min() + 5] = 0  # a 4-px hole
    write_mask(mask_path, mask)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "holed")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "YOLO-seg is approximate" in text and "1 of 3 images" in text
    assert f"train/{image.name}: 4" in text and "--to coco" in text


def test_coco_corrections_by_name_and_polygon() -> None:
    coco = {
        "images": [{"id": 7, "file_name": "x.jpg", "width": 20, "height": 10}],
        "categories": [{"id": 40, "name": "damage"}, {"id": 41, "name": "dirt"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 40, "segmentation": [[2, 2, 8, 2, 8, 8, 2, 8]]}
        ],
    }
    maps = coco_to_masks(coco, names=NAMES)
    assert set(np.unique(maps["x.jpg"]).tolist()) == {0, 2}
    with pytest.raises(DatasetError, match="category 'dirt' is not in names"):
        coco_to_masks(coco, names=["damage"])
    with pytest.raises(DatasetError, match="label values \\[3\\] have no class"):
        masks_to_coco(["a.png"], [np.full((4, 4), 3, np.uint8)], NAMES)


def test_write_yolo_seg_layout(label_map: np.ndarray, tmp_path: Path) -> None:
    image = tmp_path / "src" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.zeros((120, 160, 3), np.uint8))
    data_yaml = write_yolo_seg(tmp_path / "out", [("val", "sub/a.png", image, label_map)], NAMES)
    config = yaml.safe_load(data_yaml.read_text())
    assert config == {
        "path": str((tmp_path / "out").resolve()),
        "val": "images/val",
        "names": {0: "dirt", 1: "damage"},
    }
    assert (tmp_path / "out" / "images" / "val" / "sub" / "a.png").resolve() == image.resolve()
    label_file = tmp_path / "out" / "labels" / "val" / "sub" / "a.txt"
    assert label_file.read_text().splitlines() == mask_to_yolo_seg(label_map)
    dataset = load_data_yaml(data_yaml)
    assert dataset.names == NAMES
    assert len(dataset.labels(dataset.images("val")[0])) == 4


@pytest.mark.parametrize("to", ["coco", "yolo-seg", "cvat", "label-studio"])
def test_cli_convert(to: str, tmp_path: Path, make_square_dataset) -> None:
    root = make_square_dataset(tmp_path / "ds", n_train=2, n_val=1)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["convert", str(root / "masks"), "--to", to, "--data", str(root / "data.yaml"),
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    dataset = load_data_yaml(root / "data.yaml")
    if to in ("coco", "cvat"):
        coco = json.loads((out / "annotations" / "instances_train.json").read_text())
        assert len(coco["images"]) == 2
        maps = coco_to_masks(coco)
        for image in dataset.images("train"):
            mask = cv2.imread(str(root / "masks" / "train" / f"{image.stem}.png"), 0)
            np.testing.assert_array_equal(maps[image.name], np.where(mask == 255, 0, mask))
        polygons = all(isinstance(a["segmentation"], list) for a in coco["annotations"])
        assert polygons == (to == "cvat")  # cvat: editable polygons by default
        if to == "cvat":  # Datumaro's layout: images/<subset>/<file_name> beside annotations/
            for entry in coco["images"]:
                assert (out / "images" / "train" / entry["file_name"]).is_file()
    elif to == "label-studio":
        tasks = json.loads((out / "tasks.json").read_text())
        assert len(tasks) == 3 and "<BrushLabels" in (out / "label_config.xml").read_text()
        for task in tasks:
            name = task["data"]["b2p_name"]
            assert task["data"]["image"] == "/data/local-files/?d=" + name
            assert (out / "images" / name).is_file()
            mask = cv2.imread(str(root / "masks" / Path(name).with_suffix(".png")), 0)
            submitted = {**task, "annotations": task["predictions"]}  # as if accepted as is
            back = label_studio_to_masks([submitted], NAMES)[name]
            np.testing.assert_array_equal(back, np.where(mask == 255, 0, mask))
    else:
        converted = load_data_yaml(out / "data.yaml")
        assert converted.splits == ["train", "val"]
        assert len(converted.images("train")) == 2
        assert all(len(converted.labels(p)) >= 1 for p in converted.images("train"))


def test_cli_convert_predictions_of_one_split(tmp_path: Path, make_square_dataset) -> None:
    root = make_square_dataset(tmp_path / "ds", n_train=1, n_val=2)
    preds = tmp_path / "preds"
    for image in load_data_yaml(root / "data.yaml").images("val")[:1]:
        write_mask(preds / f"{image.stem}.png", np.ones((56, 56), np.uint8))
    args = ["convert", str(preds), "--to", "coco", "--data", str(root / "data.yaml")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c"), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output  # the second val image has no prediction
    coco = json.loads((tmp_path / "c" / "annotations" / "instances_val.json").read_text())
    assert len(coco["images"]) == 1 and len(coco["annotations"]) == 1
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "pass --split" in result.output
