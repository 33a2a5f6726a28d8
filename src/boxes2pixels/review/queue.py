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
from .doubt import Calibration, Score, calibrate, doubt_score
from .model import MissedDefect, missed_defects, model_view
from .reasons import explain
from .settings import BOX_SIGNALS, SIGNALS, DoubtSettings, check_measurable
from .signals import BoxSignals, box_signals, confident_iou


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
    ranks: dict[str, float | None] = field(default_factory=dict)


@dataclass
class ImageReview:
    """One image's place in the queue (``rank`` 1 = the least trustworthy pseudo-mask).

    ``signals`` are the raw signals of its worst box (``worst_box``, 0-based) and of the
    image; ``ranks`` the values the score was computed from (the signals' ranks in the
    split, or the raw signals when not ranked).
    """

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
    ranks: dict[str, float | None] = field(default_factory=dict)
    worst_box: int | None = None


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
            "normalise": self.settings.normalise,
            "power": self.settings.power,
            "thresholds": {
                k: v
                for k, v in asdict(self.settings).items()
                if k not in ("weights", "normalise", "power")
            },
            "score": "weighted power mean of the measured signals' ranks of the worst box and "
            "the image (see docs/review.md)",
            "images": [asdict(r) for r in self.images],
        }

    def to_csv(self) -> str:
        """One row per image in rank order: score, every signal's value and share, reasons."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            ["rank", "key", "image", "mask", "score", "boxes", "worst_box", "missed_defects"]
            + list(SIGNALS)
            + [f"{s}_rank" for s in SIGNALS]
            + [f"{s}_share" for s in SIGNALS]
            + ["reasons"]
        )
        for r in self.images:
            values = ["" if r.signals.get(s) is None else f"{r.signals[s]:.4f}" for s in SIGNALS]
            ranks = ["" if r.ranks.get(s) is None else f"{r.ranks[s]:.4f}" for s in SIGNALS]
            shares = [f"{r.shares.get(s, 0.0):.3f}" for s in SIGNALS]
            worst = "" if r.worst_box is None else r.worst_box + 1
            writer.writerow(
                [
                    *(r.rank, r.key, r.image, r.mask, f"{r.score:.4f}", len(r.boxes), worst),
                    *(len(r.missed), *values, *ranks, *shares, "; ".join(r.reasons)),
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


@dataclass
class Measured:
    """One image's raw measurements, before the split is known (see :func:`measure_image`)."""

    boxes: list[BoxSignals]
    agreement: float | None = None
    missed: list[MissedDefect] = field(default_factory=list)
    missed_value: float | None = None

    @property
    def image_signals(self) -> dict[str, float | None]:
        """The image's own raw signals: whole-image ``disagreement`` and ``missed``."""
        return {
            "disagreement": None if self.agreement is None else 1.0 - self.agreement,
            "missed": self.missed_value,
        }


def measure_image(
    mask: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    settings: DoubtSettings,
    *,
    teacher_scores: Sequence[float | None] | None = None,
    view: Any = None,
    image: np.ndarray | None = None,
) -> Measured:
    """The raw signals of one pseudo-mask (see :func:`review_image` for the arguments)."""
    prediction = None if view is None else view.labels
    confidence = None if view is None else view.confidence
    per_box = box_signals(
        mask, boxes, classes, settings, teacher_scores, prediction,
        image=image, confidence=confidence,
    )  # fmt: skip
    measured = Measured(per_box)
    if view is not None:
        sure = view.confidence >= settings.confident
        agreement = confident_iou(view.labels > 0, defect_pixels(mask), sure)
        measured.agreement = agreement  # None: the model is sure of no pixel
        measured.missed = missed_defects(
            view,
            boxes,
            min_confidence=settings.min_confidence,
            min_area=settings.min_area,
            margin=settings.margin,
        )
        measured.missed_value = max((m.confidence for m in measured.missed), default=0.0)
    return measured


def score_image(
    measured: Measured,
    names: Sequence[str],
    settings: DoubtSettings,
    calibration: Calibration | None = None,
) -> ImageReview:
    """Score, signals and reasons of one measured pseudo-mask (paths and rank left empty).

    With ``settings.normalise == "rank"`` and a ``calibration`` of the split, every signal
    is replaced by its rank there; otherwise the raw signals are scored. The image's score
    is that of its worst box's signals together with the image's own (``disagreement``,
    ``missed``), or the worst box's alone when that is higher: the image's signals can raise
    its doubt, never dilute it. That score is then blended with the mean of the box scores,
    ``(score + box_mean · mean) / (1 + box_mean)`` (``settings.box_mean``; issue 22).
    """
    weights, power = settings.weights, settings.power
    ranked = calibration is not None and settings.normalise == "rank"
    box_ranks: list[dict[str, float | None]] = []
    box_scores = []
    for b in measured.boxes:
        ranks = calibration.box_ranks(b) if ranked else dict(b.signals)  # type: ignore[union-attr]
        box_ranks.append(ranks)
        box_scores.append(doubt_score(ranks, weights, power))
    raw_image = measured.image_signals
    image_ranks: dict[str, float | None] = (
        {k: calibration.rank(k, None, v) for k, v in raw_image.items()}  # type: ignore[union-attr]
        if ranked
        else dict(raw_image)
    )
    worst = None
    signals: dict[str, float | None] = dict.fromkeys(SIGNALS)
    ranks: dict[str, float | None] = dict.fromkeys(SIGNALS)
    if measured.boxes:
        worst = max(range(len(measured.boxes)), key=lambda i: (box_scores[i].value, -i))
        for name in BOX_SIGNALS:
            signals[name] = measured.boxes[worst].signals[name]
            ranks[name] = box_ranks[worst][name]
    for name, value in raw_image.items():
        if value is not None:
            signals[name], ranks[name] = value, image_ranks[name]
    score = doubt_score(ranks, weights, power)
    if worst is not None and box_scores[worst].value > score.value:
        # the image's own signals can only raise its doubt, never dilute its worst box
        score = box_scores[worst]
    if box_scores and settings.box_mean > 0 and score.value > 0:
        # blended with the mean of the box scores: several doubtful boxes weigh more
        a = settings.box_mean
        value = (score.value + a * sum(b.value for b in box_scores) / len(box_scores)) / (1 + a)
        score = Score(value, {k: c * value / score.value for k, c in score.contributions.items()})
    order = sorted(range(len(measured.boxes)), key=lambda i: (i != worst, -box_scores[i].value))
    box_reviews = []
    for b, b_ranks, b_score in zip(measured.boxes, box_ranks, box_scores, strict=True):
        box_reviews.append(
            BoxReview(
                b.index, names[b.cls], list(b.box), b.coverage, b.pieces, b.teacher_score,
                b.agreement, b_score.value, b.signals, b_score.shares, b_ranks,
            )
        )  # fmt: skip
    return ImageReview(
        key="",
        split="",
        image="",
        mask="",
        score=score.value,
        signals=signals,
        shares=score.shares,
        reasons=explain(
            measured.boxes,
            box_ranks,
            [s.shares for s in box_scores],
            order,
            names,
            measured.agreement,
            measured.missed,
            score.shares,
            settings,
            ranked,
        ),
        boxes=box_reviews,
        missed=[asdict(m) | {"cls": names[m.cls]} for m in measured.missed],
        agreement=measured.agreement,
        ranks=ranks,
        worst_box=worst,
    )


def review_image(
    mask: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    names: Sequence[str],
    settings: DoubtSettings,
    *,
    teacher_scores: Sequence[float | None] | None = None,
    view: Any = None,
    image: np.ndarray | None = None,
    calibration: Calibration | None = None,
) -> ImageReview:
    """Signals, score and reasons of one pseudo-mask (paths and rank left empty).

    Alone (no ``calibration``) the raw signals are scored; :func:`review_split` ranks every
    signal among the split's boxes first.

    Args:
        mask: H×W pseudo-mask.
        boxes: N×4 pixel xyxy; classes: their YOLO ids; names: YOLO class names.
        settings: weights and thresholds.
        teacher_scores: per-box teacher scores, when recorded.
        view: a :class:`~boxes2pixels.review.model.ModelView` of the image, when a model is given.
        image: the RGB image, for the ``appearance`` signal.
        calibration: the split's :class:`~boxes2pixels.review.doubt.Calibration`.
    """
    measured = measure_image(
        mask, boxes, classes, settings, teacher_scores=teacher_scores, view=view, image=image
    )
    return score_image(measured, names, settings, calibration)


def rank_measured(
    measured: Sequence[Measured], names: Sequence[str], settings: DoubtSettings
) -> list[ImageReview]:
    """Score every image of a split: each signal ranked among the split's (``normalise``
    ``rank``), or raw."""
    calibration = calibrate(
        (b for m in measured for b in m.boxes),
        (m.image_signals for m in measured),
        settings.per_class_min,
    )
    return [score_image(m, names, settings, calibration) for m in measured]


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

    Images are measured one at a time (only their numbers are kept), then every signal is
    ranked among the split's boxes of its class and the images are scored (see
    :mod:`.signals`).

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
        ConfigError: no signal weighted above 0 can be measured (:func:`.check_measurable`).
        DatasetError: the split is unknown, or an image has no pseudo-mask or one of
            another size.
    """
    ds = data if isinstance(data, YoloDataset) else load_data_yaml(data)
    settings = settings or DoubtSettings()
    check_measurable(settings, model is not None, teacher_scores)
    described = None
    if model is not None:
        loaded = load_model(model, device=device)
        described, model = describe_model(model, loaded), loaded
    masks = Path(masks)
    images = ds.images(split)
    measured, paths = [], []
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
        photo = read_image(image_path) if len(labels) or model is not None else None
        view = None if model is None else model_view(model, photo, imgsz)
        key = f"{split}/{name}"
        scores = (teacher_scores or {}).get(key)
        if scores is not None and len(scores) != len(labels):
            scores = None  # the labels changed since labelling: the scores fit no box
        measured.append(
            measure_image(
                mask,
                labels.xyxy(width, height),
                labels.classes,
                settings,
                teacher_scores=scores,
                view=view,
                image=photo if len(labels) else None,
            )
        )
        paths.append((key, str(image_path), str(mask_path)))
        if on_image is not None:
            on_image(done, len(images))
    reviews = rank_measured(measured, ds.names, settings)
    for r, (key, image_file, mask_file) in zip(reviews, paths, strict=True):
        r.key, r.split, r.image, r.mask = key, split, image_file, mask_file
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
