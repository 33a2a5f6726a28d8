"""Doubt signals of a pseudo-mask and the doubt score built from them.

Every signal is a number in ``[0, 1]``: 0 = nothing suspicious, 1 = as suspicious as it gets.
A signal that cannot be measured (no teacher score recorded, no model given) is ``None`` and
is left out of the score; the other weights are renormalised, so a missing signal never
counts as "no doubt".

Per box (class ``c``, the mask's pixels of value ``c + 1`` inside the box):

- ``coverage``: the share of the box the mask covers. Too little (below ``low``) and too much
  (above ``high``) both count, rising linearly to 1 at an empty mask and a filled box.
- ``fragmentation``: ``1 − 1/n`` for a mask in ``n`` pieces (8-connected) inside the box
  (not measured for an empty mask: ``coverage`` already says it all).
- ``teacher``: ``1 − score`` of the teacher's own score for the box (predicted IoU,
  stability), when the labelling run recorded one.
- ``disagreement``: ``1 − IoU`` of the model's defect pixels and the mask's inside the box.

Per image: each box signal's worst box, plus ``disagreement`` over the whole image and
``missed``: the confidence of the most confident defect region the model sees outside every
box ("possible missed defect"). The score is the weighted mean

    score = Σ_s w_s · v_s / Σ_s w_s      (over the signals s that are not None)

and a signal's *share* is its part ``w_s · v_s / Σ w`` of the score divided by the score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.labelmaps import defect_pixels
from ..errors import ConfigError
from ..teachers.base import box_pixel_ranges

SIGNALS = ("coverage", "fragmentation", "teacher", "disagreement", "missed")
"""The doubt signals, in the order tables show them."""

DEFAULT_WEIGHTS: dict[str, float] = {
    "coverage": 1.0,
    "fragmentation": 0.5,
    "teacher": 1.0,
    "disagreement": 1.0,
    "missed": 0.5,
}


@dataclass(frozen=True)
class DoubtSettings:
    """Weights of the signals and the thresholds the signals use.

    Attributes:
        weights: weight per signal name (missing names get :data:`DEFAULT_WEIGHTS`).
        low: coverage below this share of the box counts as too little.
        high: coverage above this share of the box counts as too much (a filled box).
        min_confidence: a model's defect pixel counts for ``missed`` from this softmax
            confidence on.
        min_area: smallest region (pixels) reported as a possible missed defect.
        margin: pixels a box is grown by before deciding that a region lies outside it.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    low: float = 0.1
    high: float = 0.85
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
        if not 0 < self.low < self.high < 1:
            raise ConfigError(f"need 0 < low < high < 1, got low {self.low}, high {self.high}")
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


@dataclass
class BoxSignals:
    """One box: where it is, what its mask looks like, and its doubt signals."""

    index: int
    cls: int
    box: tuple[int, int, int, int]
    coverage: float
    pieces: int
    teacher_score: float | None
    agreement: float | None
    signals: dict[str, float | None]


def box_signals(
    mask: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    settings: DoubtSettings,
    teacher_scores: Sequence[float | None] | None = None,
    prediction: np.ndarray | None = None,
) -> list[BoxSignals]:
    """The signals of every box (N×4 pixel xyxy, YOLO ``classes``) of one label map.

    Args:
        mask: H×W pseudo-mask (0 background, k+1 class k, 255 ignore).
        boxes: the image's boxes in pixels.
        classes: their YOLO class ids.
        settings: thresholds.
        teacher_scores: the teacher's score per box (``None`` entries: not recorded).
        prediction: the model's H×W label map, when a model is given.
    """
    height, width = mask.shape
    out = []
    for i, (box, cls) in enumerate(zip(np.asarray(boxes, np.float64), classes, strict=True)):
        x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
        region = mask[y0:y1, x0:x1] == int(cls) + 1
        coverage = float(region.mean())
        pieces = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)[0] - 1
        score = None if teacher_scores is None else teacher_scores[i]
        agreement = None
        if prediction is not None:
            pseudo_fg = defect_pixels(mask[y0:y1, x0:x1])
            agreement = iou(prediction[y0:y1, x0:x1] > 0, pseudo_fg)
        signals: dict[str, float | None] = {
            "coverage": coverage_doubt(coverage, settings.low, settings.high),
            "fragmentation": 1.0 - 1.0 / pieces if pieces > 0 else None,
            "teacher": None if score is None else float(np.clip(1.0 - score, 0.0, 1.0)),
            "disagreement": None if agreement is None else 1.0 - agreement,
        }
        out.append(
            BoxSignals(i, int(cls), (x0, y0, x1, y1), coverage, pieces, score, agreement, signals)
        )
    return out


def image_signals(
    boxes: Sequence[BoxSignals], image_agreement: float | None, missed: float | None
) -> dict[str, float | None]:
    """An image's signals: each box signal's worst box, the whole-image disagreement and
    ``missed`` (``None`` where nothing was measured)."""
    values: dict[str, float | None] = {}
    for name in ("coverage", "fragmentation", "teacher"):
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


def doubt_score(signals: Mapping[str, float | None], weights: Mapping[str, float]) -> Score:
    """The weighted mean of the measured signals (missing ones renormalised away)."""
    measured = {k: v for k, v in signals.items() if v is not None and weights.get(k, 0) > 0}
    total = sum(weights[k] for k in measured)
    if total <= 0:
        return Score(0.0, {})
    contributions = {k: weights[k] * float(v) / total for k, v in measured.items()}
    return Score(sum(contributions.values()), contributions)
