"""Score a model, or a folder of predicted masks, against ground-truth masks.

Which ground-truth masks are scored: every ``*.png`` below ``GT_DIR/<split>/`` when that
folder exists, else below ``GT_DIR`` itself (so both a ``b2p label``-style masks folder and
a flat folder of masks work). The same rule picks ``PRED_DIR/<split>/`` or ``PRED_DIR``.
A prediction is matched to a ground-truth mask by its relative path; a missing prediction
counts as all background and is listed in ``EvaluationResult.missing_predictions`` (when
no ground-truth mask has a prediction, the folder is wrong: an error). With a
model, the split's images are matched to masks by ``YoloDataset.mask_name`` and predicted
at their own size (tiled at native resolution for a model trained with a crop size), so
scoring a model and scoring the masks ``b2p predict`` wrote for the same images give the
same numbers. Besides the pixel metrics, every evaluation counts defects
(:class:`~boxes2pixels.metrics.DefectCounter`): recall per defect, per class and for thin
defects, and defect-level precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data.labelmaps import read_mask
from .errors import Boxes2PixelsError, DatasetError, ImageReadError
from .io import read_image
from .metrics import (
    IGNORE,
    ConfusionMatrix,
    DefectCounter,
    DefectScores,
    SegmentationScores,
)

if TYPE_CHECKING:
    from .inference import SegmentationModel


@dataclass
class EvaluationResult:
    """Scores of one evaluation and what could not be scored.

    Attributes:
        scores: every metric (``scores.miou``, ``scores.per_class["dirt"].iou``, ...).
        gt_dir: folder of the ground-truth masks that were scored.
        pred_dir: folder of the predictions (``None`` when a model predicted).
        model: the model that predicted (its spec; with ``pred``, the one ``b2p predict``
            recorded), or ``None``.
        missing_predictions: ground-truth masks (relative names) with no prediction; each
            was scored as an all-background prediction.
        unreadable: images (model mode) that could not be read, scored as background; each
            is also in ``missing_predictions``.
        unscored_images: split images with no ground-truth mask (model mode), not scored.
        random_backbone: the model's backbone was randomly initialised (with ``pred``: as
            recorded by ``b2p predict``).
        defects: per-defect recall (overall, per class, thin) and precision
            (:class:`~boxes2pixels.metrics.DefectScores`; definitions in docs/resolution.md).
    """

    scores: SegmentationScores
    gt_dir: Path
    pred_dir: Path | None = None
    model: str | None = None
    missing_predictions: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    unscored_images: list[str] = field(default_factory=list)
    random_backbone: bool = False
    defects: DefectScores | None = None

    def to_dict(self) -> dict[str, object]:
        """The ``b2p evaluate --json`` document: the keys of ``SegmentationScores`` and
        ``defects`` (``DefectScores.to_dict``)."""
        out = self.scores.to_dict()
        if self.defects is not None:
            out["defects"] = self.defects.to_dict()
        return out

    def notes(self) -> list[tuple[str, str]]:
        """What the reader should know besides the scores, as ``(kind, text)`` pairs.

        ``kind`` is ``note`` or ``warning``: a random backbone, ground-truth masks without a
        prediction, unreadable images, and split images without ground truth.
        """
        notes: list[tuple[str, str]] = []
        if self.random_backbone:
            notes.append(
                (
                    "note",
                    "this model's backbone was randomly initialised (test/demo model), so "
                    "these figures say nothing about the method.",
                )
            )
        if self.missing_predictions:
            shown = ", ".join(self.missing_predictions[:5])
            more = len(self.missing_predictions) - 5
            notes.append(
                (
                    "warning",
                    f"{len(self.missing_predictions)} ground-truth masks had no prediction and "
                    f"were scored as all background: {shown}"
                    + (f" (and {more} more)" if more > 0 else ""),
                )
            )
        notes += [("warning", f"unreadable image {image}") for image in self.unreadable]
        if self.unscored_images:
            notes.append(
                (
                    "note",
                    f"{len(self.unscored_images)} images of the split have no ground-truth mask "
                    f"and were not scored (first: {self.unscored_images[0]})",
                )
            )
        return notes


def command_inputs(
    model: str | None, data_yaml: Path | None, pred: Path | None
) -> tuple[str | None, Path | None]:
    """The ``(model, data_yaml)`` that ``b2p evaluate``'s positional arguments stand for.

    With ``pred``, a single ``.yaml``/``.yml`` argument is the data.yaml (it names classes).

    Raises:
        Boxes2PixelsError: both a model and ``pred``, or a model without its data.yaml.
    """
    if pred is not None:
        if data_yaml is None and model is not None and model.endswith((".yaml", ".yml")):
            return None, Path(model)
        if model is not None:
            raise Boxes2PixelsError(
                "give either MODEL DATA_YAML or --pred PRED_DIR, not both "
                "(with --pred, an optional single argument is the data.yaml for class names)"
            )
    elif model is None or data_yaml is None:
        raise Boxes2PixelsError("give MODEL and DATA_YAML, or --pred PRED_DIR")
    return model, data_yaml


def split_dir(folder: Path, split: str | None) -> Path:
    """``folder/<split>`` when that folder exists, else ``folder`` itself."""
    if split and (folder / split).is_dir():
        return folder / split
    return folder


def _mask_names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png") if p.is_file())


def _read_gt(path: Path) -> np.ndarray:
    return read_mask(path)


def _check_size(
    pred: np.ndarray, gt: np.ndarray, pred_file: Path, gt_file: Path, what: str = "prediction"
) -> None:
    if pred.shape != gt.shape:
        raise Boxes2PixelsError(
            f"size mismatch: {what} {pred_file} is {pred.shape[1]}×{pred.shape[0]} but "
            f"ground truth {gt_file} is {gt.shape[1]}×{gt.shape[0]} (width×height)"
        )


class _Accumulator:
    """A confusion matrix and a per-defect counter whose class count may be fixed up front
    or inferred from the data."""

    def __init__(self, class_names: list[str] | None) -> None:
        self.class_names = class_names
        size = len(class_names) if class_names else IGNORE
        self.cm = ConfusionMatrix(size, class_names)
        self.defects = DefectCounter(len(class_names), class_names) if class_names else None

    def update(self, pred: np.ndarray, gt: np.ndarray, gt_file: Path) -> None:
        try:
            self.cm.update(pred, gt)
        except ValueError as exc:
            raise Boxes2PixelsError(f"{gt_file}: {exc}") from exc
        if self.class_names:
            assert self.defects is not None
            self.defects.update(pred, gt)
        else:  # classes inferred: count this image with the classes it shows
            seen = max(
                int(gt[gt != IGNORE].max(initial=0)),
                int(pred[pred != IGNORE].max(initial=0)),
            )
            counter = DefectCounter(max(2, seen + 1))
            counter.update(pred, gt)
            self._add(counter)

    def _add(self, counter: DefectCounter) -> None:
        """Add the counts of a counter with possibly more classes than ``self.defects``."""
        mine = self.defects
        if mine is None or mine.num_classes < counter.num_classes:
            grown = DefectCounter(counter.num_classes)
            if mine is not None:
                grown.merge(_padded(mine, counter.num_classes))
            mine = self.defects = grown
        mine.merge(_padded(counter, mine.num_classes))

    def scores(self) -> SegmentationScores:
        if self.class_names:
            return self.cm.compute()
        used = np.flatnonzero(self.cm.matrix.sum(axis=0) + self.cm.matrix.sum(axis=1))
        size = max(2, int(used.max()) + 1 if used.size else 2)
        cm = ConfusionMatrix(size)
        cm.matrix = self.cm.matrix[:size, :size].copy()
        cm.images = self.cm.images
        return cm.compute()

    def defect_scores(self, class_names: list[str]) -> DefectScores:
        """Per-defect recall and precision, per class for ``class_names``."""
        counter = _padded(self.defects or DefectCounter(2), len(class_names))
        counter.class_names = list(class_names)
        return counter.compute()


def _padded(counter: DefectCounter, num_classes: int) -> DefectCounter:
    """A copy of ``counter`` with ``num_classes`` classes (a class it lacks counts zero)."""
    names = counter.class_names[:num_classes] if counter.num_classes >= num_classes else None
    out = DefectCounter(num_classes, names)
    k = min(num_classes, counter.num_classes)
    for name in ("defects", "found_binary", "found_class"):
        getattr(out, name)[:k] = getattr(counter, name)[:k]
    out.thin[:], out.predicted[:] = counter.thin, counter.predicted
    return out


def _predict_summary(*folders: Path) -> dict[str, Any]:
    """The ``b2p_predict.json`` that ``b2p predict`` left in a prediction folder, if any."""
    from .predict import SUMMARY_NAME

    for folder in folders:
        path = folder / SUMMARY_NAME
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                return data
    return {}


def _summary_names(summary: dict[str, Any]) -> list[str] | None:
    names = summary.get("class_names")
    if isinstance(names, list) and len(names) >= 2:
        return [str(n) for n in names]
    return None


def _progress_iter(items: list[Any], enabled: bool, label: str) -> Iterator[Any]:
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, description=label, console=Console(stderr=True), transient=True)


def evaluate(
    *,
    masks: str | Path,
    model: SegmentationModel | str | Path | None = None,
    data_yaml: str | Path | None = None,
    split: str = "test",
    pred: str | Path | None = None,
    class_names: list[str] | None = None,
    imgsz: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress: bool = True,
    revision: str | None = None,
) -> EvaluationResult:
    """Score a model on a dataset split, or a folder of predicted masks, against masks.

    Give either ``model`` with ``data_yaml`` (the model predicts the split's images) or
    ``pred`` (a folder of label-map PNGs, for example a teacher's pseudo-masks or the output
    of ``b2p predict``). Metrics accumulate one confusion matrix over all images.

    Args:
        masks: ground-truth folder: ``masks/<split>/`` is used when it exists, else ``masks``.
        model: a model object, a run folder (``best/`` is used), a saved student or baseline
            folder, a Hub id or an ``.onnx`` file written by ``b2p export`` (``load_model``).
        data_yaml: the dataset's ``data.yaml`` (needed with ``model``; with ``pred`` it only
            supplies class names).
        split: dataset split to evaluate.
        pred: folder of predicted masks (``pred/<split>/`` when it exists, else ``pred``).
        class_names: names of label values ``0..C-1`` including ``background``. Default: the
            model's, else the yaml's, else those recorded by ``b2p predict`` in ``pred``,
            else ``class_k`` for every value seen.
        imgsz: model input long side (default: the model's own).
        batch_size: images per forward pass (default: 16 on a GPU, 4 on the CPU).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``.
        progress: show a progress bar on stderr.
        revision: branch, tag, commit or ``refs/pr/N`` when ``model`` is a Hub id.

    Raises:
        Boxes2PixelsError: bad arguments, a folder without masks, a ``pred`` folder with no
            prediction for any ground-truth mask, a prediction whose size differs from its
            ground truth (both files named), or mask values out of range.
    """
    if (model is None) == (pred is None):
        raise Boxes2PixelsError("give either a model (with a data.yaml) or --pred PRED_DIR")
    masks = Path(masks)
    if not masks.is_dir():
        raise Boxes2PixelsError(f"{masks}: ground-truth mask folder not found")
    gt_dir = split_dir(masks, split)
    gt_names = _mask_names(gt_dir)
    if not gt_names:
        raise Boxes2PixelsError(f"{gt_dir}: no ground-truth mask PNGs found")

    yaml_names: list[str] | None = None
    dataset = None
    if data_yaml is not None:
        from .data.yolo import load_data_yaml

        dataset = load_data_yaml(data_yaml)
        yaml_names = ["background", *dataset.names]

    if pred is not None:
        return _evaluate_pred(
            Path(pred), gt_dir, gt_names, split, class_names or yaml_names, progress
        )
    if dataset is None:
        raise Boxes2PixelsError("evaluating a model needs the dataset's data.yaml")
    return _evaluate_model(
        model=model,
        dataset=dataset,
        gt_dir=gt_dir,
        gt_names=gt_names,
        split=split,
        class_names=class_names,
        imgsz=imgsz,
        batch_size=batch_size,
        device=device,
        precision=precision,
        progress=progress,
        revision=revision,
    )


def _evaluate_pred(
    pred_root: Path,
    gt_dir: Path,
    gt_names: list[str],
    split: str,
    class_names: list[str] | None,
    progress: bool,
) -> EvaluationResult:
    """Score the mask PNGs below ``pred_root`` (or ``pred_root/<split>``)."""
    if not pred_root.is_dir():
        raise Boxes2PixelsError(f"{pred_root}: prediction folder not found")
    pred_dir = split_dir(pred_root, split)
    if not any((pred_dir / name).is_file() for name in gt_names):
        # b2p predict writes a mask for every image it read, so not one match means the
        # wrong folder or split, not a model that found nothing: scoring it as all
        # background would print believable zeros
        raise Boxes2PixelsError(
            f"{pred_dir}: none of the {len(gt_names)} ground-truth masks of {gt_dir} has a "
            f"prediction here (looked for {pred_dir / gt_names[0]}); check --pred and --split"
        )
    recorded = _predict_summary(pred_root, pred_dir)
    acc = _Accumulator(class_names or _summary_names(recorded))
    missing: list[str] = []
    for name in _progress_iter(gt_names, progress, "evaluate"):
        gt_file = gt_dir / name
        gt = _read_gt(gt_file)
        pred_file = pred_dir / name
        if pred_file.is_file():
            p = read_mask(pred_file)
            _check_size(p, gt, pred_file, gt_file)
        else:
            missing.append(name)
            p = np.zeros_like(gt)
        acc.update(p, gt, gt_file)
    scores = acc.scores()
    return EvaluationResult(
        scores=scores,
        defects=acc.defect_scores(list(scores.per_class)),
        gt_dir=gt_dir,
        pred_dir=pred_dir,
        model=str(recorded["model"]) if recorded.get("model") else None,
        missing_predictions=missing,
        random_backbone=bool(recorded.get("random_backbone", False)),
    )


def _evaluate_model(
    *,
    model: Any,
    dataset: Any,
    gt_dir: Path,
    gt_names: list[str],
    split: str,
    class_names: list[str] | None,
    imgsz: int | None,
    batch_size: int | None,
    device: str,
    precision: str,
    progress: bool,
    revision: str | None = None,
) -> EvaluationResult:
    from .inference import backbone_is_random, load_model, plan_inference, segment

    spec = str(model) if isinstance(model, (str, Path)) else None
    loaded = load_model(model, device=device, revision=revision)
    plan = plan_inference(loaded, imgsz=imgsz, precision=precision, batch_size=batch_size)
    size = plan.batch_size
    if loaded.num_classes != dataset.num_classes:
        raise DatasetError(
            f"{dataset.yaml_path}: {len(dataset.names)} classes ({', '.join(dataset.names)}) but "
            f"the model predicts {loaded.num_classes - 1} defect classes "
            f"({', '.join(loaded.class_names[1:])})"
        )
    acc = _Accumulator(class_names or list(loaded.class_names))
    images = {dataset.mask_name(p, split): p for p in dataset.images(split)}
    gt_set = set(gt_names)
    missing: list[str] = []
    unreadable: list[str] = []
    batches = [gt_names[i : i + size] for i in range(0, len(gt_names), size)]
    for group in _progress_iter(batches, progress, "evaluate"):
        readable = _read_group(group, images, missing, unreadable)
        arrays = [img for _, img in readable]
        preds = segment(loaded, arrays, plan).labels if arrays else []
        by_name = {n: p for (n, _), p in zip(readable, preds, strict=True)}
        for name in group:
            gt_file = gt_dir / name
            gt = _read_gt(gt_file)
            if name in by_name:
                p = by_name[name]
                _check_size(p, gt, images[name], gt_file, what="image")
            else:
                p = np.zeros_like(gt)
            acc.update(p, gt, gt_file)
    scores = acc.scores()
    return EvaluationResult(
        scores=scores,
        defects=acc.defect_scores(list(scores.per_class)),
        gt_dir=gt_dir,
        model=spec,
        missing_predictions=missing,
        unreadable=unreadable,
        unscored_images=sorted(str(p) for n, p in images.items() if n not in gt_set),
        random_backbone=backbone_is_random(loaded),
    )


def _read_group(
    group: list[str], images: dict[str, Path], missing: list[str], unreadable: list[str]
) -> list[tuple[str, np.ndarray]]:
    """The readable images of a group of mask names; the others are added to ``missing``
    (and, when the file exists but cannot be read, to ``unreadable``)."""
    loaded: list[tuple[str, np.ndarray]] = []
    for name in group:
        if name not in images:
            missing.append(name)
            continue
        try:
            loaded.append((name, read_image(images[name])))
        except ImageReadError:
            missing.append(name)
            unreadable.append(str(images[name]))
    return loaded
