"""Which doubt signals there are, their default weights and how a score combines them
(:class:`DoubtSettings`, ``--weights``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError

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
#: generated error models (``--fit``) lean on the generated teacher score (weight 4) and
#: ranked the imitation teacher, which records no score, worse (top-20 mean IoU 0.056
#: against 0.038 with these), so these stay closer to equal: each signal keeps a voice.
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
            a signal given twice, a negative, NaN or infinite weight, or every weight 0
            (nothing would be scored).
    """
    weights = dict(DEFAULT_WEIGHTS)
    given: set[str] = set()
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
        if name in given:
            raise ConfigError(f"--weights: {name} is given twice in '{spec}'; give it once")
        given.add(name)
        weights[name] = weight
    if not any(weights.values()):
        raise ConfigError(
            f"--weights: every weight is 0 ('{spec}'), so every image would score 0; "
            "give at least one signal a weight above 0"
        )
    return weights


def check_measurable(
    settings: DoubtSettings, model: bool, scores: Mapping[str, Sequence[float | None]] | None
) -> None:
    """Refuse weights under which this run can score nothing: every signal with a weight
    above 0 needs what the run lacks (``disagreement`` and ``missed`` a model, ``teacher``
    the scores ``b2p label`` records, ``scores``: per image key, per box); every image would
    score 0 and the queue would be in file order.

    Raises:
        ConfigError: naming ``--weights`` and what each weighted signal needs.
    """
    lacking = {"disagreement": "--model", "missed": "--model"} if not model else {}
    if not any(v is not None for box_scores in (scores or {}).values() for v in box_scores):
        lacking["teacher"] = "the teacher's scores (b2p label recorded none for these masks)"
    weighted = [name for name, w in settings.weights.items() if w > 0]
    if weighted and all(name in lacking for name in weighted):
        needs = "; ".join(f"{name} needs {lacking[name]}" for name in weighted)
        raise ConfigError(
            f"--weights: no signal with a weight above 0 can be measured in this run "
            f"({needs}), so every image would score 0; give a measured signal a weight "
            "(e.g. coverage=1)"
        )
