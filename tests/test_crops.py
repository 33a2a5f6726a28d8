"""Teacher crops (``b2p label --crop``): planning, grouping, pasting, passes, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.data.yolo import ImageLabels
from boxes2pixels.errors import Boxes2PixelsError, ConfigError
from boxes2pixels.label import CropPolicy, combine_masks, label_dataset, label_image, plan_crops
from boxes2pixels.label.crops import box_crop, segment_in_crops
from boxes2pixels.teachers import available_teachers
from boxes2pixels.teachers.base import box_masks, teacher_input_size

W, H = 400, 300


class ShrinkingTeacher:
    """A teacher that, like SAM, looks at a shrunk copy of what it gets (``input_size``):
    inside each box, the pixels much darker than the mean of the *whole* input, decided on the
    shrunk copy and scaled back with nearest-neighbour (so results depend on the input)."""

    name = "shrinking"

    def __init__(self, input_size: int | None = 64) -> None:
        self.input_size = input_size
        self.calls: list[tuple[int, int, int]] = []

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        self.calls.append((w, h, len(boxes)))
        gray = image.mean(axis=2).astype(np.float32)
        if self.input_size is not None:
            s = self.input_size / max(h, w)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
            gray = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        dark = gray < gray.mean() - 40
        return box_masks(boxes, h, w) & dark[None]

    def describe(self) -> dict:
        return {"options": {"input_size": self.input_size}}


def _write_dataset(root: Path) -> Path:
    """Three grey images with thin dark lines; boxes: two close (one crop), one far, none."""
    rng = np.random.default_rng(1)
    specs = [
        [(1, 40, 40, 80, 70), (1, 90, 50, 130, 80), (0, 300, 200, 360, 260)],
        [(1, 150, 100, 250, 200)],
        [],
    ]
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for i, boxes in enumerate(specs):
        img = rng.integers(170, 190, (H, W, 3)).astype(np.uint8)
        lines = []
        for cls, x0, y0, x1, y1 in boxes:
            img[(y0 + y1) // 2, x0:x1] = 30  # a 1-px dark line across the box
            img[y0:y1, (x0 + x1) // 2] = 40
            cx, cy, bw, bh = (x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H
            lines.append(f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
        Image.fromarray(img).save(root / "images" / "train" / f"im{i}.png")
        (root / "labels" / "train" / f"im{i}.txt").write_text("".join(lines))
    yaml = root / "data.yaml"
    yaml.write_text("path: .\ntrain: images/train\nnames: [dirt, damage]\n")
    return yaml


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("crops"))


def test_box_crop_adds_context_and_minimum_size_and_stays_inside() -> None:
    policy = CropPolicy(context=0.5, min_size=64)
    assert box_crop(np.array([100, 100, 140, 120]), W, H, policy) == (80, 78, 160, 142)
    # a big box: its context rules; clamped to the image
    assert box_crop(np.array([0, 0, 300, 200]), W, H, policy) == (0, 0, 400, 300)
    # near a border the crop keeps its minimum size by shifting inward
    x0, y0, x1, y1 = box_crop(np.array([2, 290, 6, 299]), W, H, CropPolicy(min_size=100))
    assert (x0, x1) == (0, 100) and (y0, y1) == (200, 300)


def test_overlapping_crops_share_one_call_and_every_box_is_served() -> None:
    policy = CropPolicy(context=0.5, min_size=32)
    boxes = np.array(
        [[10, 10, 30, 30], [35, 12, 50, 28], [200, 200, 220, 220], [60, 10, 80, 30]], np.float32
    )
    crops = plan_crops(boxes, W, H, policy)
    groups = sorted(c.boxes for c in crops)
    # 0 and 1 overlap; the union then reaches 3 (a chain); 2 is alone
    assert groups == [(0, 1, 3), (2,)]
    for crop in crops:
        for i in crop.boxes:
            x0, y0, x1, y1 = boxes[i]
            assert crop.x0 <= x0 and crop.y0 <= y0 and x1 <= crop.x1 and y1 <= crop.y1
    a, b = crops
    assert not (a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1)


def test_segment_in_crops_pastes_masks_back_at_full_resolution() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    boxes = np.array([[10, 20, 30, 40], [300, 100, 320, 150]], np.float32)
    crops = plan_crops(boxes, W, H, CropPolicy(min_size=50))

    def fill(img: np.ndarray, b: np.ndarray) -> np.ndarray:
        return box_masks(b, img.shape[0], img.shape[1])

    masks = segment_in_crops(fill, image, boxes, crops)
    assert np.array_equal(masks, box_masks(boxes, H, W))


def test_policy_modes_and_teacher_input_size() -> None:
    assert CropPolicy("auto").applies_to(ShrinkingTeacher(1024))
    assert not CropPolicy("auto").applies_to(ShrinkingTeacher(None))
    assert CropPolicy("on").applies_to(ShrinkingTeacher(None))
    assert not CropPolicy("off").applies_to(ShrinkingTeacher(1024))
    with pytest.raises(ConfigError):
        CropPolicy("sometimes")
    with pytest.raises(Boxes2PixelsError, match="input_size"):
        teacher_input_size(ShrinkingTeacher(0))
    # a plugin without the attribute works at full resolution
    assert teacher_input_size(object()) is None


def test_every_registered_teacher_declares_a_valid_input_size() -> None:
    sizes = {
        name: getattr(e.load(), "input_size", "missing") for name, e in available_teachers().items()
    }
    for name, size in sizes.items():
        assert size is None or (isinstance(size, int) and size > 0), (name, size)
    assert sizes["sam"] == sizes["mobile-sam"] == 1024
    assert sizes["box"] is None and sizes["grabcut"] is None


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: read_mask(p) for p in sorted((folder / "train").glob("*.png"))}


def test_crop_off_reproduces_the_whole_photo_labelling_bit_for_bit(
    dataset: Path, tmp_path: Path
) -> None:
    from boxes2pixels.data.yolo import load_data_yaml
    from boxes2pixels.io import read_image

    teacher = ShrinkingTeacher()
    label_dataset(dataset, teacher, tmp_path / "off", splits=["train"], crop="off", progress=False)
    ds = load_data_yaml(dataset)
    got = _masks(tmp_path / "off")
    for image in ds.images("train"):
        labels = ds.labels(image)
        img = read_image(image)
        h, w = img.shape[:2]
        boxes = labels.xyxy(w, h)
        expected = (
            combine_masks(teacher.segment(img, boxes), labels.classes)
            if len(labels)
            else np.zeros((h, w), np.uint8)
        )
        assert np.array_equal(got[image.stem + ".png"], expected)
    # and the same through the CLI's --crop off: identical files
    (tmp_path / "cli").mkdir()
    result = CliRunner().invoke(
        app,
        ["label", str(dataset), "-t", "tests.test_crops:ShrinkingTeacher", "-o",
         str(tmp_path / "cli"), "--splits", "train", "--crop", "off", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in got:
        a = (tmp_path / "off" / "train" / name).read_bytes()
        assert a == (tmp_path / "cli" / "train" / name).read_bytes()


def test_auto_for_a_full_resolution_teacher_changes_nothing(dataset: Path, tmp_path: Path) -> None:
    label_dataset(
        dataset, ShrinkingTeacher(None), tmp_path / "a", splits=["train"], crop="auto",
        progress=False,
    )  # fmt: skip
    label_dataset(
        dataset, ShrinkingTeacher(None), tmp_path / "b", splits=["train"], crop="off",
        progress=False,
    )  # fmt: skip
    a, b = _masks(tmp_path / "a"), _masks(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_auto_crops_count_passes_in_summary_and_manifest(dataset: Path, tmp_path: Path) -> None:
    teacher = ShrinkingTeacher(64)
    policy = CropPolicy("auto", context=0.5, min_size=64)
    summary = label_dataset(
        dataset, teacher, tmp_path / "m", splits=["train"], crop=policy, progress=False
    )
    # image 0: two close boxes share a crop, the far one has its own; image 1: one crop
    assert summary.passes == 3 == summary.splits["train"].passes
    assert sorted(c[2] for c in teacher.calls) == [1, 1, 2]
    assert all(w < W and h < H for w, h, _ in teacher.calls)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["encoder_passes"] == 3
    assert manifest["crop"] == manifest["teacher"]["crop"]
    assert manifest["crop"]["mode"] == "auto" and manifest["crop"]["applied"] is True
    assert manifest["crop"]["teacher_input_size"] == 64
    # the crops let the shrinking teacher keep the 1-px lines it loses on the whole photo
    off = tmp_path / "off"
    label_dataset(dataset, ShrinkingTeacher(64), off, splits=["train"], crop="off", progress=False)
    on_px = sum(int((m > 0).sum()) for m in _masks(tmp_path / "m").values())
    off_px = sum(int((m > 0).sum()) for m in _masks(off).values())
    assert on_px > 2 * off_px
    off_manifest = json.loads((off / "manifest.json").read_text())
    assert off_manifest["splits"]["train"]["encoder_passes"] == 2


def test_resuming_with_other_crop_settings_is_refused(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    label_dataset(dataset, ShrinkingTeacher(64), out, splits=["train"], crop="off", progress=False)
    with pytest.raises(Boxes2PixelsError, match="teacher"):
        label_dataset(
            dataset, ShrinkingTeacher(64), out, splits=["train"], crop="on", progress=False
        )


def test_label_image_reports_passes() -> None:
    image = np.full((H, W, 3), 180, np.uint8)
    labels = ImageLabels(
        classes=np.array([0, 1], np.int64),
        boxes_cxcywh=np.array([[0.1, 0.1, 0.05, 0.05], [0.9, 0.9, 0.05, 0.05]]),
    )
    whole = label_image(ShrinkingTeacher(64), image, labels, 2)
    cropped = label_image(
        ShrinkingTeacher(64), image, labels, 2, crop=CropPolicy("on", min_size=64)
    )
    assert (whole.passes, cropped.passes) == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name, model_type", [("mobile-sam", "vit_t"), ("sam", "vit_b")])
def test_sam_teachers_label_a_5280_photo_with_one_encoder_pass_per_crop(
    name: str, model_type: str, sam_checkpoint, tmp_path: Path
) -> None:
    from boxes2pixels.teachers import load_teacher

    w, h = 5280, 2970
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(90, 160, (h, w, 3), dtype=np.uint8)).save(
        root / "images" / "train" / "big.jpg"
    )
    # two boxes 150 px apart (their 256-px crops overlap: one pass) and three far apart
    boxes = [(500, 500, 40, 12), (650, 520, 30, 20), (2600, 1500, 60, 8), (4800, 300, 20, 20),
             (300, 2700, 50, 50)]  # fmt: skip
    text = "".join(
        f"1 {x / w:.6f} {y / h:.6f} {bw / w:.6f} {bh / h:.6f}\n" for x, y, bw, bh in boxes
    )
    (root / "labels" / "train" / "big.txt").write_text(text)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [dirt, damage]\n")
    teacher = load_teacher(name, checkpoint=str(sam_checkpoint(model_type)), device="cpu")
    seen: list[tuple[int, ...]] = []
    set_image = teacher.predictor.set_image

    def counting(image: np.ndarray, *args: object, **kwargs: object) -> None:
        seen.append(image.shape)
        set_image(image, *args, **kwargs)

    teacher.predictor.set_image = counting
    summary = label_dataset(
        root / "data.yaml", teacher, tmp_path / "m", splits=["train"], progress=False
    )
    ds_boxes = np.array(
        [[x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2] for x, y, bw, bh in boxes]
    )
    promised = len(plan_crops(ds_boxes, w, h, CropPolicy()))
    assert promised == 4
    assert summary.passes == len(seen) == promised
    assert all(s[0] <= 512 and s[1] <= 512 for s in seen)  # crops, never the whole photo
    mask = read_mask(tmp_path / "m" / "train" / "big.png")
    assert mask.shape == (h, w)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["encoder_passes"] == 4
