"""Metrics on hand-computed confusion matrices (rows = target, columns = prediction)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from boxes2pixels.metrics import ConfusionMatrix

# target/pred pairs whose confusion matrix (ignoring the 255 pixel) is
#   t0: [2, 1, 1]
#   t1: [1, 2, 0]
#   t2: [1, 0, 1]
TARGET = np.array([[0, 0, 0, 0, 1], [1, 1, 2, 2, 255]], dtype=np.uint8)
PRED = np.array([[0, 0, 1, 2, 1], [1, 0, 2, 0, 1]], dtype=np.uint8)
NAMES = ["background", "dirt", "damage"]


def _scores():
    cm = ConfusionMatrix(3, NAMES)
    cm.update(PRED, TARGET)
    return cm, cm.compute()


def test_confusion_matrix_counts() -> None:
    cm, scores = _scores()
    assert cm.matrix.tolist() == [[2, 1, 1], [1, 2, 0], [1, 0, 1]]
    assert scores.confusion_matrix == [[2, 1, 1], [1, 2, 0], [1, 0, 1]]
    assert scores.images == 1


def test_miou_and_anomaly_figures() -> None:
    _, s = _scores()
    # IoU: background 2/6, dirt 2/4, damage 1/3
    assert s.per_class["background"].iou == pytest.approx(1 / 3)
    assert s.per_class["dirt"].iou == pytest.approx(1 / 2)
    assert s.per_class["damage"].iou == pytest.approx(1 / 3)
    assert s.miou == pytest.approx(7 / 18)
    assert s.anomaly_miou == pytest.approx(5 / 12)
    # F1: dirt 4/6, damage 2/4
    assert s.per_class["dirt"].f1 == pytest.approx(2 / 3)
    assert s.per_class["damage"].f1 == pytest.approx(1 / 2)
    assert s.anomaly_f1 == pytest.approx(7 / 12)
    assert s.per_class["dirt"].precision == pytest.approx(2 / 3)
    assert s.per_class["damage"].recall == pytest.approx(1 / 2)


def test_binary_figures_merge_defect_classes() -> None:
    _, s = _scores()
    # foreground TP = 2 + 0 + 0 + 1 = 3 (a dirt pixel called damage still counts), FP = 2, FN = 2
    assert s.binary_iou == pytest.approx(3 / 7)
    assert s.binary_f1 == pytest.approx(6 / 10)
    assert s.binary_precision == pytest.approx(3 / 5)
    assert s.binary_recall == pytest.approx(3 / 5)


def test_ignore_value_255_is_not_counted() -> None:
    target = np.array([[255, 255], [0, 1]], dtype=np.uint8)
    pred = np.array([[1, 2], [0, 1]], dtype=np.uint8)
    cm = ConfusionMatrix(3, NAMES)
    cm.update(pred, target)
    assert cm.matrix.sum() == 2
    s = cm.compute()
    assert s.binary_precision == pytest.approx(1.0)
    assert s.per_class["damage"].iou != s.per_class["damage"].iou  # NaN: damage never occurs


def test_absent_class_left_out_of_means_and_none_in_dict() -> None:
    # class 3 ("crack") never appears in target or prediction
    cm = ConfusionMatrix(4, [*NAMES, "crack"])
    cm.update(PRED, TARGET)
    s = cm.compute()
    assert math.isnan(s.per_class["crack"].iou)
    assert s.miou == pytest.approx(7 / 18)
    assert s.anomaly_miou == pytest.approx(5 / 12)
    d = s.to_dict()
    assert d["per_class"]["crack"] == {"iou": None, "precision": None, "recall": None, "f1": None}


def test_class_predicted_but_absent_from_target_scores_zero() -> None:
    target = np.array([[0, 0], [1, 1]], dtype=np.uint8)
    pred = np.array([[2, 0], [1, 1]], dtype=np.uint8)
    cm = ConfusionMatrix(3, NAMES)
    cm.update(pred, target)
    s = cm.compute()
    assert s.per_class["damage"].iou == 0.0
    assert math.isnan(s.per_class["damage"].recall)  # no damage pixel in the target
    assert s.anomaly_miou == pytest.approx((1.0 + 0.0) / 2)
    assert s.per_class["background"].iou == pytest.approx(1 / 2)


def test_no_foreground_anywhere_gives_undefined_binary_figures() -> None:
    cm = ConfusionMatrix(3, NAMES)
    cm.update(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    d = cm.compute().to_dict()
    assert d["miou"] == 1.0
    assert d["anomaly_miou"] is None
    assert d["binary_iou"] is None
    assert d["binary_recall"] is None


def test_prediction_outside_class_range_counts_as_background() -> None:
    cm = ConfusionMatrix(3, NAMES)
    cm.update(np.array([[7, 255]], np.uint8), np.array([[0, 1]], np.uint8))
    assert cm.matrix.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_target_outside_class_range_is_an_error() -> None:
    cm = ConfusionMatrix(3, NAMES)
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.zeros((1, 2), np.uint8), np.array([[0, 5]], np.uint8))


def test_shape_mismatch_is_an_error() -> None:
    cm = ConfusionMatrix(3, NAMES)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_accumulates_over_images_batches_and_merges() -> None:
    a = ConfusionMatrix(3, NAMES)
    a.update(PRED, TARGET)
    a.update(np.stack([PRED, PRED]), np.stack([TARGET, TARGET]))
    assert a.images == 3
    b = ConfusionMatrix(3, NAMES)
    b.update(PRED, TARGET)
    a.merge(b)
    assert a.images == 4
    assert a.matrix.tolist() == [[8, 4, 4], [4, 8, 0], [4, 0, 4]]
    # ratios are unchanged by scaling every count
    assert a.compute().miou == pytest.approx(7 / 18)


def test_to_dict_has_exactly_the_documented_keys() -> None:
    _, s = _scores()
    d = s.to_dict()
    assert list(d) == [
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
    ]
    assert list(d["per_class"]) == NAMES
    assert set(d["per_class"]["dirt"]) == {"iou", "precision", "recall", "f1"}


def test_needs_at_least_two_classes_and_matching_names() -> None:
    with pytest.raises(ValueError):
        ConfusionMatrix(1)
    with pytest.raises(ValueError):
        ConfusionMatrix(3, ["background", "dirt"])
    assert ConfusionMatrix(3).class_names == ["background", "class_1", "class_2"]


def test_binary_precision_and_recall_differ_on_an_asymmetric_case() -> None:
    # 4 defect pixels in the target; the prediction finds 2 of them and adds 6 false ones.
    target = np.zeros((4, 4), np.uint8)
    target[0, :4] = 2
    pred = np.zeros((4, 4), np.uint8)
    pred[0, :2] = 1
    pred[2:, 1:4] = 2
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    s = cm.compute()
    assert s.binary_precision == pytest.approx(2 / 8)
    assert s.binary_recall == pytest.approx(2 / 4)
    assert s.binary_iou == pytest.approx(2 / 10)


def test_defect_counter_recall_thin_and_precision() -> None:
    from boxes2pixels.metrics import DefectCounter

    target = np.zeros((40, 40), np.uint8)
    target[2:10, 2:10] = 1  # compact dirt, found as dirt
    target[20, 5:35] = 2  # 1-px crack (thin), half found as dirt
    target[30:36, 30:36] = 2  # compact damage, missed
    target[0, 39] = 255
    pred = np.zeros_like(target)
    pred[2:10, 2:9] = 1  # 7/8 of the dirt square
    pred[20, 5:20] = 1  # 15 of 30 crack pixels, wrong class
    pred[35:39, 0:3] = 2  # a false component far from any defect
    pred[0, 38:40] = 1  # touches only an ignored pixel: not counted
    counter = DefectCounter(3, ["background", "dirt", "damage"])
    counter.update(pred, target)
    s = counter.compute()
    assert (s.defects, s.found) == (3, 2)
    assert s.recall == pytest.approx(2 / 3)
    assert s.per_class["dirt"] == {"defects": 1, "found": 1, "recall": 1.0}
    assert s.per_class["damage"] == {"defects": 2, "found": 0, "recall": 0.0}
    assert (s.thin_defects, s.thin_found) == (1, 1)
    assert (s.predicted, s.false_predicted) == (3, 1)
    assert s.precision == pytest.approx(2 / 3)
    assert s.to_dict()["per_class"]["damage"]["recall"] == 0.0


def test_defect_counter_without_defects_is_nan_not_zero() -> None:
    from boxes2pixels.metrics import DefectCounter

    counter = DefectCounter(2)
    counter.update(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    d = counter.compute().to_dict()
    assert d["recall"] is None and d["precision"] is None and d["defects"] == 0
