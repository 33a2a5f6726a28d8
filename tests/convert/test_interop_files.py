"""Masks and labels as other tools write and read them (PIL, OpenCV, torchvision, Ultralytics)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from torchvision.io import ImageReadMode, read_image

from boxes2pixels.data.labelmaps import read_mask, write_mask
from boxes2pixels.data.yolo import load_data_yaml, parse_label_text

# torchvision announces its own decoders' deprecation (it still reads PNGs)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision.*")

VALUES = np.array([[0, 1, 2, 255], [3, 2, 1, 0]], dtype=np.uint8)


def test_masks_are_plain_grayscale_class_indices_for_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    write_mask(path, VALUES)
    with Image.open(path) as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), VALUES)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), VALUES)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), VALUES)
    np.testing.assert_array_equal(read_image(str(path))[0].numpy(), VALUES)
    np.testing.assert_array_equal(read_image(str(path), ImageReadMode.GRAY)[0].numpy(), VALUES)
    np.testing.assert_array_equal(read_mask(path), VALUES)


def test_palette_masks_are_opt_in_and_still_read_as_indices(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    write_mask(path, VALUES, palette=True)
    with Image.open(path) as img:
        assert img.mode == "P"
    np.testing.assert_array_equal(read_mask(path), VALUES)
    # why the default has no palette: OpenCV reads colour luminance, not the class indices
    assert not np.array_equal(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), VALUES)


# Ultralytics' documented segment example: a 3-point and a 5-point polygon
# (docs.ultralytics.com/datasets/segment), and the boxes its loader makes of them.
ULTRALYTICS_SEGMENTS = (
    "0 0.681 0.485 0.670 0.487 0.676 0.487\n"
    "1 0.504 0.000 0.501 0.004 0.498 0.004 0.493 0.010 0.492 0.0104\n"
)
ULTRALYTICS_BOXES = [[0.6755, 0.486, 0.011, 0.002], [0.498, 0.0052, 0.012, 0.0104]]


def test_segment_lines_become_their_boxes_and_keep_the_polygon() -> None:
    labels = parse_label_text(ULTRALYTICS_SEGMENTS, num_classes=2)
    assert not labels.issues
    assert labels.classes.tolist() == [0, 1]
    np.testing.assert_allclose(labels.boxes_cxcywh, ULTRALYTICS_BOXES, atol=1e-9)
    assert [p.shape for p in labels.polygons] == [(3, 2), (5, 2)]
    np.testing.assert_allclose(labels.polygons[0][1], [0.670, 0.487])
    mixed = parse_label_text("0 0.5 0.5 0.2 0.2\n" + ULTRALYTICS_SEGMENTS, num_classes=2)
    assert len(mixed) == 3 and mixed.polygons[0] is None
    for bad in ("0 0.1 0.2 0.3 0.4 0.5", "0 0.1 0.2 0.3 0.4 0.5 0.6 0.7"):
        issues = parse_label_text(bad, num_classes=2).issues
        assert [i.kind for i in issues] == ["malformed"]
        assert "polygon" in issues[0].message


def test_list_files_resolve_as_ultralytics(tmp_path: Path, monkeypatch) -> None:
    def image(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)
        return path

    lists = tmp_path / "lists"
    near = image(lists / "images" / "a.png")  # './' : relative to the list file's folder
    cwd_relative = image(tmp_path / "work" / "images" / "b.png")  # as written: from the cwd
    absolute = image(tmp_path / "c.png")
    lists.mkdir(exist_ok=True)
    (lists / "train.txt").write_text(f"./images/a.png\nimages/b.png\n{absolute}\n")
    (tmp_path / "data.yaml").write_text("train: lists/train.txt\nnames: [scratch]\n")
    monkeypatch.chdir(tmp_path / "work")
    found = load_data_yaml(tmp_path / "data.yaml").images("train")
    assert {Path(os.path.abspath(p)) for p in found} == {near, cwd_relative, absolute}
