"""The review gallery: the top of the queue as one self-contained HTML page (and Markdown).

Per image: the photo with its boxes, the pseudo-mask, the model's prediction and the
disagreement map (when a model is given), the reasons in words and each signal's share.
Built with :mod:`boxes2pixels.reporting` (the demo report's document) and
:mod:`boxes2pixels.viz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import viz
from ..data.labelmaps import read_mask
from ..io import read_image
from ..reporting import Document, Picture, enlarge, fit_height, labelled_row, png_bytes
from ..reporting import write_document as _write_document
from .model import model_view
from .queue import ImageReview, ReviewQueue
from .settings import SIGNALS

GALLERY_STEM = "gallery"
_TILE_MIN, _TILE_MAX = 240, 420  # tile height range in pixels


def _scale(height: int) -> int:
    """Enlargement of small images (pixels kept sharp) to a readable tile height."""
    return max(1, _TILE_MIN // max(1, height))


def _draw(
    image: np.ndarray, entries: Sequence[tuple[Sequence[float], str, str]], names: Sequence[str]
) -> np.ndarray:
    """Boxes in their class colour, each with its own text: ``(xyxy, class name, text)``."""
    out = image
    for box, cls, text in entries:
        k = list(names).index(cls)
        labels = [text if i == k else n for i, n in enumerate(names)]
        out = viz.draw_boxes(out, np.asarray([box], dtype=np.float64), [k], labels)
    return out


def panel(review: ImageReview, queue: ReviewQueue, model: Any, imgsz: int | None) -> bytes:
    """The picture of one image: boxes | pseudo-mask [| prediction | disagreement] as PNG.

    Small images are enlarged before the boxes are drawn (so their labels stay legible);
    tiles taller than a screen are shrunk.
    """
    photo = read_image(review.image)
    pseudo = read_mask(review.mask)
    pred = None if model is None else model_view(model, photo, imgsz).labels
    k = _scale(photo.shape[0])
    image, mask = enlarge(photo, k), enlarge(pseudo, k)
    names = queue.class_names[1:]
    boxes = [(np.multiply(b.box, k), b.cls, f"{b.index + 1} {b.cls}") for b in review.boxes]
    tiles = [_draw(image, boxes, names), viz.overlay_mask(image, mask)]
    titles = ["image + boxes", "pseudo-mask"]
    if pred is not None:
        pred = enlarge(pred, k)
        missed = [(np.multiply(m["box"], k), m["cls"], f"{m['cls']}?") for m in review.missed]
        tiles += [_draw(viz.overlay_mask(image, pred), missed, names), viz.error_map(pred, mask)]
        titles += ["model", "model vs pseudo-mask"]
    row = labelled_row(
        [fit_height(t, _TILE_MAX) for t in tiles],
        titles,
        queue.class_names,
        error_legend=pred is not None,
    )
    return png_bytes(row)


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def _image_section(doc: Document, review: ImageReview, png: bytes) -> None:
    doc.heading(f"#{review.rank} `{review.key}`: doubt {review.score:.2f}")
    doc.picture(
        Picture(
            name=f"{review.rank:04d}.png",
            png=png,
            alt=f"review of {review.key}",
            caption=f"{review.image}",
        )
    )
    if review.worst_box is not None:
        worst = review.boxes[review.worst_box]
        doc.paragraph(
            f"Ranked by its worst box, box {worst.index + 1} ({worst.cls}, doubt "
            f"{worst.score:.2f}); the signals below are that box's and the image's."
        )
    doc.bullets(review.reasons or ["no signal raised a doubt"])
    doc.table(
        ["signal", "value", "rank in the split", "share of the score"],
        [
            [
                s,
                _fmt(review.signals.get(s)),
                _fmt(review.ranks.get(s), "{:.0%}"),
                f"{review.shares.get(s, 0.0):.0%}",
            ]
            for s in SIGNALS
            if review.signals.get(s) is not None
        ],
    )
    if review.boxes:
        doc.table(
            ["box", "class", "coverage", "pieces", "teacher score", "model IoU", "doubt",
             "main signal"],
            [
                [
                    str(b.index + 1),
                    b.cls,
                    f"{b.coverage:.0%}",
                    str(b.pieces),
                    _fmt(b.teacher_score),
                    _fmt(b.agreement),
                    f"{b.score:.2f}",
                    max(b.shares, key=b.shares.__getitem__) if b.score > 0 else "-",
                ]
                for b in review.boxes
            ],
        )  # fmt: skip


def gallery_document(
    queue: ReviewQueue,
    top: Sequence[ImageReview],
    model: Any = None,
    imgsz: int | None = None,
    commands: str | None = None,
) -> Document:
    """The gallery of ``top`` (a slice of ``queue``) as a :class:`~boxes2pixels.reporting.Document`.

    Args:
        queue: the whole ranking (for the counts and settings shown).
        top: the images to show.
        model: the loaded model the queue was scored with (``None``: no model tiles).
        imgsz: the model's input long side.
        commands: shell commands of the correction loop, shown at the end.
    """
    doc = Document(f"Review queue: {queue.split} split, top {len(top)} of {len(queue.images)}")
    model_text = f"model **{queue.model}**" if queue.model else "no model"
    doc.paragraph(
        f"Dataset `{queue.data}`, pseudo-masks `{queue.masks}`, {model_text}. "
        + (
            "Each signal is ranked among the split's boxes of its class (the rank: the share "
            "of them that look no more suspicious); "
            if queue.settings.normalise == "rank"
            else "The raw signals are scored; "
        )
        + f"a box's doubt is the weighted power mean (p = {queue.settings.power:g}) of the "
        "signals that could be measured (a missing signal is left out, not counted as 0), "
        "and an image is ranked by its worst box together with the image's own signals. "
        "The shares say how much each signal contributed. Box numbers match the labels "
        "drawn on the image."
    )
    measured = {s for r in queue.images for s, v in r.signals.items() if v is not None}
    doc.table(
        ["signal", "weight", "measured here"],
        [[s, f"{queue.settings.weights[s]:g}", "yes" if s in measured else "no"] for s in SIGNALS],
    )
    doc.table(
        ["rank", "image", "doubt", "first reason"],
        [[str(r.rank), f"`{r.key}`", f"{r.score:.2f}", (r.reasons or ["-"])[0]] for r in top],
    )
    for review in top:
        _image_section(doc, review, panel(review, queue, model, imgsz))
    if commands:
        doc.heading("Correct them")
        doc.code(commands)
    return doc


def write_gallery(doc: Document, out: str | Path) -> Path:
    """Write ``out/gallery.html`` (self-contained) and ``out/gallery.md``; the HTML's path."""
    files_dir = f"{GALLERY_STEM}_files"
    written = _write_document(doc, out, stem=GALLERY_STEM, files_dir=files_dir, prune=True)
    return written[-1]
