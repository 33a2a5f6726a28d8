"""The demo report: ``report.html`` (self-contained) and ``report.md`` with the same content.

The report is built once as a list of blocks (headings, paragraphs, tables, pictures) and
rendered twice: to Markdown, with the pictures written as PNG files next to it, and to HTML,
with the same PNG bytes embedded as base64 ``data:`` URIs so the file can be mailed or
opened anywhere. Pictures:

- training curves (matplotlib): loss, validation anomaly mIoU and corrected-pixel share per
  epoch, read from each run's ``metrics.csv``;
- qualitative panels in the style of the paper's figure: image with its boxes | pseudo-mask |
  student prediction | ground truth | error map, with legends for the class colours and the
  error colours.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .io import write_text_atomic

if TYPE_CHECKING:
    from .demo import DemoResult

CURVES_FIGSIZE = (12.0, 3.6)
CURVES_DPI = 100
PANEL_MIN_HEIGHT = 280
"""Panels are enlarged by an integer factor until each tile is at least this many pixels high."""
PANEL_TITLES = ("image + boxes", "pseudo-mask (teacher)", "student", "ground truth", "errors")
_UNBOXED_COLOUR = (255, 255, 255)


# --------------------------------------------------------------------------------------------
# document model


@dataclass
class Picture:
    """A PNG picture of the report: file name (in the Markdown's picture folder) and bytes."""

    name: str
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Document:
    """Blocks rendered identically to Markdown and HTML.

    Inline text may use ``**bold**`` and ```code```; everything else is escaped for HTML.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        """A section heading."""
        self.blocks.append(("h2", text))

    def paragraph(self, text: str) -> None:
        """A paragraph of inline text."""
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        """A bulleted list of inline texts."""
        self.blocks.append(("ul", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table of inline texts."""
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def code(self, text: str) -> None:
        """A preformatted block (shell commands)."""
        self.blocks.append(("code", text))

    def picture(self, picture: Picture) -> None:
        """A picture with its caption."""
        self.blocks.append(("img", picture))

    @property
    def pictures(self) -> list[Picture]:
        """Every picture, in order."""
        return [b for kind, b in self.blocks if kind == "img"]

    # ---------------------------------------------------------------- Markdown
    def to_markdown(self, picture_dir: str) -> str:
        """Markdown; pictures are referenced as ``picture_dir/<name>``."""
        lines = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "h2":
                lines += [f"## {value}", ""]
            elif kind == "p":
                lines += [value, ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows = value
                lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "code":
                lines += ["```bash", value, "```", ""]
            elif kind == "img":
                lines += [f"![{value.alt}]({picture_dir}/{value.name})", ""]
                if value.caption:
                    lines += [f"*{value.caption}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    # ---------------------------------------------------------------- HTML
    def to_html(self) -> str:
        """A self-contained HTML page; pictures embedded as base64 PNG."""
        body: list[str] = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "h2":
                body.append(f"<h2>{_inline_html(value)}</h2>")
            elif kind == "p":
                body.append(f"<p>{_inline_html(value)}</p>")
            elif kind == "ul":
                items = "".join(f"<li>{_inline_html(item)}</li>" for item in value)
                body.append(f"<ul>{items}</ul>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
                rows_html = "".join(
                    "<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                    for row in rows
                )
                body.append(
                    f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"
                )
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(value)}</code></pre>")
            elif kind == "img":
                data = base64.b64encode(value.png).decode("ascii")
                caption = (
                    f"<figcaption>{_inline_html(value.caption)}</figcaption>"
                    if value.caption
                    else ""
                )
                body.append(
                    f'<figure><img alt="{html.escape(value.alt)}" '
                    f'src="data:image/png;base64,{data}">{caption}</figure>'
                )
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
        )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1400px;
margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
h1{margin-bottom:.3em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto}code{font-size:.92em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.92em;color:#444;margin-top:.3em}
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def write_document(
    doc: Document, out: str | Path, files_dir: str = "report_files"
) -> tuple[Path, Path]:
    """Write ``out/report.md`` (+ ``out/<files_dir>/*.png``) and ``out/report.html``."""
    from .io import atomic_path

    out = Path(out)
    for pic in doc.pictures:
        with atomic_path(out / files_dir / pic.name) as tmp:
            tmp.write_bytes(pic.png)
    md, page = out / "report.md", out / "report.html"
    write_text_atomic(md, doc.to_markdown(files_dir))
    write_text_atomic(page, doc.to_html())
    return page, md


# --------------------------------------------------------------------------------------------
# pictures


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB ``uint8`` image encoded as PNG."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB image
        raise RuntimeError("OpenCV could not encode the picture as PNG")
    return buf.tobytes()


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
    from matplotlib.figure import Figure

    fig = Figure(figsize=CURVES_FIGSIZE, dpi=CURVES_DPI, layout="constrained")
    axes = fig.subplots(1, 3)
    plots = (
        ("loss", "training loss", 1.0),
        ("val_anomaly_miou", "val anomaly mIoU (vs pseudo-masks)", 1.0),
        ("corrected_share", "pixels relabelled by self-correction (%)", 100.0),
    )
    styles = ("-", "--", ":", "-.")
    for ax, (key, title, factor) in zip(axes, plots, strict=True):
        for i, (label, rows) in enumerate(histories.items()):
            epochs = [r.get("epoch", j + 1) for j, r in enumerate(rows)]
            values = [r.get(key, math.nan) * factor for r in rows]
            ax.plot(epochs, values, styles[i % len(styles)], marker="o", markersize=3, label=label)
        if correction_start is not None and any(histories.values()):
            ax.axvline(correction_start - 0.5, color="grey", linewidth=0.8, linestyle=":")
        if key == "corrected_share":
            ax.set_ylim(bottom=0.0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if len(histories) > 1:
        axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=CURVES_DPI)
    return buf.getvalue()


def panel_scale(height: int) -> int:
    """Integer enlargement of the panel tiles for an image ``height`` pixels high."""
    return max(1, math.ceil(PANEL_MIN_HEIGHT / max(height, 1)))


def _up(array: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return array
    h, w = array.shape[:2]
    return cv2.resize(array, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)


def render_panel(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    pseudo: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray,
    class_names: Sequence[str],
    unboxed: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """One row of the paper-style figure, with class and error legends below it.

    Tiles: the image with its annotation boxes | the teacher's pseudo-mask | the student's
    prediction | the ground truth (defects without a box outlined in white, "no box") | the
    error map of the prediction against the ground truth (true positive, false positive,
    false negative, wrong class). Tiles are enlarged by :func:`panel_scale` with nearest
    neighbours, so every mask pixel stays aligned with its image pixel.

    Args:
        image: RGB ``uint8`` H×W×3.
        boxes: N×4 pixel boxes ``x0, y0, x1, y1`` from the label file.
        classes: N YOLO class ids.
        pseudo: H×W pseudo-mask; pred: H×W prediction; gt: H×W ground truth.
        class_names: names of the label values, background first.
        unboxed: tight boxes ``x0, y0, x1, y1`` (end exclusive) of ground-truth defects that
            have no annotation box.
    """
    from . import viz

    for name, mask in (("pseudo-mask", pseudo), ("prediction", pred), ("ground truth", gt)):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{name} is {mask.shape} but the image is {image.shape[:2]}")
    s = panel_scale(image.shape[0])
    big = _up(image, s)
    boxed = viz.draw_boxes(
        big, np.asarray(boxes, np.float64).reshape(-1, 4) * s, classes, list(class_names[1:])
    )
    truth = viz.overlay_mask(big, _up(gt, s))
    for x0, y0, x1, y1 in unboxed:
        cv2.rectangle(truth, (x0 * s - 2, y0 * s - 2), (x1 * s + 1, y1 * s + 1), _UNBOXED_COLOUR, 1)
        cv2.putText(
            truth,
            "no box",
            (x0 * s - 2, max(10, y0 * s - 5)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            _UNBOXED_COLOUR,
            1,
            cv2.LINE_AA,
        )
    tiles = [
        boxed,
        viz.overlay_mask(big, _up(pseudo, s)),
        viz.overlay_mask(big, _up(pred, s)),
        truth,
        _up(viz.error_map(pred, gt), s),
    ]
    row = viz.panel(tiles, list(PANEL_TITLES))
    return viz.add_error_legend(viz.add_legend(row, list(class_names)))


def choose_panel_images(
    manifest: dict[str, Any], count: int, splits: Sequence[str] = ("test", "val", "train")
) -> list[tuple[str, str, str]]:
    """Pick ``count`` images for the qualitative panels from a ``synth.json`` manifest.

    The first is an image with a defect left unboxed (from the first split in ``splits``
    that has one), then test images with boxed defects (alternating the class of their
    largest defect), then a defect-free test image.

    Returns:
        ``(split, image name, why)`` triples.
    """
    images: dict[str, dict[str, Any]] = manifest.get("images", {})
    chosen: list[tuple[str, str, str]] = []
    taken: set[tuple[str, str]] = set()

    def take(split: str, name: str, why: str) -> None:
        chosen.append((split, name, why))
        taken.add((split, name))

    for split in splits:
        found = [
            name
            for name, rec in sorted(images.get(split, {}).items())
            if any(d.get("box") is None for d in rec.get("defects", []))
        ]
        if found:
            take(split, found[0], "a defect without a box")
            break
    test = sorted(images.get(splits[0], {}).items())
    boxed = [
        (name, rec)
        for name, rec in test
        if rec.get("defects") and all(d.get("box") is not None for d in rec["defects"])
    ]
    by_class: dict[str, list[str]] = {}
    for name, rec in boxed:
        main = max(rec["defects"], key=lambda d: d.get("pixels", 0))
        by_class.setdefault(main.get("class", "?"), []).append(name)
    queues = [list(v) for _, v in sorted(by_class.items())]
    clean = [name for name, rec in test if not rec.get("defects")]
    want_clean = count >= 4 and bool(clean)
    while len(chosen) < count - int(want_clean) and any(queues):
        for queue in queues:
            if queue and len(chosen) < count - int(want_clean):
                name = queue.pop(0)
                take(splits[0], name, "boxed defects")
    if want_clean:
        take(splits[0], clean[0], "no defect")
    for name, _ in test:  # fill up when the split has too few of each kind
        if len(chosen) >= count:
            break
        if (splits[0], name) not in taken:
            take(splits[0], name, "test image")
    return chosen[:count]


# --------------------------------------------------------------------------------------------
# the demo report

_METRIC_COLUMNS = (
    ("miou", "mIoU"),
    ("anomaly_miou", "anomaly mIoU"),
    ("anomaly_f1", "anomaly F1"),
    ("binary_iou", "binary IoU"),
    ("binary_f1", "binary F1"),
    ("binary_precision", "binary precision"),
    ("binary_recall", "binary recall"),
)
ROW_LABELS = {
    "teacher": "teacher pseudo-masks",
    "student": "student",
    "student_no_correction": "student without self-correction",
}
"""First-column labels of the metrics table, by key of ``DemoResult.scores``."""


def fmt(value: float | None) -> str:
    """A metric as ``b2p evaluate`` prints it (4 decimals, ``-`` when undefined)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


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


def _weights_lines(result: DemoResult) -> list[str]:
    teacher = _teacher_sentence(result.teacher)
    if result.random_backbone:
        return [
            "**Random weights:** the student's DINOv2 ViT-S/14 backbone was initialised with "
            f"**random weights** ({result.backbone_note}) and trained with full fine-tuning "
            f"(`backbone_mode={result.backbone_mode}`). {teacher}",
            "**Offline this demo demonstrates the pipeline, not the paper's accuracy.** The "
            "method's strength is the pretrained DINOv2 features: a student trained from random "
            "weights for a few minutes on a CPU does not beat its teacher (measured on this "
            "kind of data: anomaly mIoU about 0.1 after 10 epochs, against the teacher's 0.5). "
            "With pretrained weights available (internet access or a Hugging Face cache), "
            "`b2p demo` uses them and says so here.",
        ]
    return [
        "**Weights:** the student's DINOv2 ViT-S/14 backbone started from **pretrained** "
        f"weights ({result.backbone_note}) and was trained with BitFit "
        f"(`backbone_mode={result.backbone_mode}`); only the decoder and heads started from "
        f"random weights, as in the paper. {teacher}",
        "This is a short CPU-sized run on generated data; the paper's figures come from 200 "
        "epochs on about 13,000 real drone photos.",
    ]


def _read_history(run: Path) -> list[dict[str, float]]:
    from .demo import read_history

    return read_history(run)


def build_demo_report(
    result: DemoResult,
    manifest: dict[str, Any],
    *,
    device: str = "auto",
    quick: bool = False,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for a finished demo run.

    Args:
        result: the demo's result (scores, paths, backbone and teacher facts, timings).
        manifest: the generated dataset's ``synth.json``.
        device: device for predicting panel images outside the test split.
        quick: the run was ``--quick``.
        seed: the demo's seed.

    Returns:
        ``(report.html, report.md)``.
    """
    from .data.yolo import load_data_yaml
    from .demo import PRED_DIR, PSEUDO_DIR, REPORT_FILES, RUN_DIR_NO_CORRECTION
    from .io import read_image, read_mask

    out = result.out
    settings = result.settings
    assert settings is not None
    ds = load_data_yaml(result.data_yaml)
    class_names = ["background", *ds.names]
    doc = Document("Boxes2Pixels demo report")
    for line in _weights_lines(result):
        doc.paragraph(line)

    # ---- what ran
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
    steps = [
        f"**Data**: {w}×{h} synthetic blade images, seed {seed}: " + "; ".join(counts) + ".",
        f"**Teacher**: `{result.teacher.get('name')}` turned the boxes of all three splits into "
        f"pseudo-masks (`{PSEUDO_DIR}/`).",
        f"**Student**: trained {settings.epochs} epochs at {settings.imgsz}×{settings.imgsz} "
        f"on the train pseudo-masks (batch {settings.batch}, lr {settings.lr:g}, EMA "
        f"{settings.ema_decay:g}, self-correction from epoch {settings.correction_warmup + 1}, "
        f"τ = 0.9), validated on the val pseudo-masks; the best epoch's EMA weights are in "
        f"`{result.run_dir.relative_to(out).as_posix()}/best/`.",
        "**Scores**: the teacher's test pseudo-masks and the student's test predictions "
        f"(`{PRED_DIR}/test/`) against the exact ground truth of the test split "
        "(`data/gt_masks/test/`), one confusion matrix over the whole split.",
    ]
    doc.bullets(steps)
    if quick:
        steps_total = settings.epochs * math.ceil(settings.train / settings.batch)
        doc.paragraph(
            f"`--quick` trains the student for only {steps_total} steps: its predictions show "
            "that the pipeline runs end to end, not what the student can learn; `b2p demo` "
            "without `--quick` trains it properly."
        )

    # ---- metrics
    doc.heading("Test scores against the ground truth")
    rows = []
    for key, scores in result.scores.items():
        d = scores.to_dict()
        rows.append([ROW_LABELS.get(key, key), *(fmt(d[k]) for k, _ in _METRIC_COLUMNS)])
    doc.table(["model", *(label for _, label in _METRIC_COLUMNS)], rows)
    per_class_rows = []
    for key, scores in result.scores.items():
        d = scores.to_dict()["per_class"]
        per_class_rows.append(
            [ROW_LABELS.get(key, key), *(fmt(d[n]["iou"]) for n in class_names if n in d)]
        )
    doc.paragraph("Per-class IoU:")
    doc.table(["model", *(f"IoU {n}" for n in class_names)], per_class_rows)
    n_images = result.scores["student"].images
    agree = (
        "Scoring the prediction files and running the model on the test images gave the same "
        "confusion matrix."
        if result.evaluations_agree
        else "**Warning:** scoring the prediction files and running the model on the test "
        "images gave different confusion matrices; the table shows the prediction files."
    )
    doc.paragraph(
        f"{n_images} test images. Every number above is what `b2p evaluate` prints for the same "
        f"files (4 decimals). {agree} To check:"
    )
    o = out.as_posix()
    commands = [
        f"b2p evaluate {o}/data/data.yaml --pred {o}/{PSEUDO_DIR} --masks {o}/data/gt_masks "
        "--split test",
        f"b2p evaluate {o}/data/data.yaml --pred {o}/{PRED_DIR}/test --masks {o}/data/gt_masks "
        "--split test",
        f"b2p evaluate {result.run_dir.as_posix()} {o}/data/data.yaml --masks {o}/data/gt_masks "
        "--split test",
    ]
    if "student_no_correction" in result.scores:
        from .demo import PRED_DIR_NO_CORRECTION

        commands.append(
            f"b2p evaluate {o}/data/data.yaml --pred {o}/{PRED_DIR_NO_CORRECTION}/test "
            f"--masks {o}/data/gt_masks --split test"
        )
    doc.code("\n".join(commands))
    matrix = np.asarray(result.scores["student"].confusion_matrix)
    if matrix[:, 1:].sum() == 0:
        doc.paragraph(
            "The student predicted no defect pixel on the test split: after so few training "
            "steps from random weights it has not yet learnt to commit to a defect"
            + (" (expected in `--quick` mode; the default mode trains longer)." if quick else ".")
        )
    if result.ablation_note:
        doc.paragraph(f"Student without self-correction: {result.ablation_note}.")

    # ---- curves
    doc.heading("Training curves")
    histories = {"student": _read_history(result.run_dir)}
    if "student_no_correction" in result.scores:
        histories["without self-correction"] = _read_history(out / RUN_DIR_NO_CORRECTION)
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

    # ---- panels
    doc.heading("Test images")
    doc.paragraph(
        "Columns: the image with its annotation boxes | the teacher's pseudo-mask | the "
        "student's prediction | the ground truth (defects that have no box outlined in white) "
        "| errors of the student against the ground truth: green true positive, red false "
        "positive, blue false negative, purple wrong defect class."
    )
    student = None
    images_root = result.data_yaml.parent / "images"
    for i, (split, name, _why) in enumerate(choose_panel_images(manifest, settings.panels)):
        image_path = images_root / split / f"{name}.jpg"
        image = read_image(image_path)
        labels = ds.labels(image_path)
        boxes = labels.xyxy(image.shape[1], image.shape[0])
        pseudo = read_mask(out / PSEUDO_DIR / split / f"{name}.png")
        gt = read_mask(result.data_yaml.parent / "gt_masks" / split / f"{name}.png")
        if split == "test":
            pred = read_mask(out / PRED_DIR / "test" / f"{name}.png")
        else:
            if student is None:
                from .predict import load_student

                student = load_student(result.run_dir, device)
            pred = student.predict(image)[0]
        defects = manifest["images"][split][name]["defects"]
        unboxed = [d["bbox"] for d in defects if d.get("box") is None]
        picture = render_panel(image, boxes, labels.classes, pseudo, pred, gt, class_names, unboxed)
        if defects:
            parts = [
                f"{d['class']} {d['kind']}" + ("" if d.get("box") is not None else " (no box)")
                for d in defects
            ]
            what = f"{len(defects)} defect(s) in the ground truth: " + ", ".join(parts)
        else:
            what = "no defect in the ground truth"
        where = "" if split == "test" else f", {split} split (no test image has an unboxed defect)"
        doc.picture(
            Picture(
                f"panel_{i + 1}_{split}_{name}.png",
                png_bytes(picture),
                f"panel {name}",
                f"`{name}`{where}: {what}; {len(boxes)} box(es) in the label file.",
            )
        )

    # ---- settings and timings
    doc.heading("Run")
    stage_names = {
        "data": "generate data",
        "label": "label (teacher)",
        "train": "train student",
        "predict": "predict test split",
        "evaluate": "evaluate",
        "ablation": "train + predict without self-correction",
        "report": "report",
    }
    timing_rows = []
    for key, seconds in result.timings.items():
        if key == "report":
            continue
        reused = " (reused from an earlier run)" if key in result.reused else ""
        timing_rows.append([stage_names.get(key, key) + reused, f"{seconds:.1f}"])
    doc.table(["stage", "seconds"], timing_rows)
    issues: dict[str, int] = dict(result.teacher.get("label_issues") or {})
    notes = ", ".join(f"{n} {kind}" for kind, n in sorted(issues.items())) or "none"
    doc.bullets(
        [
            f"mode: {'--quick' if quick else 'default'}; device: {device}; seed: {seed}",
            f"student: backbone init `{result.backbone_init}`, mode `{result.backbone_mode}`",
            f"teacher: `{result.teacher.get('name')}` options {result.teacher.get('options', {})}",
            f"label-file notes while labelling: {notes}",
            f"files: `{o}/` holds data/, {PSEUDO_DIR}/, runs/, {PRED_DIR}/, report.md (pictures "
            f"in {REPORT_FILES}/) and demo.json",
        ]
    )
    return write_document(doc, out, REPORT_FILES)
