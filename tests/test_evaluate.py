"""`evaluate` and `b2p evaluate`: scoring mask folders and models against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.data.labelmaps import read_mask, write_mask
from boxes2pixels.errors import Boxes2PixelsError
from boxes2pixels.evaluate import EvaluationResult, evaluate, split_dir
from boxes2pixels.io import write_rgb

NAMES = ["background", "dirt", "damage"]
KEYS = [
    "miou",
    "anomaly_miou",
    "anomaly_f1",
    "binary_iou",
    "binary_f1",
    "binary_precision",
    "binary_recall",
    "per_class",
    "confusion_matrix",
    "images",
    "defects",
]

# Two images whose summed confusion matrix is [[2, 1, 1], [1, 2, 0], [1, 0, 1]] (see test_metrics).
GT_A = np.array([[0, 0, 0], [0, 1, 255]], np.uint8)
PR_A = np.array([[0, 0, 1], [2, 1, 0]], np.uint8)
GT_B = np.array([[1, 1], [2, 2]], np.uint8)
PR_B = np.array([[0, 1], [2, 0]], np.uint8)


def _write_yaml(root: Path, names: list[str]) -> Path:
    (root / "images" / "test").mkdir(parents=True, exist_ok=True)
    text = "path: .\ntest: images/test\nnames:\n" + "".join(
        f"  {i}: {n}\n" for i, n in enumerate(names)
    )
    (root / "data.yaml").write_text(text, encoding="utf-8")
    return root / "data.yaml"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_mask(gt / "test" / "a.png", GT_A)
    write_mask(gt / "test" / "sub" / "b.png", GT_B)
    write_mask(pred / "a.png", PR_A)
    write_mask(pred / "sub" / "b.png", PR_B)
    return gt, pred


def test_pred_folder_scores_match_hand_computed_matrix(folders: tuple[Path, Path]) -> None:
    gt, pred = folders
    result = evaluate(masks=gt, pred=pred, class_names=NAMES, progress=False)
    assert isinstance(result, EvaluationResult)
    assert result.gt_dir == gt / "test"
    assert result.missing_predictions == []
    s = result.scores
    assert s.confusion_matrix == [[2, 1, 1], [1, 2, 0], [1, 0, 1]]
    assert s.images == 2
    assert s.miou == pytest.approx(7 / 18)
    assert s.anomaly_miou == pytest.approx(5 / 12)
    assert s.anomaly_f1 == pytest.approx(7 / 12)
    assert s.binary_iou == pytest.approx(3 / 7)
    assert s.binary_recall == pytest.approx(3 / 5)
    d = result.to_dict()
    assert list(d) == KEYS
    assert list(d["per_class"]) == NAMES


def test_class_names_come_from_data_yaml_or_are_inferred(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    gt, pred = folders
    yaml = _write_yaml(tmp_path / "ds", ["dirt", "damage"])
    named = evaluate(masks=gt, pred=pred, data_yaml=yaml, progress=False)
    assert list(named.scores.per_class) == NAMES
    inferred = evaluate(masks=gt, pred=pred, progress=False)
    assert list(inferred.scores.per_class) == ["background", "class_1", "class_2"]
    assert inferred.scores.confusion_matrix == named.scores.confusion_matrix


def test_missing_prediction_counts_as_background_and_is_reported(
    folders: tuple[Path, Path],
) -> None:
    gt, pred = folders
    (pred / "sub" / "b.png").unlink()
    result = evaluate(masks=gt, pred=pred, class_names=NAMES, progress=False)
    assert result.missing_predictions == ["sub/b.png"]
    # image a as before; image b predicted all background: its 4 defect pixels become FN
    assert result.scores.confusion_matrix == [[2, 1, 1], [2, 1, 0], [2, 0, 0]]
    assert result.scores.images == 2
    assert result.scores.binary_recall == pytest.approx(1 / 5)


def test_split_subfolder_rule(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    write_mask(flat / "x.png", GT_B)
    assert split_dir(flat, "test") == flat
    nested = tmp_path / "nested"
    write_mask(nested / "val" / "x.png", GT_B)
    assert split_dir(nested, "val") == nested / "val"
    result = evaluate(masks=flat, pred=flat, split="test", class_names=NAMES, progress=False)
    assert result.scores.miou == pytest.approx(1.0)
    # predictions in PRED/<split>/ are found the same way
    write_mask(tmp_path / "p" / "val" / "x.png", GT_B)
    result = evaluate(masks=nested, pred=tmp_path / "p", split="val", progress=False)
    assert result.missing_predictions == []


def test_size_mismatch_names_both_files(folders: tuple[Path, Path]) -> None:
    gt, pred = folders
    write_mask(pred / "a.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(Boxes2PixelsError) as info:
        evaluate(masks=gt, pred=pred, class_names=NAMES, progress=False)
    message = str(info.value)
    assert str(pred / "a.png") in message
    assert str(gt / "test" / "a.png") in message


def test_bad_arguments_and_empty_folders(folders: tuple[Path, Path], tmp_path: Path) -> None:
    gt, pred = folders
    with pytest.raises(Boxes2PixelsError, match="either"):
        evaluate(masks=gt, progress=False)
    with pytest.raises(Boxes2PixelsError, match="not found"):
        evaluate(masks=tmp_path / "nope", pred=pred, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Boxes2PixelsError, match="no ground-truth"):
        evaluate(masks=tmp_path / "empty", pred=pred, progress=False)
    with pytest.raises(Boxes2PixelsError, match=r"data\.yaml"):
        evaluate(masks=gt, model="some/model", progress=False)


def test_target_value_outside_classes_names_the_file(folders: tuple[Path, Path]) -> None:
    gt, pred = folders
    write_mask(gt / "test" / "a.png", np.full((2, 3), 7, np.uint8))
    with pytest.raises(Boxes2PixelsError, match=r"a\.png"):
        evaluate(masks=gt, pred=pred, class_names=NAMES, progress=False)


def test_cli_pred_json_has_exactly_the_documented_keys(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    gt, pred = folders
    yaml = _write_yaml(tmp_path / "ds", ["dirt", "damage"])
    out = tmp_path / "scores.json"
    res = CliRunner().invoke(
        app, ["evaluate", str(yaml), "--pred", str(pred), "--masks", str(gt), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert list(d) == KEYS
    assert d["miou"] == pytest.approx(7 / 18)
    assert set(d["per_class"]) == set(NAMES)
    assert "anomaly_miou" in res.stdout and "dirt" in res.stdout


def test_cli_reports_missing_and_rejects_model_with_pred(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    gt, pred = folders
    (pred / "a.png").unlink()
    res = CliRunner().invoke(app, ["evaluate", "--pred", str(pred), "--masks", str(gt)])
    assert res.exit_code == 0, res.output
    assert "a.png" in res.output and "background" in res.output
    res = CliRunner().invoke(app, ["evaluate", "runs/x", "--pred", str(pred), "--masks", str(gt)])
    assert res.exit_code == 1
    assert "not both" in res.output
    res = CliRunner().invoke(app, ["evaluate", "--masks", str(gt)])
    assert res.exit_code == 1


# ---------------------------------------------------------------------------------------------
# With a real (tiny, random) student
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tiny_student, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    tiny_student.save_pretrained(run / "best")
    return run


def _tiny_dataset(root: Path) -> tuple[Path, Path]:
    """A YOLO dataset with three test images of different sizes and hand-made GT masks."""
    yaml = _write_yaml(root, ["dirt", "damage"])
    rng = np.random.default_rng(1)
    gt = root.parent / "gt"
    sizes = {"a": (42, 56), "b": (30, 50), "sub/c": (56, 28)}
    for name, (h, w) in sizes.items():
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[h // 4 : h // 2, w // 4 : w // 2] = (250, 200, 40)
        write_rgb(root / "images" / "test" / f"{name}.png", img)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : h // 2, w // 4 : w // 2] = 1
        mask[-3:, -3:] = 2
        write_mask(gt / "test" / f"{name}.png", mask)
    return yaml, gt


def test_cli_predict_then_evaluate_pred_equals_evaluate_model(
    model_dir: Path, tmp_path: Path
) -> None:
    yaml, gt = _tiny_dataset(tmp_path / "ds")
    runner = CliRunner()
    pred = tmp_path / "pred"
    res = runner.invoke(
        app,
        [
            "predict", str(model_dir), str(tmp_path / "ds" / "images" / "test"),
            "--out", str(pred), "--precision", "fp32",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert read_mask(pred / "sub" / "c.png").shape == (56, 28)

    res = runner.invoke(
        app,
        ["evaluate", "--pred", str(pred), "--masks", str(gt), "--json", str(tmp_path / "p.json")],
    )
    assert res.exit_code == 0, res.output
    assert "randomly initialised" in res.output  # recorded by b2p predict, reported here too
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(model_dir),
            str(yaml),
            "--split",
            "test",
            "--masks",
            str(gt),
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "m.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    from_pred = json.loads((tmp_path / "p.json").read_text())
    from_model = json.loads((tmp_path / "m.json").read_text())
    assert from_model["images"] == 3
    assert from_pred == from_model
    assert sum(map(sum, from_model["confusion_matrix"])) == 42 * 56 + 30 * 50 + 56 * 28


def test_evaluate_model_reports_images_without_ground_truth(
    model_dir: Path, tmp_path: Path
) -> None:
    yaml, gt = _tiny_dataset(tmp_path / "ds")
    (gt / "test" / "b.png").unlink()
    write_mask(gt / "test" / "orphan.png", np.ones((14, 14), np.uint8))
    result = evaluate(model=model_dir, data_yaml=yaml, masks=gt, device="cpu", progress=False)
    assert result.scores.images == 3  # a, sub/c and the orphan (as background)
    assert result.missing_predictions == ["orphan.png"]
    assert [Path(p).name for p in result.unscored_images] == ["b.png"]
    assert result.random_backbone is True


def test_evaluate_model_size_mismatch_names_image_and_mask(model_dir: Path, tmp_path: Path) -> None:
    yaml, gt = _tiny_dataset(tmp_path / "ds")
    write_mask(gt / "test" / "a.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(Boxes2PixelsError) as info:
        evaluate(model=model_dir, data_yaml=yaml, masks=gt, device="cpu", progress=False)
    assert "a.png" in str(info.value) and str(gt / "test" / "a.png") in str(info.value)


def test_evaluate_model_rejects_dataset_with_other_classes(model_dir: Path, tmp_path: Path) -> None:
    _, gt = _tiny_dataset(tmp_path / "ds")
    other = _write_yaml(tmp_path / "other", ["crack"])
    with pytest.raises(Boxes2PixelsError, match="crack"):
        evaluate(model=model_dir, data_yaml=other, masks=gt, device="cpu", progress=False)


# ---------------------------------------------------------------------------------------------
# Every kind of model: a baseline folder and an exported .onnx file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["baseline", "onnx"])
def test_cli_evaluate_a_baseline_folder_or_an_onnx_file(
    kind: str, baseline_dir: Path, onnx_file: Path, tmp_path: Path
) -> None:
    """Scoring the model equals scoring the masks `b2p predict` wrote with it."""
    model = str(baseline_dir if kind == "baseline" else onnx_file)
    yaml, gt = _tiny_dataset(tmp_path / "ds")
    runner = CliRunner()
    pred = tmp_path / "pred"
    images = str(tmp_path / "ds" / "images" / "test")
    args = ["predict", model, images, "--out", str(pred), "--device", "cpu", "--precision", "fp32"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["evaluate", "--pred", str(pred), "--masks", str(gt), "--json", str(tmp_path / "p.json")],
    )
    assert res.exit_code == 0, res.output
    args = ["evaluate", model, str(yaml), "--masks", str(gt), "--device", "cpu"]
    res = runner.invoke(app, [*args, "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert "randomly initialised" in res.output
    from_model = json.loads((tmp_path / "m.json").read_text())
    assert from_model["images"] == 3
    assert from_model == json.loads((tmp_path / "p.json").read_text())
