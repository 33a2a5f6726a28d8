"""The benchmark's outputs beside the runs: ``summary.csv``, ``summary.md`` (the paper's
Table 1 layout plus more columns) and ``panels/*.png`` (image, ground truth, each run's
prediction)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.labelmaps import defect_pixels, read_mask
from ..io import read_image, write_rgb, write_text_atomic
from ..metrics import SUMMARY_METRICS
from ..reporting import (
    METRIC_LABELS,
    Document,
    fit_height,
    format_metric,
    labelled_row,
    write_document,
)
from ..viz import overlay_mask
from .runs import RunResult

PAPER_TABLE_1 = {
    "U-Net": (0.7057, 0.5629, 0.7036, 0.5427),
    "DeepLabV3-B2": (0.6867, 0.5342, 0.6955, 0.5331),
    "SegFormer-B2": (0.7231, 0.5881, 0.6939, 0.5312),
    "Boxes2Pixels": (0.7661, 0.6523, 0.7674, 0.6226),
}
"""The paper's Table 1 (manually annotated test set), shown for reference in summary.md."""
_TABLE_METRICS = (
    "miou",
    "anomaly_miou",
    "anomaly_f1",
    "binary_iou",
    "binary_precision",
    "binary_recall",
)
_MISSING = "–"


def summary_notes(
    base: Any, runs: Sequence[RunResult], split: str, images: int, encoder_init: str
) -> list[str]:
    """The notes under the summary tables: what was compared, and which runs were random."""
    notes = [
        f"Scored on the '{split}' split ({images} images) against ground-truth masks; every run "
        f"trained on the same pseudo-masks: {base.epochs} epochs at {base.imgsz}px, batch "
        f"{base.batch}, the same loss, schedule, augmentation and EMA.",
        "Baselines have no binary head: they train with the fine loss (class-weighted "
        "cross-entropy with self-correction), as in the research code.",
    ]
    randoms = [r.name for r in runs if r.init.endswith("random")]
    if randoms:
        notes.append(
            f"Randomly initialised weights (not pretrained) in: {', '.join(randoms)}; these "
            "figures do not reflect the method's real accuracy."
        )
    return notes


_DEFECT_METRICS = {
    "recall": "defect recall",
    "thin_recall": "thin-defect recall",
    "precision": "defect precision",
}
"""Per-defect figures (``EvaluationResult.defects``) in the summary, with their labels."""


def _defect_figure(run: RunResult, key: str) -> float | None:
    """One per-defect figure of a run (``None`` for runs scored before they existed)."""
    value = (run.scores.get("defects") or {}).get(key)
    return None if value is None else float(value)


def _write_csv(path: Path, runs: Sequence[RunResult], class_names: Sequence[str]) -> None:
    header = ["run", "model", *SUMMARY_METRICS, *(f"iou_{n}" for n in class_names)]
    header += [f"defect_{k}" for k in _DEFECT_METRICS]
    header += ["params_total", "params_trainable", "epochs", "best_epoch", "train_seconds", "init"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in runs:
        per_class = r.scores.get("per_class", {})
        writer.writerow(
            [
                r.name,
                r.title,
                *("" if r.scores.get(k) is None else r.scores[k] for k in SUMMARY_METRICS),
                *(
                    "" if per_class.get(n, {}).get("iou") is None else per_class[n]["iou"]
                    for n in class_names
                ),
                *("" if (v := _defect_figure(r, k)) is None else v for k in _DEFECT_METRICS),
                r.params_total,
                r.params_trainable,
                r.epochs,
                "" if r.best_epoch is None else r.best_epoch,
                round(r.train_seconds, 2),
                r.init,
            ]
        )
    write_text_atomic(path, buf.getvalue())


def summary_document(
    runs: Sequence[RunResult], class_names: Sequence[str], notes: Sequence[str] = ()
) -> Document:
    """``summary.md`` as a document: scores, sizes and times, notes, the paper's Table 1."""
    defect_names = list(class_names[1:])
    doc = Document("Benchmark")
    scores = []
    for r in runs:
        per_class = r.scores.get("per_class", {})
        cells = [format_metric(r.scores.get(k), _MISSING) for k in _TABLE_METRICS]
        cells += [format_metric(per_class.get(n, {}).get("iou"), _MISSING) for n in defect_names]
        scores.append([r.title, *cells])
    header = ["Model", *(METRIC_LABELS[k] for k in _TABLE_METRICS)]
    doc.table(header + [f"IoU {n}" for n in defect_names], scores)
    doc.table(
        ["Model", *_DEFECT_METRICS.values()],
        [
            [r.title, *(format_metric(_defect_figure(r, k), _MISSING) for k in _DEFECT_METRICS)]
            for r in runs
        ],
    )
    doc.paragraph(
        "Per defect: one defect is an 8-connected ground-truth component, found when at least "
        "half of its pixels are predicted as a defect; thin defects are those a 3×3 opening "
        "mostly removes; precision is the share of predicted regions that touch a defect."
    )
    doc.table(
        ["Model", "params (M)", "trainable (M)", "epochs", "best epoch", "train time (s)", "init"],
        [
            [
                r.title,
                f"{r.params_total / 1e6:.1f}",
                f"{r.params_trainable / 1e6:.1f}",
                str(r.epochs),
                str(r.best_epoch) if r.best_epoch is not None else _MISSING,
                f"{r.train_seconds:.0f}",
                r.init,
            ]
            for r in runs
        ],
    )
    if notes:
        doc.bullets(notes)
    doc.paragraph(
        "For reference, the paper's Table 1 (its wind-turbine test set, SAM pseudo-masks):"
    )
    doc.table(
        ["Model", *(METRIC_LABELS[k] for k in _TABLE_METRICS[:4])],
        [[m, *(f"{v:.4f}" for v in vals)] for m, vals in PAPER_TABLE_1.items()],
    )
    return doc


def write_summary(
    out: Path, runs: Sequence[RunResult], class_names: Sequence[str], notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` (paper Table 1 layout plus more columns)."""
    csv_path = out / "summary.csv"
    _write_csv(csv_path, runs, class_names)
    (md_path,) = write_document(
        summary_document(runs, class_names, notes), out, stem="summary", with_html=False
    )
    return csv_path, md_path


def _choose_panel_images(names: list[str], gt_dir: Path, limit: int) -> list[str]:
    """Up to ``limit`` mask names, those with defects in the ground truth first."""
    with_defects, without = [], []
    for name in names:
        path = gt_dir / name
        if not path.is_file():
            continue
        mask = read_mask(path)
        (with_defects if defect_pixels(mask).any() else without).append(name)
        if len(with_defects) >= limit:
            break
    return (with_defects + without)[:limit]


def write_panels(
    out: Path,
    runs: Sequence[RunResult],
    dataset: Any,
    split: str,
    gt: Path,
    class_names: Sequence[str],
    *,
    limit: int = 8,
    height: int = 320,
) -> list[Path]:
    """One PNG per chosen test image: image, ground truth, then each run's prediction."""
    from ..evaluate import split_dir

    if limit <= 0 or not runs:
        return []
    gt_dir = split_dir(gt, split)
    by_name = {dataset.mask_name(p, split): p for p in dataset.images(split)}
    written = []
    for name in _choose_panel_images(sorted(by_name), gt_dir, limit):
        image = read_image(by_name[name])
        truth = read_mask(gt_dir / name)
        tiles = [fit_height(image, height), fit_height(overlay_mask(image, truth), height)]
        titles = ["image", "ground truth"]
        for r in runs:
            pred_path = r.pred_dir / name
            pred = read_mask(pred_path) if pred_path.is_file() else np.zeros_like(truth)
            tiles.append(fit_height(overlay_mask(image, pred), height))
            titles.append(r.name)
        path = out / "panels" / (Path(name).with_suffix("").as_posix().replace("/", "__") + ".png")
        write_rgb(path, labelled_row(tiles, titles, class_names))
        written.append(path)
    return written
