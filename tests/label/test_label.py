"""``b2p label`` end to end: teachers through the CLI, resume, shards, bad input, previews."""

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
from boxes2pixels.errors import Boxes2PixelsError, DatasetError
from boxes2pixels.label import (
    combine_masks,
    label_dataset,
    label_image,
    parse_shard,
    shard_of,
)
from boxes2pixels.teachers import load_teacher
from boxes2pixels.teachers.checkpoints import sha256_file

NAMES = ["dirt", "damage"]


def make_dataset(
    root: Path,
    specs: dict[str, list[list[tuple[int, int, int, int, int]]]],
    size: tuple[int, int] = (64, 48),
) -> tuple[Path, dict[str, np.ndarray]]:
    """A YOLO dataset of dark noisy images with bright rectangular defects.

    ``specs[split]`` holds one list per image of ``(cls, x0, y0, x1, y1)`` defects; each gets a
    box label equal to its rectangle. Returns the yaml path and the exact label map per image
    key ``<split>/<stem>.png`` (later defects painted over earlier ones).
    """
    width, height = size
    rng = np.random.default_rng(0)
    truth = {}
    for split, images in specs.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i, defects in enumerate(images):
            image = rng.integers(10, 40, size=(height, width, 3)).astype(np.uint8)
            gt = np.zeros((height, width), np.uint8)
            lines = []
            for cls, x0, y0, x1, y1 in defects:
                image[y0:y1, x0:x1] = (230, 210, 60) if cls == 0 else (200, 40, 40)
                gt[y0:y1, x0:x1] = cls + 1
                cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
                lines.append(
                    f"{cls} {cx:.6f} {cy:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
                )
            Image.fromarray(image).save(root / "images" / split / f"img{i}.png")
            if lines:
                (root / "labels" / split / f"img{i}.txt").write_text("\n".join(lines) + "\n")
            truth[f"{split}/img{i}.png"] = gt
    yaml = root / "data.yaml"
    yaml.write_text(
        "path: .\n" + "".join(f"{s}: images/{s}\n" for s in specs) + f"names: {NAMES}\n"
    )
    return yaml, truth


SMALL = {
    "train": [[(0, 8, 8, 30, 30)], [], [(1, 34, 10, 56, 40), (0, 4, 30, 20, 44)], []],
    "val": [[(1, 20, 12, 44, 36)], []],
}


def invoke(*args: str) -> object:
    result = CliRunner().invoke(app, ["label", *args, "--quiet"])
    return result


def test_box_teacher_through_cli_exact_masks_and_manifest(tmp_path: Path) -> None:
    yaml, truth = make_dataset(tmp_path / "ds", SMALL)
    out = tmp_path / "masks"
    result = invoke(str(yaml), "--teacher", "box", "--out", str(out))
    assert result.exit_code == 0, result.output
    for key, gt in truth.items():
        np.testing.assert_array_equal(read_mask(out / key), gt, err_msg=key)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher"]["name"] == "box"
    assert manifest["teacher"]["distribution"] == "boxes2pixels"
    assert manifest["class_names"] == ["background", "dirt", "damage"]
    assert manifest["splits"]["train"]["images"] == 4
    assert manifest["splits"]["train"]["with_boxes"] == 2
    assert manifest["splits"]["train"]["boxes"] == 3
    assert manifest["splits"]["train"]["boxes_per_class"] == {"dirt": 2, "damage": 1}
    assert manifest["splits"]["val"] == {
        "images": 2,
        "with_boxes": 1,
        "boxes": 1,
        "encoder_passes": 1,
        "boxes_per_class": {"dirt": 0, "damage": 1},
        "low_score_boxes": {"dirt": 0, "damage": 0},
        "skipped": 0,
        "label_issues": 0,
    }
    assert manifest["mean_box_coverage"] == {"dirt": 1.0, "damage": 1.0}
    assert "images/s" in result.output and "wall time" in result.output
    # the dataset folders are untouched
    assert sorted(p.name for p in (tmp_path / "ds" / "images" / "train").iterdir()) == [
        "img0.png",
        "img1.png",
        "img2.png",
        "img3.png",
    ]


class CountingTeacher:
    """Box teacher that records every image it is given."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.box = load_teacher("box")

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        self.calls.append(len(boxes))
        return self.box.segment(image, boxes)

    def describe(self) -> dict:
        return {"options": {}}


def test_negatives_never_reach_the_teacher(tmp_path: Path) -> None:
    yaml, truth = make_dataset(tmp_path / "ds", SMALL)
    teacher = CountingTeacher()
    summary = label_dataset(yaml, teacher, tmp_path / "out", progress=False)
    assert sorted(teacher.calls) == [1, 1, 2]
    assert summary.labelled == 6 and summary.boxes == 4
    for key, gt in truth.items():
        if not gt.any():
            assert not read_mask(tmp_path / "out" / key).any()


def test_grabcut_through_cli_segments_the_defects(tmp_path: Path) -> None:
    specs = {"train": [[(0, 16, 12, 40, 34)], []], "val": [[(1, 10, 10, 30, 40)]]}
    yaml, truth = make_dataset(tmp_path / "ds", specs)
    # a box larger than the defect: grabcut should recover the defect, not the box
    label = tmp_path / "ds" / "labels" / "train" / "img0.txt"
    label.write_text(f"0 {28 / 64} {23 / 48} {34 / 64} {30 / 48}\n")
    out = tmp_path / "out"
    result = invoke(str(yaml), "--teacher", "grabcut", "--out", str(out), "--preview", "2")
    assert result.exit_code == 0, result.output
    for key, gt in truth.items():
        mask = read_mask(out / key)
        if gt.any():
            iou = ((mask > 0) & (gt > 0)).sum() / ((mask > 0) | (gt > 0)).sum()
            assert iou > 0.8, (key, iou)
            assert set(np.unique(mask[gt > 0])) == set(np.unique(gt[gt > 0]))
        else:
            assert not mask.any()
    previews = sorted(p.name for p in (out / "preview").iterdir())
    assert previews == ["train__img0.png", "val__img0.png"]
    assert Image.open(out / "preview" / previews[0]).size[0] > 2 * 64


def test_overlap_policies() -> None:
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 0:8, 0:8] = True  # large dirt
    masks[1, 2:4, 2:4] = True  # small damage inside it
    classes = np.array([0, 1])
    smaller = combine_masks(masks, classes, "smaller")
    assert smaller[3, 3] == 2 and smaller[6, 6] == 1 and smaller[9, 9] == 0
    assert (combine_masks(masks, classes, "larger")[0:8, 0:8] == 1).all()
    reverse = combine_masks(masks[::-1].copy(), classes[::-1].copy(), "class-order")
    assert reverse[3, 3] == 2 and reverse[6, 6] == 1
    # large mask of class 1 over small mask of class 0: the higher class id wins everywhere
    assert (combine_masks(masks, np.array([1, 0]), "class-order")[0:8, 0:8] == 2).all()


def test_label_image_is_the_per_image_step() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    labels = ImageLabels(
        classes=np.array([1, 0]),
        boxes_cxcywh=np.array([[0.5, 0.5, 0.4, 0.5], [0.5, 0.5, 0.2, 0.2]]),
    )
    result = label_image(load_teacher("box"), image, labels, num_classes=2)
    assert result.mask.shape == (20, 30) and result.mask.dtype == np.uint8
    assert result.mask[10, 15] == 1 and result.mask[6, 10] == 2  # the smaller box wins
    assert result.boxes == 2 and result.boxes_per_class.tolist() == [1, 1]
    np.testing.assert_allclose(result.coverage_sum, [1.0, 1.0])
    empty = ImageLabels(np.zeros(0, np.int64), np.zeros((0, 4)))
    teacher = CountingTeacher()
    assert not label_image(teacher, image, empty, num_classes=2).mask.any()
    assert teacher.calls == []  # no boxes: the teacher is not called

    class Flat(CountingTeacher):
        def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
            return np.zeros(image.shape[:2], bool)

    with pytest.raises(Boxes2PixelsError, match=r"teacher 'counting' returned masks of shape"):
        label_image(Flat(), image, labels, num_classes=2)


def test_a_rerun_labels_again_the_images_whose_boxes_changed(tmp_path: Path) -> None:
    """A rerun counted an image whose label file was edited since as done, keeping the mask
    of the old boxes with exit code 0."""
    yaml, truth = make_dataset(tmp_path / "ds", SMALL)
    out = tmp_path / "out"
    label_dataset(yaml, "box", out, progress=False)
    label_file = tmp_path / "ds" / "labels" / "train" / "img0.txt"
    label_file.write_text("1 0.5 0.5 0.25 0.25\n")  # the expert moved the box, new class
    added = tmp_path / "ds" / "labels" / "train" / "img1.txt"
    added.write_text("0 0.25 0.25 0.125 0.125\n")  # a box for an image that had none
    again = label_dataset(yaml, "box", out, progress=False)
    assert again.labelled == 2 and again.already_done == len(truth) - 2
    assert any("boxes that have changed" in line and "train/img0.png" in line
               for line in again.recovered)  # fmt: skip
    mask = read_mask(out / "train" / "img0.png")
    assert set(np.unique(mask[18:30, 24:40]).tolist()) == {2} and not mask[8:12, 8:12].any()
    assert read_mask(out / "train" / "img1.png").any()
    manifest = json.loads((out / "manifest.json").read_text())
    boxes = manifest["images"]["train/img0.png"]["boxes"]
    assert [b["class"] for b in boxes] == [1]
    assert label_dataset(yaml, "box", out, progress=False).labelled == 0  # now up to date


def test_resume_after_interruption(tmp_path: Path) -> None:
    yaml, truth = make_dataset(tmp_path / "ds", SMALL)
    out = tmp_path / "out"

    class Interrupted(CountingTeacher):
        def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
            if len(self.calls) == 1:
                raise KeyboardInterrupt
            return super().segment(image, boxes)

    with pytest.raises(KeyboardInterrupt):
        label_dataset(yaml, Interrupted(), out, progress=False)
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert 0 < len(done) < len(truth)
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    for key in done:
        np.testing.assert_array_equal(read_mask(out / key), truth[key])
    stamps = {key: (out / key).stat().st_mtime_ns for key in done}

    # resuming with another teacher would mix two teachers' masks: refused, nothing written
    result = invoke(str(yaml), "--teacher", "box", "--out", str(out))
    assert result.exit_code == 1
    assert "'counting'" in result.output and "--overwrite" in result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == done

    finished = label_dataset(yaml, CountingTeacher(), out, progress=False)
    assert finished.already_done == len(done)
    for key, gt in truth.items():
        np.testing.assert_array_equal(read_mask(out / key), gt)
    assert {key: (out / key).stat().st_mtime_ns for key in done} == stamps
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["images"] == 4 and manifest["splits"]["val"]["images"] == 2
    assert manifest["teacher"]["name"] == "counting" and "mixed_teachers" not in manifest

    again = label_dataset(yaml, CountingTeacher(), out, progress=False)
    assert again.labelled == 0 and again.already_done == len(truth)
    redo = label_dataset(yaml, "box", out, progress=False, overwrite=True)
    assert redo.labelled == len(truth)
    assert "mixed_teachers" not in json.loads((out / "manifest.json").read_text())


def test_shards_cover_the_full_set_exactly_once(tmp_path: Path) -> None:
    specs = {"train": [[(0, 2, 2, 9, 9)]] * 5 + [[]] * 6, "val": [[(1, 3, 3, 8, 8)]] * 3}
    yaml, truth = make_dataset(tmp_path / "ds", specs)
    out = tmp_path / "out"
    seen: list[str] = []
    for index in range(3):
        result = invoke(str(yaml), "--teacher", "box", "--out", str(out), "--shard", f"{index}/3")
        assert result.exit_code == 0, result.output
        now = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png"))
        new = sorted(set(now) - set(seen))
        assert new == sorted(k for k in truth if shard_of(k, 3) == index)
        seen = now
        assert (out / "manifest.json").exists() == (index == 2)
    assert sorted(seen) == sorted(truth)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(r["shard"][0] for r in manifest["runs"]) == [0, 1, 2]
    assert manifest["splits"]["train"]["images"] == 11
    assert parse_shard("2/4") == (2, 4)
    bad = invoke(str(yaml), "--teacher", "box", "--out", str(out), "--shard", "3/3")
    assert bad.exit_code == 1 and "0 <= I < N" in bad.output


def test_bad_labels_and_corrupt_image_are_named_warnings(tmp_path: Path) -> None:
    yaml, _ = make_dataset(tmp_path / "ds", SMALL)
    labels = tmp_path / "ds" / "labels" / "train"
    (labels / "img1.txt").write_text(
        "0 0.5 0.5 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5 0.5 -0.1 0.2\n1 0.25 0.25 0.5 0.5\n"
    )
    corrupt = tmp_path / "ds" / "images" / "train" / "img3.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    result = invoke(str(yaml), "--teacher", "box", "--out", str(out))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "img1.txt:1" in text and "img1.txt:2" in text and "img1.txt:3" in text
    assert "img3.png" in text and "skipped" in text
    mask = read_mask(out / "train" / "img1.png")
    assert set(np.unique(mask)) == {0, 2}  # only the good line, class 1 → value 2
    assert not (out / "train" / "img3.png").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["image"] for s in manifest["skipped"]] == [str(corrupt)]
    assert sorted((i["line"], i["kind"]) for i in manifest["label_issues"]) == [
        (1, "malformed"),
        (2, "bad_class"),
        (3, "bad_size"),
    ]
    assert manifest["splits"]["train"]["skipped"] == 1

    strict = invoke(str(yaml), "--teacher", "box", "--out", str(tmp_path / "o2"), "--strict")
    assert strict.exit_code == 1
    assert "img1.txt:1" in " ".join(strict.output.split())


def test_output_inside_the_dataset_is_refused(tmp_path: Path) -> None:
    yaml, _ = make_dataset(tmp_path / "ds", SMALL)
    with pytest.raises(DatasetError, match="refusing to write masks into the dataset folder"):
        label_dataset(yaml, "box", tmp_path / "ds" / "images" / "train" / "m", progress=False)
    for folder in ("labels", "images"):  # would put <split>/ masks next to the user's files
        result = invoke(str(yaml), "--teacher", "box", "--out", str(tmp_path / "ds" / folder))
        assert result.exit_code == 1 and "refusing" in result.output
    inside_root = label_dataset(yaml, "box", tmp_path / "ds" / "masks", progress=False)
    assert inside_root.labelled == 6
    unknown = invoke(
        str(yaml), "--teacher", "box", "--out", str(tmp_path / "o"), "--splits", "test"
    )
    assert unknown.exit_code == 1 and "split 'test' is not defined" in unknown.output


def test_plugin_teacher_by_object_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_teacher.py").write_text(
        "import numpy as np\n"
        "class Everything:\n"
        "    name = 'everything'\n"
        "    def segment(self, image, boxes):\n"
        "        return np.ones((len(boxes), *image.shape[:2]), bool)\n"
        "    def describe(self):\n"
        "        return {'options': {}}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yaml, _ = make_dataset(tmp_path / "ds", {"train": [[(1, 2, 2, 9, 9)], []]})
    out = tmp_path / "out"
    result = invoke(
        str(yaml), "--teacher", "my_teacher:Everything", "--out", str(out), "--splits", "train"
    )
    assert result.exit_code == 0, result.output
    assert (read_mask(out / "train" / "img0.png") == 2).all()
    assert not read_mask(out / "train" / "img1.png").any()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher"]["object"] == "my_teacher:Everything"


@pytest.mark.slow
def test_mobile_sam_and_sam_through_cli(tmp_path: Path, sam_checkpoint) -> None:
    specs = {"train": [[(0, 8, 8, 30, 30), (1, 34, 10, 56, 40)], []]}
    yaml, _ = make_dataset(tmp_path / "ds", specs, size=(40, 32))
    for teacher, model_type in (("mobile-sam", "vit_t"), ("sam", "vit_b")):
        ckpt = sam_checkpoint(model_type)
        out = tmp_path / teacher
        result = invoke(
            str(yaml),
            "--teacher",
            teacher,
            "--out",
            str(out),
            "--checkpoint",
            str(ckpt),
            "--device",
            "cpu",
            "--splits",
            "train",
            "--min-area",
            "4",
        )
        assert result.exit_code == 0, result.output
        mask = read_mask(out / "train" / "img0.png")
        assert mask.shape == (32, 40) and set(np.unique(mask)) <= {0, 1, 2}
        assert not read_mask(out / "train" / "img1.png").any()
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["teacher"]["name"] == teacher
        assert manifest["teacher"]["options"]["model_type"] == model_type
        assert manifest["teacher"]["options"]["min_area"] == 4
        assert manifest["teacher"]["checkpoint"] == str(ckpt)
        assert manifest["teacher"]["sha256"] == sha256_file(ckpt)
        assert manifest["splits"]["train"]["boxes"] == 2


def test_without_splits_it_labels_train_and_val_where_the_dataset_defines_them(
    tmp_path: Path, invoke_cli
) -> None:
    """A dataset of train and test only (as `b2p synth --val 0` writes): `b2p label` without
    `--splits` labels train; asking for val by name is an error naming it; a dataset with
    neither train nor val says to name the splits."""
    from boxes2pixels.data.synth import generate_dataset

    generate_dataset(tmp_path / "ds", train=3, val=0, test=2, size=(96, 64), seed=0)
    data = tmp_path / "ds" / "data.yaml"
    args = ("label", data, "--teacher", "box", "-q")
    code, text = invoke_cli(*args, "--out", tmp_path / "masks")
    assert code == 0, text
    assert len(list((tmp_path / "masks" / "train").glob("*.png"))) == 3
    assert not (tmp_path / "masks" / "test").exists()
    code, text = invoke_cli(*args, "--out", tmp_path / "again", "--splits", "train,val")
    assert code == 1 and "'val' is not defined" in text and str(data) in text
    assert not list((tmp_path / "again").rglob("*.png"))
    code, text = invoke_cli(*args, "--out", tmp_path / "none-named", "--splits", ",")
    assert code == 1 and "--splits names no split" in text
    assert not (tmp_path / "none-named").exists()
    generate_dataset(tmp_path / "only-test", train=0, val=0, test=2, size=(96, 64), seed=0)
    code, text = invoke_cli(
        "label", tmp_path / "only-test" / "data.yaml", "--teacher", "box",
        "--out", tmp_path / "none",
    )  # fmt: skip
    assert code == 1 and "neither 'train' nor 'val'" in text and "--splits" in text
