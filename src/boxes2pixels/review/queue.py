"""Rank a split's pseudo-masks by doubt: :func:`review_split` and its :class:`ReviewQueue`.

Images are read one at a time (memory does not grow with the dataset); only each image's
numbers are kept. ``queue.csv`` and ``queue.json`` hold the whole ranking.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.labelmaps import defect_pixels, read_mask
from ..data.yolo import YoloDataset, load_data_yaml
from ..errors import DatasetError
from ..inference import backbone_is_random, load_model
from ..io import image_size, read_image, write_json_atomic, write_text_atomic
from .model import MissedDefect, missed_defects, model_view
from .signals import SIGNALS, BoxSignals, DoubtSettings, box_signals, doubt_score, image_signals
from .signals import iou as mask_iou


@dataclass
class BoxReview:
    """One box of a reviewed image: its numbers, doubt score and the signals' shares."""

    index: int
    cls: str
    box: list[int]
    coverage: float
    pieces: int
    teacher_score: float | None
    agreement: float | None
    score: float
    signals: dict[str, float | None]
    shares: dict[str, float]


@dataclass
class ImageReview:
    """One image's place in the queue (``rank`` 1 = the least trustworthy pseudo-mask)."""

    key: str
    split: str
    image: str
    mask: str
    score: float
    signals: dict[str, float | None]
    shares: dict[str, float]
    reasons: list[str]
    boxes: list[BoxReview] = field(default_factory=list)
    missed: list[dict[str, Any]] = field(default_factory=list)
    agreement: float | None = None
    rank: int = 0


@dataclass
class ReviewQueue:
    """The ranked images of one split, and how they were scored."""

    data: Path
    masks: Path
    split: str
    class_names: list[str]
    settings: DoubtSettings
    model: str | None
    images: list[ImageReview]

    def top(self, k: int) -> list[ImageReview]:
        """The ``k`` least trustworthy images."""
        return self.images[: max(0, k)]

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-friendly data (``queue.json``)."""
        return {
            "format": "boxes2pixels-review-queue",
            "data": str(self.data),
            "masks": str(self.masks),
            "split": self.split,
            "class_names": self.class_names,
            "model": self.model,
            "weights": dict(self.settings.weights),
            "thresholds": {k: v for k, v in asdict(self.settings).items() if k != "weights"},
            "score": "weighted mean of the measured signals (see docs/review.md)",
            "images": [asdict(r) for r in self.images],
        }

    def to_csv(self) -> str:
        """One row per image in rank order: score, every signal's value and share, reasons."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            ["rank", "key", "image", "mask", "score", "boxes", "missed_defects"]
            + list(SIGNALS)
            + [f"{s}_share" for s in SIGNALS]
            + ["reasons"]
        )
        for r in self.images:
            values = ["" if r.signals.get(s) is None else f"{r.signals[s]:.4f}" for s in SIGNALS]
            shares = [f"{r.shares.get(s, 0.0):.3f}" for s in SIGNALS]
            writer.writerow(
                [
                    *(r.rank, r.key, r.image, r.mask, f"{r.score:.4f}", len(r.boxes)),
                    *(len(r.missed), *values, *shares, "; ".join(r.reasons)),
                ]
            )
        return buf.getvalue()

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """Write ``out/queue.csv`` and ``out/queue.json``."""
        out = Path(out)
        csv_path, json_path = out / "queue.csv", out / "queue.json"
        write_text_atomic(csv_path, self.to_csv())
        write_json_atomic(json_path, self.to_dict())
        return csv_path, json_path


def _reasons(
    boxes: Sequence[BoxSignals],
    names: Sequence[str],
    agreement: float | None,
    missed: Sequence[MissedDefect],
    settings: DoubtSettings,
) -> list[str]:
    """Why an image is doubted, in words, worst first within each kind."""
    out = []
    for b in sorted(boxes, key=lambda b: -(b.signals["coverage"] or 0.0)):
        if b.signals["coverage"]:
            what = "fills" if b.coverage > settings.high else "covers only"
            text = "is empty" if b.pieces == 0 else f"{what} {b.coverage:.0%} of it"
            out.append(f"box {b.index + 1} ({names[b.cls]}): mask {text}")
    for b in boxes:
        if b.pieces > 1:
            out.append(f"box {b.index + 1} ({names[b.cls]}): mask in {b.pieces} pieces")
        if b.teacher_score is not None and b.signals["teacher"]:
            out.append(f"box {b.index + 1} ({names[b.cls]}): teacher score {b.teacher_score:.2f}")
    if agreement is not None and agreement < 1.0:
        out.append(f"model and pseudo-mask overlap at IoU {agreement:.2f}")
    for m in missed:
        out.append(
            f"possible missed {names[m.cls]} at x {m.box[0]}–{m.box[2]}, y {m.box[1]}–{m.box[3]} "
            f"({m.area} px, confidence {m.confidence:.2f}; no box there)"
        )
    return out


def review_image(
    mask: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    names: Sequence[str],
    settings: DoubtSettings,
    *,
    teacher_scores: Sequence[float | None] | None = None,
    view: Any = None,
) -> ImageReview:
    """Signals, score and reasons of one pseudo-mask (paths and rank left empty).

    Args:
        mask: H×W pseudo-mask.
        boxes: N×4 pixel xyxy; classes: their YOLO ids; names: YOLO class names.
        settings: weights and thresholds.
        teacher_scores: per-box teacher scores, when recorded.
        view: a :class:`~boxes2pixels.review.model.ModelView` of the image, when a model is given.
    """
    prediction = None if view is None else view.labels
    per_box = box_signals(mask, boxes, classes, settings, teacher_scores, prediction)
    agreement, missed_value, missed = None, None, []
    if view is not None:
        agreement = mask_iou(view.labels > 0, defect_pixels(mask))
        missed = missed_defects(
            view,
            boxes,
            min_confidence=settings.min_confidence,
            min_area=settings.min_area,
            margin=settings.margin,
        )
        missed_value = max((m.confidence for m in missed), default=0.0)
    score = doubt_score(image_signals(per_box, agreement, missed_value), settings.weights)
    box_reviews = []
    for b in per_box:
        b_score = doubt_score(b.signals, settings.weights)
        box_reviews.append(
            BoxReview(
                b.index, names[b.cls], list(b.box), b.coverage, b.pieces, b.teacher_score,
                b.agreement, b_score.value, b.signals, b_score.shares,
            )
        )  # fmt: skip
    return ImageReview(
        key="",
        split="",
        image="",
        mask="",
        score=score.value,
        signals=image_signals(per_box, agreement, missed_value),
        shares=score.shares,
        reasons=_reasons(per_box, names, agreement, missed, settings),
        boxes=box_reviews,
        missed=[asdict(m) | {"cls": names[m.cls]} for m in missed],
        agreement=agreement,
    )


def review_split(
    data: YoloDataset | str | Path,
    masks: str | Path,
    *,
    split: str = "train",
    model: Any = None,
    settings: DoubtSettings | None = None,
    teacher_scores: Mapping[str, Sequence[float | None]] | None = None,
    imgsz: int | None = None,
    device: str = "auto",
    on_image: Callable[[int, int], None] | None = None,
) -> ReviewQueue:
    """Rank every image of ``split`` by the doubt score of its pseudo-mask, highest first.

    Args:
        data: the dataset (or its ``data.yaml``).
        masks: the pseudo-mask folder (``<masks>/<split>/<mask name>``).
        split: the split to review.
        model: a model, or anything :func:`boxes2pixels.models.load_model` loads (a run or
            model folder, a Hub id, an ``.onnx`` file), for the disagreement and missed-defect
            signals; ``None`` for none.
        settings: weights and thresholds (default :class:`DoubtSettings`).
        teacher_scores: per-box teacher scores by image key ``<split>/<mask name>``.
        imgsz: the model's input long side (default: the model's own).
        device: where the model runs (``auto``, ``cpu``, ``cuda:N``, ...).
        on_image: called as ``on_image(done, total)`` after each image.

    Raises:
        DatasetError: the split is unknown, or an image has no pseudo-mask or one of
            another size.
    """
    ds = data if isinstance(data, YoloDataset) else load_data_yaml(data)
    settings = settings or DoubtSettings()
    described = None
    if model is not None:
        loaded = load_model(model, device=device)
        described, model = describe_model(model, loaded), loaded
    masks = Path(masks)
    images = ds.images(split)
    reviews = []
    for done, image_path in enumerate(images, start=1):
        name = ds.mask_name(image_path, split)
        mask_path = masks / split / name
        if not mask_path.is_file():
            raise DatasetError(
                f"{mask_path}: no pseudo-mask for image {image_path} (run b2p label first)"
            )
        mask = read_mask(mask_path)
        height, width = mask.shape
        image_w, image_h = image_size(image_path)
        if (image_w, image_h) != (width, height):
            raise DatasetError(
                f"{mask_path}: the pseudo-mask is {width}×{height} but its image {image_path} "
                f"is {image_w}×{image_h} (a mask of another image or another size); relabel "
                "the split with b2p label. Nothing was written"
            )
        labels = ds.labels(image_path)
        view = None if model is None else model_view(model, read_image(image_path), imgsz)
        key = f"{split}/{name}"
        scores = (teacher_scores or {}).get(key)
        if scores is not None and len(scores) != len(labels):
            scores = None  # the labels changed since labelling: the scores fit no box
        r = review_image(
            mask,
            labels.xyxy(width, height),
            labels.classes,
            ds.names,
            settings,
            teacher_scores=scores,
            view=view,
        )
        r.key, r.split, r.image, r.mask = key, split, str(image_path), str(mask_path)
        reviews.append(r)
        if on_image is not None:
            on_image(done, len(images))
    reviews.sort(key=lambda r: (-r.score, r.key))
    for rank, r in enumerate(reviews, start=1):
        r.rank = rank
    return ReviewQueue(
        data=ds.yaml_path,
        masks=masks,
        split=split,
        class_names=["background", *ds.names],
        settings=settings,
        model=described,
        images=reviews,
    )


def describe_model(spec: Any, model: Any) -> str:
    """How the queue names its model: the path or id given (else the class), and whether
    its backbone is random."""
    name = str(spec) if isinstance(spec, (str, Path)) else type(model).__name__
    return name + (" (random backbone: for tests only)" if backbone_is_random(model) else "")
