"""HQ-SAM and SAM 2 teachers, per-box scores, ``--min-score``, checkpoint families and
``b2p teachers``.

Random-weight models are built with each package's own builder and saved in the official
layout and file names (conftest ``teacher_checkpoint``); labelling runs through the CLI on
generated images, on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.data.synth import generate_dataset
from boxes2pixels.data.yolo import ImageLabels
from boxes2pixels.errors import CheckpointError, ConfigError
from boxes2pixels.label import label_dataset, label_image
from boxes2pixels.teachers import load_teacher
from boxes2pixels.teachers.base import TeacherEntry, box_masks
from boxes2pixels.teachers.catalog import teacher_status
from boxes2pixels.teachers.families import checkpoint_family, infer_model_type
from boxes2pixels.teachers.scores import TeacherOutput, segment_scored, stability_score

SIZE = (96, 64)
BOX_KEYS = {
    "class",
    "box",
    "mask_area",
    "box_coverage",
    "predicted_iou",
    "stability_score",
    "score",
    "ignored",
}


class KnownScoreTeacher:
    """Filled boxes; box ``i`` gets predicted IoU ``IOUS[i % 3]`` and stability 0.95."""

    name = "known-score"
    IOUS = (0.9, 0.3, 0.6)

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return box_masks(boxes, *image.shape[:2])

    def segment_scored(self, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput:
        iou = np.array([self.IOUS[i % 3] for i in range(len(boxes))])
        return TeacherOutput(self.segment(image, boxes), iou, np.full(len(boxes), 0.95))

    def describe(self) -> dict:
        return {"options": {}}


class MissingBackendTeacher(KnownScoreTeacher):
    """A teacher whose backend package is not installed."""

    package = "no_such_backend_module"
    distribution = "no-such-backend"
    extra = "nothing"
    input_size = 512


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated blade photos (96×64): two with two boxes each, one without."""
    root = tmp_path_factory.mktemp("family") / "ds"
    generate_dataset(root, train=3, val=0, test=0, size=SIZE, seed=3)
    return root / "data.yaml"


def _count_calls(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[int]:
    """Count forward passes of every module of class ``cls``."""
    calls: list[int] = []
    forward = cls.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", counted)
    return calls


def _encoder_class(teacher: str, model_type: str) -> type:
    if teacher == "sam2":
        from sam2.modeling.backbones.image_encoder import ImageEncoder

        return ImageEncoder
    if model_type == "vit_tiny":
        from segment_anything_hq.modeling.tiny_vit_sam import TinyViT

        return TinyViT
    from segment_anything_hq.modeling.image_encoder import ImageEncoderViT

    return ImageEncoderViT


@pytest.mark.parametrize(
    ("teacher", "model_type"),
    [
        ("sam-hq", "vit_tiny"),
        pytest.param("sam-hq", "vit_b", marks=pytest.mark.slow),
        ("sam2", "tiny"),
    ],
)
def test_label_through_the_cli_one_encoder_pass_per_image(
    teacher: str,
    model_type: str,
    dataset: Path,
    teacher_checkpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint = teacher_checkpoint(teacher, model_type)
    calls = _count_calls(monkeypatch, _encoder_class(teacher, model_type))
    out = tmp_path / "masks"
    args = ["label", str(dataset), "-t", teacher, "-o", str(out), "--splits", "train"]
    args += ["--checkpoint", str(checkpoint), "--device", "cpu", "--crop", "off", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(calls) == 2 == manifest["splits"]["train"]["encoder_passes"]  # 2 images with boxes
    for png in sorted((out / "train").glob("*.png")):
        assert read_mask(png).shape == (SIZE[1], SIZE[0])
    assert manifest["teacher"]["options"]["model_type"] == model_type
    assert manifest["teacher"]["sha256"] and manifest["min_score"] is None
    records = [b for image in manifest["images"].values() for b in image["boxes"]]
    assert len(records) == 4 and all(set(b) == BOX_KEYS for b in records)
    for b in records:
        assert isinstance(b["predicted_iou"], float) and 0 <= b["stability_score"] <= 1
        assert b["score"] == min(b["predicted_iou"], b["stability_score"])
        assert not b["ignored"] and 0 <= b["box_coverage"] <= 1


def test_sam2_2_0_checkpoints_are_recognised(tmp_path: Path) -> None:
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2/sam2_hiera_t.yaml", None, device="cpu")
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    teacher = load_teacher("sam2", checkpoint=str(path), device="cpu")
    assert (teacher.model_type, teacher.version) == ("tiny", "2.0")
    with pytest.raises(CheckpointError, match=r"SAM 2\.0 checkpoint.*version 2\.1"):
        load_teacher("sam2", checkpoint=str(path), device="cpu", version="2.1")


def test_hq_option_and_fp32_features_reach_the_decoder(
    teacher_checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = teacher_checkpoint("sam-hq", "vit_tiny")
    teacher = load_teacher(
        "sam-hq", checkpoint=str(path), device="cpu", hq_token_only=True, precision="bf16"
    )
    assert teacher.describe()["options"]["hq_token_only"] is True
    decoder = teacher.predictor.model.mask_decoder
    seen = []
    forward = decoder.forward

    def spy(**kwargs):
        dtypes = {f.dtype for f in [kwargs["image_embeddings"], *kwargs["interm_embeddings"]]}
        seen.append((kwargs["hq_token_only"], dtypes))
        return forward(**kwargs)

    monkeypatch.setattr(decoder, "forward", spy)
    image = np.random.default_rng(0).integers(0, 255, (SIZE[1], SIZE[0], 3)).astype(np.uint8)
    out = teacher.segment_scored(image, np.array([[10, 8, 60, 40], [0, 0, 20, 20]], np.float32))
    assert out.masks.shape == (2, SIZE[1], SIZE[0]) and out.score().shape == (2,)
    # one decoder call for both boxes, with the option, on fp32 features (encoder in bf16)
    assert seen == [(True, {torch.float32})]
    assert teacher.predictor.interm_features is None  # released after the image


def test_checkpoint_given_to_the_wrong_teacher_names_the_right_one(
    teacher_checkpoint, sam_checkpoint
) -> None:
    cases = [
        ("sam", teacher_checkpoint("sam-hq", "vit_tiny"), "--teacher sam-hq --model-type vit_tiny"),
        ("sam-hq", teacher_checkpoint("sam2", "tiny"), "--teacher sam2 --model-type tiny"),
        ("sam2", sam_checkpoint("vit_t"), "--teacher mobile-sam --model-type vit_t"),
        ("sam-hq", sam_checkpoint("vit_t"), "--teacher mobile-sam"),
    ]
    for teacher, path, flag in cases:
        with pytest.raises(CheckpointError, match=r"looks like .* of ") as err:
            load_teacher(teacher, checkpoint=str(path), device="cpu")
        assert flag in str(err.value) and "\n" not in str(err.value)


def test_families_and_model_types_from_state_dict_keys(teacher_checkpoint) -> None:
    hq = torch.load(teacher_checkpoint("sam-hq", "vit_tiny"), weights_only=True)
    sam2 = torch.load(teacher_checkpoint("sam2", "tiny"), weights_only=True)["model"]
    assert checkpoint_family(hq) == "sam-hq" and infer_model_type(hq, "sam-hq") == "vit_tiny"
    assert checkpoint_family(sam2) == "sam2" and infer_model_type(sam2, "sam2") == "tiny"
    assert checkpoint_family({"something.else": torch.zeros(1)}) is None


def test_stability_score_is_the_iou_of_the_two_thresholded_masks() -> None:
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]], [[-2.0, -2.0, -2.0, -2.0]]])
    # mask 0: > +1 keeps 1 pixel, > -1 keeps 3 -> 1/3; mask 1: empty -> 0
    np.testing.assert_allclose(stability_score(logits).numpy(), [1 / 3, 0.0])
    output = TeacherOutput(np.zeros((2, 1, 4), bool), np.array([0.8, 0.1]), np.array([0.5, 0.7]))
    np.testing.assert_allclose(output.score(), [0.5, 0.1])
    unscored = segment_scored(load_teacher("box"), np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4)))
    assert unscored.predicted_iou is None and unscored.score() is None


def test_min_score_marks_low_scoring_boxes_ignore() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    # box 0 (score 0.9) is kept; box 1 (0.3) is ignored; box 2 (0.6) kept at 0.5
    labels = ImageLabels(
        classes=np.array([0, 1, 1]),
        boxes_cxcywh=np.array([[0.25, 0.5, 0.3, 0.5], [0.35, 0.5, 0.3, 0.5], [0.8, 0.2, 0.2, 0.2]]),
    )
    result = label_image(KnownScoreTeacher(), image, labels, 2, min_score=0.5)
    assert [r.ignored for r in result.box_records] == [False, True, False]
    assert [r.score for r in result.box_records] == [0.9, 0.3, 0.6]
    mask = result.mask  # boxes: 0 = x 6..23, y 10..29; 1 = x 12..29; 2 = x 42..53, y 4..11
    assert (mask[10:30, 6:12] == 1).all()  # box 0 alone
    assert (mask[10:30, 12:24] == 1).all()  # box 0 is kept where it overlaps the ignored box
    assert (mask[10:30, 24:30] == 255).all()  # the rest of box 1 is ignore
    assert (mask[4:12, 42:54] == 2).all() and (mask == 255).sum() == 20 * 6
    trusted = label_image(KnownScoreTeacher(), image, labels, 2)
    assert 255 not in trusted.mask and not any(r.ignored for r in trusted.box_records)


def test_min_score_in_the_manifest_summary_and_cli(dataset: Path, tmp_path: Path) -> None:
    summary = label_dataset(
        dataset, KnownScoreTeacher(), tmp_path / "m", splits=["train"], progress=False,
        min_score=0.5,
    )  # fmt: skip
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    boxes = [b for image in manifest["images"].values() for b in image["boxes"]]
    ignored = [b for b in boxes if b["ignored"]]
    assert len(ignored) == 2 and all(b["score"] == 0.3 for b in ignored)  # box 1 of 2 images
    per_class = manifest["splits"]["train"]["low_score_boxes"]
    assert sum(per_class.values()) == 2 and manifest["min_score"] == 0.5
    names = ["dirt", "damage"]
    expected = {names[b["class"]]: sum(x["class"] == b["class"] for x in ignored) for b in ignored}
    assert summary.low_score == expected
    part = next((tmp_path / "m" / ".parts").glob("*.jsonl")).read_text().splitlines()
    scores = [json.loads(line).get("box_scores") for line in part[1:]]
    assert sorted(map(len, scores)) == [0, 2, 2] and [0.9, 0.3] in scores

    args = ["label", str(dataset), "-t", "test_teachers_sam_family:KnownScoreTeacher"]
    args += ["-o", str(tmp_path / "cli"), "--splits", "train", "--min-score", "0.5", "-q"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "boxes below --min-score" in result.output
    with pytest.raises(ConfigError, match="gives no scores"):
        label_dataset(dataset, "box", tmp_path / "x", splits=["train"], min_score=0.5)
    result = CliRunner().invoke(app, [*args[:5], str(tmp_path / "y"), "--min-score", "2"])
    assert result.exit_code != 0


def test_teachers_command_lists_packages_extras_and_sizes() -> None:
    result = CliRunner().invoke(app, ["teachers"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "segment-anything-hq" in rows["sam-hq"] and "boxes2pixels[sam-hq]" in rows["sam-hq"]
    assert "sam2" in rows["sam2"] and "1024 px" in rows["sam2"]
    assert "native" in rows["grabcut"]
    entry = TeacherEntry("ghost", "test_teachers_sam_family:MissingBackendTeacher", "x", "1")
    status = teacher_status(entry)
    assert not status.installed and status.input_size == 512
    assert status.install_hint == 'pip install "boxes2pixels[nothing]"'
