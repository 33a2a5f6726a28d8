"""The demo report: ``report.html`` (self-contained) and ``report.md`` with the same content.

Built as one :class:`~boxes2pixels.reporting.Document`: the weights statement, what ran, the
test scores (with the ``b2p evaluate`` commands that print them), training curves read from
each run's ``metrics.csv``, the qualitative panels (:mod:`boxes2pixels.demo.panels`) and the
stage timings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..reporting import (
    METRIC_LABELS,
    Curve,
    Document,
    Picture,
    format_metric,
    plot_curves,
    png_bytes,
    write_document,
)
from .layout import (
    PRED_DIR,
    PRED_DIR_NO_CORRECTION,
    PSEUDO_DIR,
    REPORT_FILES,
    RUN_DIR_NO_CORRECTION,
    read_history,
)
from .panels import choose_panel_images, render_panel
from .settings import DemoResult

CURVES_FIGSIZE = (12.0, 3.6)
CURVES_DPI = 100
TRAINING_CURVES = (
    Curve("loss", "training loss"),
    Curve("val_anomaly_miou", "val anomaly mIoU (vs pseudo-masks)"),
    Curve("corrected_share", "pixels relabelled by self-correction (%)", 100.0, from_zero=True),
)
ROW_LABELS = {
    "teacher": "teacher pseudo-masks",
    "student": "student",
    "student_no_correction": "student without self-correction",
}
"""First-column labels of the metrics table, by key of ``DemoResult.scores``."""
_STAGE_NAMES = {
    "data": "generate data",
    "label": "label (teacher)",
    "train": "train student",
    "predict": "predict test split",
    "evaluate": "evaluate",
    "ablation": "train + predict without self-correction",
    "report": "report",
}


def plot_training_curves(
    histories: dict[str, list[dict[str, float]]], correction_start: int | None = None
) -> bytes:
    """Training curves as a PNG of ``CURVES_FIGSIZE`` × ``CURVES_DPI`` pixels.

    Three plots per epoch: training loss, validation anomaly mIoU (against the validation
    pseudo-masks, EMA weights) and the share of pixels the self-correction relabelled.

    Args:
        histories: run label → rows of its ``metrics.csv`` (numbers; NaN for empty cells).
        correction_start: first epoch (1-based) with self-correction, marked by a line.
    """
    return plot_curves(
        histories,
        TRAINING_CURVES,
        mark_epoch=correction_start,
        figsize=CURVES_FIGSIZE,
        dpi=CURVES_DPI,
    )


def _teacher_sentence(teacher: dict[str, Any]) -> str:
    name = str(teacher.get("name", "?"))
    checkpoint = teacher.get("checkpoint")
    if checkpoint:
        sha = str(teacher.get("sha256") or "")[:12]
        return (
            f"The teacher, **{name}**, used the weights in `{checkpoint}`"
            + (f" (sha256 {sha}…)" if sha else "")
            + "; the demo cannot tell whether that file holds trained or random weights."
        )
    if name in ("grabcut", "box"):
        return f"The teacher, **{name}**, has no learned weights (classical image processing)."
    return f"The teacher, **{name}**, was loaded with its default options and no checkpoint."


def comparison_sentence(result: DemoResult) -> str:
    """How the student compared with its teacher in this run, from the run's own test scores
    (anomaly mIoU against the ground truth) and epochs; no figure is quoted from elsewhere."""
    student = result.scores.get("student")
    teacher = result.scores.get("teacher")
    epochs = result.settings.epochs if result.settings is not None else None
    if student is None or teacher is None:
        return "The test scores of this run are below."
    s, t = float(student.anomaly_miou), float(teacher.anomaly_miou)
    after = f" after {epochs} epochs" if epochs else ""
    if math.isnan(s) or math.isnan(t):
        return (
            f"In this run the student's anomaly mIoU{after} was {format_metric(s)} and the "
            f"teacher's {format_metric(t)} (against the ground truth of the test split)."
        )
    if s < t:
        verdict = "did not beat its teacher"
    elif s > t:
        verdict = "scored above its teacher"
    else:
        verdict = "scored the same as its teacher"
    return (
        f"In this run the student {verdict}: anomaly mIoU {format_metric(s)}{after}, against "
        f"the teacher's {format_metric(t)} (test split, against the ground truth)."
    )


def _weights_lines(result: DemoResult) -> list[str]:
    teacher = _teacher_sentence(result.teacher)
    if result.random_backbone:
        return [
            "**Random weights:** the student's DINOv2 ViT-S/14 backbone was initialised with "
            f"**random weights** ({result.backbone_note}) and trained with full fine-tuning "
            f"(`backbone_mode={result.backbone_mode}`). {teacher}",
            "**Offline this demo demonstrates the pipeline, not the paper's accuracy.** The "
            "method's strength is the pretrained DINOv2 features, which a student trained from "
            f"random weights for a few minutes on a CPU lacks. {comparison_sentence(result)} "
            "With pretrained weights available (internet access or a Hugging Face cache), "
            "`b2p demo` uses them and says so here.",
        ]
    return [
        "**Weights:** the student's DINOv2 ViT-S/14 backbone started from **pretrained** "
        f"weights ({result.backbone_note}) and was trained with BitFit "
        f"(`backbone_mode={result.backbone_mode}`); only the decoder and heads started from "
        f"random weights, as in the paper. {teacher}",
        "This is a short CPU-sized run on generated data; the paper's figures come from 200 "
        f"epochs on about 13,000 real drone photos. {comparison_sentence(result)}",
    ]


def _what_ran(
    doc: Document, result: DemoResult, manifest: dict[str, Any], quick: bool, seed: int
) -> None:
    settings = result.settings
    assert settings is not None
    doc.heading("What ran")
    splits = manifest.get("splits", {})
    counts = []
    for split in ("train", "val", "test"):
        st = splits.get(split, {})
        boxes = sum(st.get("boxes", {}).values())
        counts.append(
            f"{split} {st.get('images', 0)} ({st.get('with_defects', 0)} with defects, "
            f"{boxes} boxes, {st.get('unboxed', 0)} defects without a box)"
        )
    w, h = settings.size
    doc.bullets(
        [
            f"**Data**: {w}×{h} synthetic blade images, seed {seed}: " + "; ".join(counts) + ".",
            f"**Teacher**: `{result.teacher.get('name')}` turned the boxes of all three splits "
            f"into pseudo-masks (`{PSEUDO_DIR}/`).",
            f"**Student**: trained {settings.epochs} epochs at {settings.imgsz}×{settings.imgsz} "
            f"on the train pseudo-masks (batch {settings.batch}, lr {settings.lr:g}, EMA "
            f"{settings.ema_decay:g}, self-correction from epoch "
            f"{settings.correction_warmup + 1}, τ = 0.9), validated on the val pseudo-masks; the "
            f"best epoch's EMA weights are in "
            f"`{result.run_dir.relative_to(result.out).as_posix()}/best/`.",
            "**Scores**: the teacher's test pseudo-masks and the student's test predictions "
            f"(`{PRED_DIR}/test/`) against the exact ground truth of the test split "
            "(`data/gt_masks/test/`), one confusion matrix over the whole split.",
        ]
    )
    if quick:
        steps_total = settings.epochs * math.ceil(settings.train / settings.batch)
        doc.paragraph(
            f"`--quick` trains the student for only {steps_total} steps: its predictions show "
            "that the pipeline runs end to end, not what the student can learn; `b2p demo` "
            "without `--quick` trains it properly."
        )


def _check_commands(result: DemoResult) -> list[str]:
    o = result.out.as_posix()
    commands = [
        f"b2p evaluate {o}/data/data.yaml --pred {o}/{PSEUDO_DIR} --masks {o}/data/gt_masks "
        "--split test",
        f"b2p evaluate {o}/data/data.yaml --pred {o}/{PRED_DIR}/test --masks {o}/data/gt_masks "
        "--split test",
        f"b2p evaluate {result.run_dir.as_posix()} {o}/data/data.yaml --masks {o}/data/gt_masks "
        "--split test",
    ]
    if "student_no_correction" in result.scores:
        commands.append(
            f"b2p evaluate {o}/data/data.yaml --pred {o}/{PRED_DIR_NO_CORRECTION}/test "
            f"--masks {o}/data/gt_masks --split test"
        )
    return commands


def _scores(doc: Document, result: DemoResult, class_names: list[str], quick: bool) -> None:
    doc.heading("Test scores against the ground truth")
    rows = []
    for key, scores in result.scores.items():
        d = scores.to_dict()
        rows.append([ROW_LABELS.get(key, key), *(format_metric(d[k]) for k in METRIC_LABELS)])
    doc.table(["model", *METRIC_LABELS.values()], rows)
    per_class_rows = []
    for key, scores in result.scores.items():
        d = scores.to_dict()["per_class"]
        per_class_rows.append(
            [ROW_LABELS.get(key, key), *(format_metric(d[n]["iou"]) for n in class_names if n in d)]
        )
    doc.paragraph("Per-class IoU:")
    doc.table(["model", *(f"IoU {n}" for n in class_names)], per_class_rows)
    agree = (
        "Scoring the prediction files and running the model on the test images gave the same "
        "confusion matrix."
        if result.evaluations_agree
        else "**Warning:** scoring the prediction files and running the model on the test "
        "images gave different confusion matrices; the table shows the prediction files."
    )
    doc.paragraph(
        f"{result.scores['student'].images} test images. Every number above is what "
        f"`b2p evaluate` prints for the same files (4 decimals). {agree} To check:"
    )
    doc.code("\n".join(_check_commands(result)))
    matrix = np.asarray(result.scores["student"].confusion_matrix)
    if matrix[:, 1:].sum() == 0:
        doc.paragraph(
            "The student predicted no defect pixel on the test split: after so few training "
            "steps from random weights it has not yet learnt to commit to a defect"
            + (" (expected in `--quick` mode; the default mode trains longer)." if quick else ".")
        )
    if result.ablation_note:
        doc.paragraph(f"Student without self-correction: {result.ablation_note}.")
    _defects(doc, result, class_names)


_MASK_FOLDERS = {
    "teacher": PSEUDO_DIR,
    "student": f"{PRED_DIR}/test",
    "student_no_correction": f"{PRED_DIR_NO_CORRECTION}/test",
}
"""Where each row of the scores table has its test masks, below the demo folder."""


def _defects(doc: Document, result: DemoResult, class_names: list[str]) -> None:
    """Per-defect recall and precision of each row's test masks (as ``b2p evaluate``)."""
    from ..evaluate import evaluate

    rows = []
    for key in result.scores:
        folder = result.out / _MASK_FOLDERS.get(key, "")
        if key not in _MASK_FOLDERS or not folder.is_dir():
            continue
        found = evaluate(
            pred=folder,
            masks=result.data_yaml.parent / "gt_masks",
            split="test",
            class_names=class_names,
            progress=False,
        ).defects
        assert found is not None
        d = found.to_dict()
        per_class = [format_metric(d["per_class"][n]["recall"]) for n in class_names[1:]]
        rows.append(
            [ROW_LABELS.get(key, key), f"{d['found']} of {d['defects']}",
             format_metric(d["recall"]), *per_class,
             f"{format_metric(d['thin_recall'])} ({d['thin_found']} of {d['thin_defects']})",
             format_metric(d["precision"])]
        )  # fmt: skip
    if not rows:
        return
    doc.paragraph(
        "Per defect (each 8-connected ground-truth component is one defect; it is found when "
        "at least half of its pixels are predicted as a defect, per class as its own class; "
        "thin: a 3×3 opening removes most of it; precision: the share of predicted regions "
        "that touch a defect). Thin cracks are a small share of the pixels but the costly "
        "misses; see docs/resolution.md."
    )
    header = ["model", "found", "recall", *(f"recall {n}" for n in class_names[1:])]
    doc.table([*header, "thin recall", "precision"], rows)


def _curves(doc: Document, result: DemoResult) -> None:
    settings = result.settings
    assert settings is not None
    doc.heading("Training curves")
    histories = {"student": read_history(result.run_dir)}
    if "student_no_correction" in result.scores:
        histories["without self-correction"] = read_history(result.out / RUN_DIR_NO_CORRECTION)
    doc.picture(
        Picture(
            "training_curves.png",
            plot_training_curves(histories, settings.correction_warmup + 1),
            "training curves",
            "Per epoch: training loss; validation anomaly mIoU of the EMA weights against the "
            "val pseudo-masks (not the ground truth); share of training pixels the "
            "self-correction relabelled (dotted line: correction starts).",
        )
    )


def _panel_caption(name: str, split: str, defects: list[dict[str, Any]], boxes: int) -> str:
    if defects:
        parts = [
            f"{d['class']} {d['kind']}" + ("" if d.get("box") is not None else " (no box)")
            for d in defects
        ]
        what = f"{len(defects)} defect(s) in the ground truth: " + ", ".join(parts)
    else:
        what = "no defect in the ground truth"
    where = "" if split == "test" else f", {split} split (no test image has an unboxed defect)"
    return f"`{name}`{where}: {what}; {boxes} box(es) in the label file."


def _panels(
    doc: Document,
    result: DemoResult,
    manifest: dict[str, Any],
    dataset: Any,
    class_names: list[str],
    device: str,
) -> None:
    from ..data.labelmaps import read_mask
    from ..io import read_image

    settings = result.settings
    assert settings is not None
    doc.heading("Test images")
    doc.paragraph(
        "Columns: the image with its annotation boxes | the teacher's pseudo-mask | the "
        "student's prediction | the ground truth (defects that have no box outlined in white) "
        "| errors of the student against the ground truth: green true positive, red false "
        "positive, blue false negative, purple wrong defect class."
    )
    student = None
    data = result.data_yaml.parent
    for i, (split, name, _why) in enumerate(choose_panel_images(manifest, settings.panels)):
        image_path = data / "images" / split / f"{name}.jpg"
        image = read_image(image_path)
        labels = dataset.labels(image_path)
        boxes = labels.xyxy(image.shape[1], image.shape[0])
        pseudo = read_mask(result.out / PSEUDO_DIR / split / f"{name}.png")
        gt = read_mask(data / "gt_masks" / split / f"{name}.png")
        if split == "test":
            pred = read_mask(result.out / PRED_DIR / "test" / f"{name}.png")
        else:
            if student is None:
                from ..inference import load_model

                student = load_model(result.run_dir, device=device)
            pred = student.predict(image)[0]
        defects = manifest["images"][split][name]["defects"]
        unboxed = [d["bbox"] for d in defects if d.get("box") is None]
        picture = render_panel(image, boxes, labels.classes, pseudo, pred, gt, class_names, unboxed)
        doc.picture(
            Picture(
                f"panel_{i + 1}_{split}_{name}.png",
                png_bytes(picture),
                f"panel {name}",
                _panel_caption(name, split, defects, len(boxes)),
            )
        )


def _run_facts(doc: Document, result: DemoResult, device: str, quick: bool, seed: int) -> None:
    doc.heading("Run")
    timing_rows = []
    for key, seconds in result.timings.items():
        if key == "report":
            continue
        reused = " (reused from an earlier run)" if key in result.reused else ""
        timing_rows.append([_STAGE_NAMES.get(key, key) + reused, f"{seconds:.1f}"])
    doc.table(["stage", "seconds"], timing_rows)
    issues: dict[str, int] = dict(result.teacher.get("label_issues") or {})
    notes = ", ".join(f"{n} {kind}" for kind, n in sorted(issues.items())) or "none"
    doc.bullets(
        [
            f"mode: {'--quick' if quick else 'default'}; device: {device}; seed: {seed}",
            f"student: backbone init `{result.backbone_init}`, mode `{result.backbone_mode}`",
            f"teacher: `{result.teacher.get('name')}` options {result.teacher.get('options', {})}",
            f"label-file notes while labelling: {notes}",
            f"files: `{result.out.as_posix()}/` holds data/, {PSEUDO_DIR}/, runs/, {PRED_DIR}/, "
            f"report.md (pictures in {REPORT_FILES}/) and demo.json",
        ]
    )


def build_demo_report(
    result: DemoResult,
    manifest: dict[str, Any],
    *,
    device: str = "auto",
    quick: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write ``report.md`` (pictures in ``report_files/``) and ``report.html`` for a finished
    demo run.

    Args:
        result: the demo's result (scores, paths, backbone and teacher facts, timings).
        manifest: the generated dataset's ``synth.json``.
        device: device for predicting panel images outside the test split.
        quick: the run was ``--quick``.
        seed: the demo's seed.

    Returns:
        ``[report.md, report.html]``.
    """
    from ..data.yolo import load_data_yaml

    dataset = load_data_yaml(result.data_yaml)
    class_names = ["background", *dataset.names]
    doc = Document("Boxes2Pixels demo report")
    for line in _weights_lines(result):
        doc.paragraph(line)
    _what_ran(doc, result, manifest, quick, seed)
    _scores(doc, result, class_names, quick)
    _curves(doc, result)
    _panels(doc, result, manifest, dataset, class_names, device)
    _run_facts(doc, result, device, quick, seed)
    return write_document(doc, result.out, files_dir=REPORT_FILES)
