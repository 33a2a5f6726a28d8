"""Doubt signals of a pseudo-mask and the doubt score built from them.

Per box (class ``c``, the mask's pixels of value ``c + 1`` inside the box) a few cheap
measurements, each turned into a *signal*: a number in ``[0, 1]``, 0 = nothing suspicious.

- ``coverage``: the share of the box the mask covers (an empty mask and a filled box are
  the extremes).
- ``extent``: the share of the box spanned by the mask's own bounding box (a mask that lost
  its thin parts spans a corner; a spill or the box's background spans all of it).
- ``fragmentation``: ``1 − 1/n`` for a mask in ``n`` pieces (8-connected) inside the box.
- ``holes``: the share of the mask's closed outline that the mask leaves out where the
  image has the mask's colour (holes and bites; a concavity showing the background is the
  defect's own shape). Without the image, every gap counts.
- ``offset``: how far the mask's bounding box sits from the box's centre (a shifted mask).
- ``spill``: the share of the pixels of the mask's regions that lie outside the box or,
  inside it, have the background's colour (the mask's one-pixel rim left out).
- ``appearance``: ``1 − IoU`` of the mask and the pixels around it whose colour is nearer the
  mask's mean colour than its surroundings' (a mask of the wrong object, or shifted).
- ``teacher``: ``1 − score`` of the teacher's own score for the box (predicted IoU,
  stability), when the labelling run recorded one.
- ``disagreement``: ``1 − IoU`` of the model's defect pixels and the mask's, counted only
  where the model is confident (``confident``); per box inside it, per image over all of it.
- ``missed`` (per image): the confidence of the most confident defect region the model sees
  outside every box ("possible missed defect").

Signals that cannot be measured (no teacher score, no model, shape signals of an empty
mask) are ``None`` and left out; the other weights are renormalised, so a missing signal
never counts as "no doubt".

**Ranking** (``normalise="rank"``, the default): raw signals mean different things on
different datasets and teachers (cracks cover a tenth of their box, stains half of it), so
each signal is replaced by its *rank* among the split's boxes of the same class
(:class:`Calibration`): the share of them that look no more suspicious. ``coverage`` and
``extent`` count both ways (far from the class's typical value in either direction); for the
others a value of 0 stays 0; ``missed`` is used as it is (:data:`UNRANKED`). A box's score
is the weighted power mean of its ranks

    score = (Σ_s w_s · r_s^p / Σ_s w_s)^(1/p)      (over the signals s that are not None)

and an image's score is that of its worst box, together with its image signals
(``disagreement``, ``missed``). The ``coverage`` of an empty mask or a filled box never ranks
below its raw signal (it stays doubtful where the whole split is like that).
:data:`DEFAULT_WEIGHTS` and :data:`DEFAULT_POWER` were checked on generated teacher errors
(``benchmarks/review_ranking.py``). A signal's *share* is its part ``w_s · r_s^p / Σ w_s
r_s^p`` of the score. ``normalise="raw"`` scores the raw signals (coverage and extent
through the ``low`` / ``high`` / ``low_extent`` thresholds) without a split, as
:func:`review_image` does alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.labelmaps import defect_pixels
from ..errors import ConfigError
from ..teachers.base import box_pixel_ranges

BOX_SIGNALS = (
    "coverage", "extent", "fragmentation", "holes", "offset", "spill", "appearance", "teacher",
    "disagreement",
)  # fmt: skip
"""The signals measured per box (``disagreement`` also per image)."""

SIGNALS = (*BOX_SIGNALS, "missed")
"""The doubt signals, in the order tables show them."""

TWO_SIDED = ("coverage", "extent")
"""Signals ranked by their distance from the class's typical value, in either direction."""

UNRANKED = ("missed",)
"""Signals scored as they are: ``missed`` is the model's own confidence in a region that
no box covers, already on an absolute scale (ranking it would stretch a model's noise)."""

SHAPE_SIGNALS = ("extent", "fragmentation", "holes", "offset", "spill", "appearance")
"""Signals of the mask's shape: not measured for an empty mask (``coverage`` says it all)."""

#: Default weights: a regularised choice checked on generated teacher errors
#: (``python benchmarks/review_ranking.py``; see docs/review.md). The weights fitted on all
#: generated error models (``--fit``) lean on the generated teacher score (weight 4, power
#: 4) and ranked the imitation teacher, which records no score, worse (top-20 mean IoU
#: 0.27 against 0.18 with these), so these stay closer to equal: each signal keeps a voice.
#: ``disagreement`` (not measurable on the generated teachers) counts double.
DEFAULT_WEIGHTS: dict[str, float] = {
    "coverage": 1.0,
    "extent": 1.0,
    "fragmentation": 0.5,
    "holes": 0.5,
    "offset": 1.0,
    "spill": 1.0,
    "appearance": 1.0,
    "teacher": 1.0,
    "disagreement": 2.0,
    "missed": 1.0,
}

DEFAULT_POWER = 2.0
"""``p`` of the power mean of ranks: above 1, one signal far out weighs more than several
slightly raised ones."""

DEFAULT_BOX_MEAN = 2.0
"""Weight of the mean of an image's box scores against its worst box's score."""

NORMALISATIONS = ("rank", "raw")

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@dataclass(frozen=True)
class DoubtSettings:
    """Weights of the signals, how they are combined, and the thresholds the signals use.

    Attributes:
        weights: weight per signal name (missing names get :data:`DEFAULT_WEIGHTS`).
        normalise: ``rank`` (each signal ranked among the split's boxes of its class, see
            the module's documentation) or ``raw`` (the raw signals).
        power: ``p`` of the power mean that combines a box's signals (1: weighted mean).
        box_mean: weight of the mean of an image's box scores against its worst box's
            (image score ``(worst + box_mean · mean) / (1 + box_mean)``; 0: the worst box
            alone). With 2, an image with several doubtful boxes leads one with a single
            one; issue 22's benchmark, fitting it with the weights, chose 1 or 2.
        per_class_min: a class with fewer boxes than this in the split is ranked among all
            boxes instead of its own.
        low: raw mode: coverage below this share of the box counts as too little.
        high: raw mode: coverage above this share of the box counts as too much.
        low_extent: raw mode: a mask spanning less than this share of its box counts.
        confident: ``disagreement`` counts only pixels where the model's confidence is at
            least this.
        min_confidence: a model's defect pixel counts for ``missed`` from this softmax
            confidence on.
        min_area: smallest region (pixels) reported as a possible missed defect.
        margin: pixels a box is grown by before deciding that a region lies outside it.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    normalise: str = "rank"
    power: float = DEFAULT_POWER
    box_mean: float = DEFAULT_BOX_MEAN
    per_class_min: int = 20
    low: float = 0.1
    high: float = 0.85
    low_extent: float = 0.2
    confident: float = 0.7
    min_confidence: float = 0.9
    min_area: int = 16
    margin: float = 2.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(SIGNALS))
        if unknown:
            raise ConfigError(
                f"unknown doubt signal(s) {', '.join(unknown)} (known: {', '.join(SIGNALS)})"
            )
        if not all(math.isfinite(w) and w >= 0 for w in self.weights.values()):
            raise ConfigError(f"doubt weights must be finite and ≥ 0, got {dict(self.weights)}")
        if not (math.isfinite(self.box_mean) and self.box_mean >= 0):
            raise ConfigError(f"box_mean must be finite and ≥ 0, got {self.box_mean}")
        if not 0 < self.low < self.high < 1:
            raise ConfigError(f"need 0 < low < high < 1, got low {self.low}, high {self.high}")
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(
                f"normalise (--ranking) must be one of {', '.join(NORMALISATIONS)}, "
                f"got '{self.normalise}'"
            )
        if not (math.isfinite(self.power) and self.power >= 1):
            raise ConfigError(f"power must be a finite number ≥ 1, got {self.power}")
        object.__setattr__(self, "weights", {**DEFAULT_WEIGHTS, **self.weights})


def parse_weights(spec: str | None) -> dict[str, float]:
    """``"coverage=1,missed=0.2"`` → weights; ``None`` or ``""`` → the defaults.

    A weight is a finite number ≥ 0 (0 turns a signal off); a negative weight would rank the
    most doubtful masks last, and NaN or infinity would make every score NaN or infinite.

    Raises:
        ConfigError: naming ``--weights`` and the pair: a malformed pair, an unknown signal,
            a negative, NaN or infinite weight, or every weight 0 (nothing would be scored).
    """
    weights = dict(DEFAULT_WEIGHTS)
    for pair in (spec or "").split(","):
        if not pair.strip():
            continue
        name, sep, value = pair.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--weights takes NAME=VALUE pairs like coverage=1, got '{pair}'")
        if name not in SIGNALS:
            raise ConfigError(
                f"--weights: unknown doubt signal '{name}' in '{pair.strip()}' "
                f"(known: {', '.join(SIGNALS)})"
            )
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"--weights: the weight of {name} must be a finite number ≥ 0 (0 turns the "
                f"signal off), got '{value.strip()}'"
            )
        weights[name] = weight
    if not any(weights.values()):
        raise ConfigError(
            f"--weights: every weight is 0 ('{spec}'), so every image would score 0; "
            "give at least one signal a weight above 0"
        )
    return weights


def coverage_doubt(coverage: float, low: float, high: float) -> float:
    """Doubt of a box whose mask covers ``coverage`` of it: 0 between ``low`` and ``high``."""
    if coverage < low:
        return float(1.0 - coverage / low)
    if coverage > high:
        return float((coverage - high) / (1.0 - high))
    return 0.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1 when both are empty (they agree)."""
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def confident_iou(pred: np.ndarray, pseudo: np.ndarray, sure: np.ndarray | None) -> float | None:
    """IoU of the model's defect pixels ``pred`` and the mask's ``pseudo`` where the model is
    ``sure`` (all pixels when ``None``); ``None`` when it is sure of no pixel."""
    if sure is None:
        return iou(pred, pseudo)
    if not sure.any():
        return None
    return iou(pred & sure, pseudo & sure)


@dataclass
class BoxSignals:
    """One box: where it is, what its mask looks like, and its doubt signals.

    ``signals`` are the raw signals (0 = nothing suspicious); ``extent`` is the share of the
    box spanned by the mask's bounding box (``None`` for an empty mask), which ranking uses
    with ``coverage`` in both directions.
    """

    index: int
    cls: int
    box: tuple[int, int, int, int]
    coverage: float
    pieces: int
    teacher_score: float | None
    agreement: float | None
    signals: dict[str, float | None]
    extent: float | None = None


def _shape(
    region: np.ndarray,
    full: np.ndarray,
    components: np.ndarray,
    box: tuple[int, int, int, int],
    margin: float,
) -> tuple[float, np.ndarray, int, float, tuple[int, int]]:
    """``extent``, the *gaps* (box-sized: what filling the holes and a small closing add to
    the mask), the closed outline's area, ``offset``, and the pixels of the mask's regions
    outside the box and in all, of a non-empty mask ``region`` of ``box`` (``full``: the
    class's whole-image mask, ``components``: its regions)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    ys, xs = np.nonzero(region)
    mx0, mx1, my0, my1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    extent = float((mx1 - mx0) * (my1 - my0) / (bw * bh))
    cx, cy = (mx0 + mx1) / 2 / bw - 0.5, (my0 + my1) / 2 / bh - 0.5
    offset = float(min(1.0, 2 * max(abs(cx), abs(cy))))
    r = max(1, round(0.12 * math.sqrt(bw * bh)))
    padded = np.pad(region.astype(np.uint8), r + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(closed)
    cv2.drawContours(filled, contours, -1, 1, -1)
    outline = filled[r + 1 : r + 1 + bh, r + 1 : r + 1 + bw] > 0
    gaps = outline & ~region
    # spill: the pixels of the mask's regions outside the box grown by margin
    ids = np.unique(components[y0:y1, x0:x1][region])
    touching = np.isin(components, ids) & full
    m = math.ceil(margin)
    inside = int(np.count_nonzero(touching[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m]))
    total = int(np.count_nonzero(touching))
    return extent, gaps, max(1, int(np.count_nonzero(outline))), offset, (total - inside, total)


def _appearance(
    image: np.ndarray, full: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[float, np.ndarray] | None:
    """``1 − IoU`` of the mask and its colour-nearest pixels (CIELAB) in the box grown by a
    quarter (``image``: RGB ``uint8``), and which of the box's pixels have the mask's
    colour; ``None`` where the window is all mask or has none."""
    x0, y0, x1, y1 = box
    h, w = full.shape
    gx, gy = (x1 - x0) // 4 + 2, (y1 - y0) // 4 + 2
    wx0, wy0, wx1, wy1 = max(0, x0 - gx), max(0, y0 - gy), min(w, x1 + gx), min(h, y1 + gy)
    inside = full[wy0:wy1, wx0:wx1]
    if inside.all() or not inside.any():
        return None
    pixels = lab_image(image[wy0:wy1, wx0:wx1])  # the window only: photos are large
    mean_in, mean_out = pixels[inside].mean(axis=0), pixels[~inside].mean(axis=0)
    nearer = ((pixels - mean_in) ** 2).sum(-1) < ((pixels - mean_out) ** 2).sum(-1)
    alike = nearer[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    return 1.0 - iou(nearer, inside), alike


def lab_image(image: np.ndarray) -> np.ndarray:
    """An RGB ``uint8`` image as lightly smoothed CIELAB ``float32`` (for ``appearance``)."""
    smooth = cv2.GaussianBlur(image, (3, 3), 0).astype(np.float32) / 255.0
    return cv2.cvtColor(smooth, cv2.COLOR_RGB2Lab)


def box_signals(
    mask: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    settings: DoubtSettings,
    teacher_scores: Sequence[float | None] | None = None,
    prediction: np.ndarray | None = None,
    *,
    image: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> list[BoxSignals]:
    """The signals of every box (N×4 pixel xyxy, YOLO ``classes``) of one label map.

    Args:
        mask: H×W pseudo-mask (0 background, k+1 class k, 255 ignore).
        boxes: the image's boxes in pixels.
        classes: their YOLO class ids.
        settings: thresholds.
        teacher_scores: the teacher's score per box (``None`` entries: not recorded).
        prediction: the model's H×W label map, when a model is given.
        image: the H×W×3 RGB image (``uint8``) for ``appearance`` (``None``: not measured).
        confidence: the model's H×W confidence (with ``prediction``): ``disagreement`` counts
            the pixels of at least ``settings.confident`` only.
    """
    height, width = mask.shape
    sure = None if confidence is None else confidence >= settings.confident
    components: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for i, (box, cls) in enumerate(zip(np.asarray(boxes, np.float64), classes, strict=True)):
        x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
        value = int(cls) + 1
        if value not in components:
            full = mask == value
            components[value] = (full, cv2.connectedComponents(full.astype(np.uint8), 8)[1])
        full, comps = components[value]
        region = full[y0:y1, x0:x1]
        coverage = float(region.mean())
        pieces = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)[0] - 1
        score = None if teacher_scores is None else teacher_scores[i]
        agreement = None
        if prediction is not None:
            agreement = confident_iou(
                prediction[y0:y1, x0:x1] > 0,
                defect_pixels(mask[y0:y1, x0:x1]),
                None if sure is None else sure[y0:y1, x0:x1],
            )
        signals: dict[str, float | None] = dict.fromkeys(BOX_SIGNALS)
        signals["coverage"] = coverage_doubt(coverage, settings.low, settings.high)
        extent = None
        if pieces > 0:
            box_px = (x0, y0, x1, y1)
            extent, gaps, outline, offset, (outside, total) = _shape(
                region, full, comps, box_px, settings.margin
            )
            signals["extent"] = max(0.0, 1.0 - extent / settings.low_extent)
            signals["fragmentation"] = 1.0 - 1.0 / pieces
            signals["offset"] = offset
            looks = None if image is None else _appearance(image, full, box_px)
            if looks is not None:
                appearance, alike = looks
                signals["appearance"] = appearance
                # a gap of the mask's colour is a hole, one of the background's is the
                # defect's own shape; the mask's pixels of the background's colour spilled
                # (the mask's one-pixel rim is left out of both: edges blur)
                core = cv2.erode(region.astype(np.uint8), _CROSS, borderValue=1) > 0
                near = cv2.dilate(region.astype(np.uint8), _CROSS) > 0
                gaps &= alike & ~near
                outside += int(np.count_nonzero(core & ~alike))
            signals["holes"] = float(np.count_nonzero(gaps) / outline)
            signals["spill"] = min(1.0, outside / max(1, total))
        if score is not None:
            signals["teacher"] = float(np.clip(1.0 - score, 0.0, 1.0))
        if agreement is not None:
            signals["disagreement"] = 1.0 - agreement
        out.append(
            BoxSignals(
                i, int(cls), (x0, y0, x1, y1), coverage, pieces, score, agreement, signals, extent
            )
        )
    return out


class Calibration:
    """Ranks of signal values among a split's boxes (per class) and images.

    ``rank(name, cls, value)`` is the share of the reference values that are no more
    suspicious than ``value``: for the one-sided signals the share ``≤ value`` (and 0 for
    0), for :data:`TWO_SIDED` ones ``|F(v−) + F(v) − 1|``, the distance from the median in
    either direction (0 at the class's median, 1 at its extremes). Box signals are ranked
    among the boxes of their class when it has at least ``per_class_min`` of them, else
    among all boxes; image signals among all images.
    """

    def __init__(self, per_class_min: int = 20) -> None:
        self.per_class_min = per_class_min
        self._values: dict[tuple[str, int | None], list[float]] = {}
        self._sorted: dict[tuple[str, int | None], np.ndarray] = {}

    @staticmethod
    def raw(name: str, box: BoxSignals | None, value: float | None) -> float | None:
        """The value a signal is ranked by (coverage and extent themselves, else the signal)."""
        if box is not None and name == "coverage":
            return box.coverage
        if box is not None and name == "extent":
            return box.extent
        return value

    def add_box(self, box: BoxSignals) -> None:
        """Count a box's signals."""
        for name, value in box.signals.items():
            v = self.raw(name, box, value)
            if v is not None:
                self._values.setdefault((name, box.cls), []).append(float(v))
                self._values.setdefault((name, None), []).append(float(v))
        self._sorted.clear()

    def add_image(self, signals: Mapping[str, float | None]) -> None:
        """Count an image's own signals (``disagreement``, ``missed``)."""
        for name, v in signals.items():
            if v is not None:
                self._values.setdefault((f"image:{name}", None), []).append(float(v))
        self._sorted.clear()

    def _reference(self, key: tuple[str, int | None]) -> np.ndarray:
        if key not in self._sorted:
            self._sorted[key] = np.sort(np.asarray(self._values.get(key, []), np.float64))
        return self._sorted[key]

    def rank(self, name: str, cls: int | None, value: float | None) -> float | None:
        """The rank of ``value`` of signal ``name`` (box class ``cls``; ``None``: an image
        signal) in ``[0, 1]``; ``None`` for ``None``."""
        if value is None:
            return None
        if name in UNRANKED:
            return float(value)
        if cls is None:
            ref = self._reference((f"image:{name}", None))
        else:
            ref = self._reference((name, cls))
            if len(ref) < self.per_class_min:
                ref = self._reference((name, None))
        if len(ref) == 0:
            return 0.0
        at_most = np.searchsorted(ref, value, side="right") / len(ref)
        if name in TWO_SIDED and cls is not None:
            below = np.searchsorted(ref, value, side="left") / len(ref)
            return float(min(1.0, abs(at_most + below - 1.0)))
        return 0.0 if value <= 0 else float(at_most)

    def box_ranks(self, box: BoxSignals) -> dict[str, float | None]:
        """Every signal of ``box`` as its rank; an empty mask's or a (nearly) filled box's
        ``coverage`` at least its raw signal, so it stays doubtful even where the whole split
        is like that (a rank only sees what is unusual)."""
        out = {}
        for name, value in box.signals.items():
            r = self.rank(name, box.cls, self.raw(name, box, value))
            extreme = box.pieces == 0 or box.coverage > 0.5
            if name == "coverage" and r is not None and value and extreme:
                r = max(r, value)
            out[name] = r
        return out


def calibrate(
    boxes: Iterable[BoxSignals],
    images: Iterable[Mapping[str, float | None]] = (),
    per_class_min: int = 20,
) -> Calibration:
    """A :class:`Calibration` of a split's boxes and image signals."""
    cal = Calibration(per_class_min)
    for box in boxes:
        cal.add_box(box)
    for signals in images:
        cal.add_image(signals)
    return cal


def image_signals(
    boxes: Sequence[BoxSignals], image_agreement: float | None, missed: float | None
) -> dict[str, float | None]:
    """An image's raw signals: each box signal's worst box, the whole-image disagreement and
    ``missed`` (``None`` where nothing was measured)."""
    values: dict[str, float | None] = {}
    for name in BOX_SIGNALS:
        measured = [b.signals[name] for b in boxes if b.signals[name] is not None]
        values[name] = max(measured) if measured else None  # type: ignore[type-var]
    values["disagreement"] = None if image_agreement is None else 1.0 - image_agreement
    values["missed"] = missed
    return values


@dataclass(frozen=True)
class Score:
    """A doubt score and what each signal contributed (contributions sum to the score)."""

    value: float
    contributions: dict[str, float]

    @property
    def shares(self) -> dict[str, float]:
        """Each measured signal's share of the score (0 for all when the score is 0)."""
        if self.value <= 0:
            return dict.fromkeys(self.contributions, 0.0)
        return {k: v / self.value for k, v in self.contributions.items()}


def doubt_score(
    signals: Mapping[str, float | None], weights: Mapping[str, float], power: float = 1.0
) -> Score:
    """The weighted power mean ``(Σ w v^p / Σ w)^(1/p)`` of the measured signals (missing
    ones renormalised away; ``power`` 1: the weighted mean). Each signal's contribution is
    the score times its share ``w v^p / Σ w v^p``."""
    measured = {k: v for k, v in signals.items() if v is not None and weights.get(k, 0) > 0}
    total = sum(weights[k] for k in measured)
    if total <= 0:
        return Score(0.0, {})
    parts = {k: weights[k] * float(v) ** power for k, v in measured.items()}
    mass = sum(parts.values())
    value = (mass / total) ** (1.0 / power)
    if mass <= 0:
        return Score(0.0, dict.fromkeys(measured, 0.0))
    return Score(value, {k: value * part / mass for k, part in parts.items()})
