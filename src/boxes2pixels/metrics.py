"""Segmentation metrics from a confusion matrix accumulated over a whole split.

Definitions (DESIGN.md): mIoU over all classes including background; anomaly mIoU and
anomaly F1 over the defect classes (values 1..C-1) only; binary IoU/F1/precision/recall
with all defect classes merged into one foreground. Pixels with value 255 in the target
are ignored. A class absent from both prediction and target has undefined IoU and is left
out of the means (reported as NaN in ``per_class``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data.labelmaps import IGNORE

# The split-level figures, in the order tables and files show them.
SUMMARY_METRICS = (
    "miou",
    "anomaly_miou",
    "anomaly_f1",
    "binary_iou",
    "binary_f1",
    "binary_precision",
    "binary_recall",
)


def _div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


@dataclass
class ClassScores:
    """IoU, precision, recall and F1 of one class."""

    iou: float
    precision: float
    recall: float
    f1: float


@dataclass
class SegmentationScores:
    """Every figure the paper reports, plus the confusion matrix they come from."""

    miou: float
    anomaly_miou: float
    anomaly_f1: float
    binary_iou: float
    binary_f1: float
    binary_precision: float
    binary_recall: float
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]
    images: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict with exactly the keys of ``b2p evaluate --json`` (NaN → None)."""

        def clean(v: float) -> float | None:
            return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

        return {
            "miou": clean(self.miou),
            "anomaly_miou": clean(self.anomaly_miou),
            "anomaly_f1": clean(self.anomaly_f1),
            "binary_iou": clean(self.binary_iou),
            "binary_f1": clean(self.binary_f1),
            "binary_precision": clean(self.binary_precision),
            "binary_recall": clean(self.binary_recall),
            "per_class": {
                name: {k: clean(getattr(s, k)) for k in ("iou", "precision", "recall", "f1")}
                for name, s in self.per_class.items()
            },
            "confusion_matrix": self.confusion_matrix,
            "images": self.images,
        }


class ConfusionMatrix:
    """Accumulates a C×C confusion matrix (rows = target, columns = prediction).

    Args:
        num_classes: number of label values including background (``len(names) + 1``).
        class_names: names of values 0..C-1; defaults to ``background, class_1, ...``.
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        if num_classes < 2:
            raise ValueError("num_classes must be at least 2 (background and one defect class)")
        self.num_classes = num_classes
        self.class_names = class_names or ["background"] + [
            f"class_{i}" for i in range(1, num_classes)
        ]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.images = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one image (or a batch) of predicted and target label maps.

        Target pixels equal to 255 are ignored. Predicted values outside 0..C-1 count as
        background. Accepts numpy arrays or torch tensors of the same shape.
        """
        pred = np.asarray(pred.cpu() if hasattr(pred, "cpu") else pred).astype(np.int64)
        target = np.asarray(target.cpu() if hasattr(target, "cpu") else target).astype(np.int64)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
        self.images += 1 if target.ndim <= 2 else int(np.prod(target.shape[:-2]))
        valid = target != IGNORE
        p = pred[valid]
        t = target[valid]
        p = np.where((p >= 0) & (p < self.num_classes), p, 0)
        if t.size and (t.min() < 0 or t.max() >= self.num_classes):
            raise ValueError(
                f"target holds value {int(t.max())}, "
                f"outside 0..{self.num_classes - 1} (and not 255)"
            )
        self.matrix += np.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (for example from another process)."""
        self.matrix += other.matrix
        self.images += other.images

    def compute(self) -> SegmentationScores:
        """All metrics of the accumulated matrix."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        fp = m.sum(axis=0) - tp
        fn = m.sum(axis=1) - tp
        iou = _div(tp, tp + fp + fn)
        precision = _div(tp, tp + fp)
        recall = _div(tp, tp + fn)
        f1 = _div(2 * tp, 2 * tp + fp + fn)

        fg_tp = m[1:, 1:].sum()
        fg_fp = m[0, 1:].sum()
        fg_fn = m[1:, 0].sum()
        per_class = {
            name: ClassScores(float(iou[i]), float(precision[i]), float(recall[i]), float(f1[i]))
            for i, name in enumerate(self.class_names)
        }
        return SegmentationScores(
            miou=_nanmean(iou),
            anomaly_miou=_nanmean(iou[1:]),
            anomaly_f1=_nanmean(f1[1:]),
            binary_iou=float(_div(fg_tp, fg_tp + fg_fp + fg_fn)),
            binary_f1=float(_div(2 * fg_tp, 2 * fg_tp + fg_fp + fg_fn)),
            binary_precision=float(_div(fg_tp, fg_tp + fg_fp)),
            binary_recall=float(_div(fg_tp, fg_tp + fg_fn)),
            per_class=per_class,
            confusion_matrix=self.matrix.tolist(),
            images=self.images,
        )


# --------------------------------------------------------------------------------------------
# Per-defect (instance-level) metrics
# --------------------------------------------------------------------------------------------

FOUND_FRACTION = 0.5
"""A ground-truth defect counts as found when at least this share of its pixels is predicted
as a defect (binary) or as its own class (per class)."""
THIN_FRACTION = 0.5
"""A defect is thin when a 3×3 opening removes more than this share of its pixels."""


@dataclass
class DefectScores:
    """Defect-level recall and precision (one defect = one 8-connected ground-truth component).

    Attributes:
        defects: ground-truth defects (components) counted; ``found`` of them were found.
        recall: ``found / defects`` with all defect classes merged (binary rule).
        per_class: ``{name: {"defects", "found", "recall"}}``, found meaning "as its class".
        thin_defects, thin_found, thin_recall: the same for thin defects (binary rule).
        predicted, false_predicted, precision: predicted defect components (all classes merged)
            and those that touch no ground-truth defect pixel; precision = 1 − false / predicted.
            Predicted components that touch ignored (255) pixels are left out.
    """

    defects: int
    found: int
    recall: float
    thin_defects: int
    thin_found: int
    thin_recall: float
    predicted: int
    false_predicted: int
    precision: float
    per_class: dict[str, dict[str, float | int | None]]

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict (NaN → None)."""

        def clean(v: object) -> object:
            return None if isinstance(v, float) and np.isnan(v) else v

        out = {k: clean(v) for k, v in self.__dict__.items() if k != "per_class"}
        out["per_class"] = {
            name: {k: clean(v) for k, v in d.items()} for name, d in self.per_class.items()
        }
        return out


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """``(count, labels)`` of the 8-connected components of a boolean mask (0 = none)."""
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n - 1, labels


def _share(labels: np.ndarray, n: int, hit: np.ndarray) -> np.ndarray:
    """For components 1..n of ``labels``: the share of their pixels where ``hit`` is true."""
    size = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    hits = np.bincount(labels[hit], minlength=n + 1)[1:]
    return hits / np.maximum(size, 1)


class DefectCounter:
    """Accumulates per-defect counts over a split; see :class:`DefectScores` for definitions.

    Args:
        num_classes: label values including background; class_names: their names.
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = class_names or ["background"] + [
            f"class_{i}" for i in range(1, num_classes)
        ]
        self.defects = np.zeros(num_classes, np.int64)
        self.found_binary = np.zeros(num_classes, np.int64)
        self.found_class = np.zeros(num_classes, np.int64)
        self.thin = np.zeros(2, np.int64)  # thin defects, thin found
        self.predicted = np.zeros(2, np.int64)  # predicted components, false ones

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one image's predicted and target label maps (H×W, 255 in target = ignore)."""
        import cv2

        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
        ignore = target == IGNORE
        pred_fg = (pred > 0) & (pred < self.num_classes)
        kernel = np.ones((3, 3), np.uint8)
        for k in range(1, self.num_classes):
            n, labels = _components(target == k)
            if n == 0:
                continue
            binary = _share(labels, n, pred_fg) >= FOUND_FRACTION
            self.defects[k] += n
            self.found_binary[k] += int(binary.sum())
            self.found_class[k] += int((_share(labels, n, pred == k) >= FOUND_FRACTION).sum())
            opened = cv2.morphologyEx((target == k).astype(np.uint8), cv2.MORPH_OPEN, kernel)
            thin = _share(labels, n, opened == 0) > THIN_FRACTION
            self.thin += (int(thin.sum()), int((thin & binary).sum()))
        n, labels = _components(pred_fg)
        if n:
            target_fg = (target > 0) & ~ignore
            touches = np.bincount(labels[target_fg], minlength=n + 1)[1:] > 0
            ignored = np.bincount(labels[ignore], minlength=n + 1)[1:] > 0
            counted = ~ignored | touches
            self.predicted += (int(counted.sum()), int((counted & ~touches).sum()))

    def merge(self, other: DefectCounter) -> None:
        """Add another counter's counts."""
        for name in ("defects", "found_binary", "found_class", "thin", "predicted"):
            getattr(self, name)[:] += getattr(other, name)

    def compute(self) -> DefectScores:
        """Defect-level recall (overall, per class, thin) and precision."""
        total, found = int(self.defects.sum()), int(self.found_binary.sum())
        per_class = {
            self.class_names[k]: {
                "defects": int(self.defects[k]),
                "found": int(self.found_class[k]),
                "recall": float(_div(self.found_class[k], self.defects[k])),
            }
            for k in range(1, self.num_classes)
        }
        predicted, false = (int(v) for v in self.predicted)
        return DefectScores(
            defects=total,
            found=found,
            recall=float(_div(found, total)),
            thin_defects=int(self.thin[0]),
            thin_found=int(self.thin[1]),
            thin_recall=float(_div(self.thin[1], self.thin[0])),
            predicted=predicted,
            false_predicted=false,
            precision=float(_div(predicted - false, predicted)),
            per_class=per_class,
        )
