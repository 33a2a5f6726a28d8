"""Lossless round trips with the annotation tools (issue 21): COCO polygons scored against
themselves, the review bundle exported and imported unedited, Label Studio's brush RLE as its
SDK writes it. (The tools themselves: ``benchmarks/interop_roundtrip.py``.)"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from boxes2pixels.convert import (
    coco_to_masks,
    label_studio_rle,
    label_studio_rle_decode,
    label_studio_task,
    label_studio_to_masks,
    polygon_area,
)
from boxes2pixels.convert_folder import convert_masks
from boxes2pixels.data.labelmaps import read_mask, write_mask
from boxes2pixels.label.corrections import corrected_keys

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")
NAMES = ["dirt", "damage"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 generated train images of 160×96 with exact ground-truth masks."""
    from boxes2pixels.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("interop") / "ds"
    generate_dataset(root, train=24, val=0, test=0, size=(160, 96), seed=3)
    return root


def test_polygon_file_scored_against_itself_is_ap_1(generated: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "coco"
    summary = convert_masks(
        generated / "gt_masks", generated / "data.yaml", out, "coco", encoding="polygon"
    )
    path = out / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    assert summary.instances == len(data["annotations"]) >= 20
    for ann in data["annotations"]:
        if isinstance(ann["segmentation"], list):  # no zero-area polygon, area = the polygon's
            areas = [polygon_area(np.reshape(p, (-1, 2))) for p in ann["segmentation"]]
            assert min(areas) >= 1 and sum(areas) == ann["area"]
    gt = COCO(str(path))
    detections = [{**a, "score": 1.0} for a in data["annotations"]]
    evaluation = COCOeval(gt, gt.loadRes(detections), "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    for image in data["images"]:
        truth = read_mask(
            generated / "gt_masks" / "train" / Path(image["file_name"]).with_suffix(".png")
        )
        np.testing.assert_array_equal(coco_to_masks(data)[image["file_name"]], truth)


@pytest.fixture
def reviewed(generated: Path, tmp_path: Path, invoke_cli: Callable) -> Path:
    """``ds/``, box-teacher ``masks/`` (with an ignore patch) and ``out/correct/`` of
    ``b2p review --top 16``."""
    ds = Path(shutil.copytree(generated, tmp_path / "ds"))
    code, text = invoke_cli(
        "label", ds / "data.yaml", "--teacher", "box", "--out", tmp_path / "masks", "-q",
        "--splits", "train",
    )  # fmt: skip
    assert code == 0, text
    for path in (tmp_path / "masks" / "train").glob("*.png"):
        mask = read_mask(path)
        mask[:5, :7] = 255  # a region the teacher doubted
        write_mask(path, mask)
    code, text = invoke_cli(
        "review", ds / "data.yaml", "--masks", tmp_path / "masks", "--out", tmp_path / "out",
        "--top", "16", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, text
    return tmp_path


def _label(invoke_cli: Callable, work: Path, source: Path) -> tuple[int, str]:
    return invoke_cli(
        "label", work / "ds" / "data.yaml", "--teacher", "box", "--out", work / "masks", "-q",
        "--splits", "train", "--corrections", source,
    )  # fmt: skip


@pytest.mark.parametrize("source", ["annotations.json", "label-studio.json", "masks"])
def test_unedited_bundle_round_trip_changes_no_mask_and_marks_none_corrected(
    reviewed: Path, source: str, invoke_cli: Callable, tree_digest: Callable
) -> None:
    bundle = reviewed / "out" / "correct"
    bundled = sorted((bundle / "masks").rglob("*.png"))
    assert len(bundled) >= 4 and any((read_mask(p) == 255).any() for p in bundled)
    path = bundle / source
    if source == "label-studio.json":  # Label Studio's export after submitting each as is
        tasks = json.loads(path.read_text())
        path = reviewed / "ls-export.json"
        path.write_text(json.dumps([{**t, "annotations": t["predictions"]} for t in tasks]))
    before = {k: v for k, v in tree_digest(reviewed / "masks").items() if k.endswith(".png")}
    code, text = _label(invoke_cli, reviewed, path)
    assert code == 0, text
    after = {k: v for k, v in tree_digest(reviewed / "masks").items() if k.endswith(".png")}
    assert after == before  # byte-identical masks, the ignore patch included
    assert corrected_keys(reviewed / "masks") == set()


def test_an_edited_mask_alone_counts_as_corrected(reviewed: Path, invoke_cli: Callable) -> None:
    coco = json.loads((reviewed / "out" / "correct" / "annotations.json").read_text())
    dropped = coco["annotations"].pop(0)  # the expert deletes one wrong region
    edited = reviewed / "edited.json"
    edited.write_text(json.dumps(coco))
    code, text = _label(invoke_cli, reviewed, edited)
    assert code == 0, text
    image = next(i for i in coco["images"] if i["id"] == dropped["image_id"])
    assert corrected_keys(reviewed / "masks") == {str(Path(image["file_name"]).with_suffix(".png"))}


# Label Studio 2.x SDK, label_studio_sdk.converter.brush.mask2rle of this 3×5 mask (×255)
SDK_RLE = [0, 0, 0, 60, 57, 27, 254, 23, 0, 183, 255, 132, 192, 35, 255, 0]


def _sdk_decode(rle: list[int]) -> np.ndarray:
    """label_studio_sdk.converter.brush.decode_rle, as written there: a bit reader."""
    bits = "".join(f"{b:08b}" for b in rle)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        pos += n
        return int(bits[pos - n : pos], 2)

    num, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out, i = np.zeros(num, np.uint8), 0
    while i < num:
        x = read(1)
        j = i + 1 + read(sizes[read(2)])
        if x:
            out[i:j] = read(word)
            i = j
        else:
            while i < j:
                out[i] = read(word)
                i += 1
    return out


def test_label_studio_brush_rle_is_the_sdks() -> None:
    mask = np.zeros((3, 5), bool)
    mask[1, 1:4] = mask[2, 4] = True
    assert label_studio_rle(mask) == SDK_RLE
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 9), (40, 3), (300, 400)]:
        m = rng.random(shape) < 0.3
        m[: shape[0] // 2] = False  # a long run (over 65536 values at 300×400)
        rle = label_studio_rle(m)
        rgba = _sdk_decode(rle).reshape(*shape, 4)
        assert (rgba == (m * 255)[..., None]).all()  # every channel, as mask2rle writes
        np.testing.assert_array_equal(label_studio_rle_decode(rle, shape[1], shape[0]), m)


def test_label_studio_task_and_export() -> None:
    label_map = np.zeros((6, 8), np.uint8)
    label_map[1:3, 1:4], label_map[4, 6], label_map[0, 7] = 1, 2, 255
    task = label_studio_task("train/a.jpg", label_map, NAMES, ignore=True)
    assert task["data"] == {"image": "/data/local-files/?d=train/a.jpg", "b2p_name": "train/a.jpg"}
    regions = task["predictions"][0]["result"]
    assert [r["value"]["brushlabels"] for r in regions] == [["dirt"], ["damage"], ["ignore"]]
    for region in regions:
        assert region["type"] == "brushlabels" and region["value"]["format"] == "rle"
        assert (region["from_name"], region["to_name"]) == ("tag", "image")
        assert (region["original_width"], region["original_height"]) == (8, 6)
    exported = [
        {"data": {"image": "/data/local-files/?d=train/a.jpg"}, "annotations": task["predictions"]},
        {"data": {"image": "/data/local-files/?d=train/b.jpg"}, "predictions": task["predictions"]},
    ]
    maps = label_studio_to_masks(exported, NAMES)
    assert list(maps) == ["train/a.jpg"]  # b was never submitted: no correction
    np.testing.assert_array_equal(maps["train/a.jpg"], label_map)
