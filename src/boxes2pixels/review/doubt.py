"""The doubt score of a box or an image: signals ranked in the split, then combined.

**Ranking** (``normalise="rank"``, the default): raw signals mean different things on
different datasets and teachers (cracks cover a tenth of their box, stains half of it), so
each signal is replaced by its *rank* among the split's boxes of the same class
(:class:`Calibration`): the share of them that look no more suspicious. ``coverage`` and
``extent`` count both ways (far from the class's typical value in either direction); for the
others a value of 0 stays 0; ``missed`` is used as it is (``settings.UNRANKED``). A box's score
is the weighted power mean of its ranks

    score = (Σ_s w_s · r_s^p / Σ_s w_s)^(1/p)      (over the signals s that are not None)

and an image's score is that of its worst box, together with its image signals
(``disagreement``, ``missed``), blended with the mean of its box scores
(``DoubtSettings.box_mean``). The ``coverage`` of an empty mask or a filled box never ranks
below its raw signal (it stays doubtful where the whole split is like that). The default
weights, power and blend (:mod:`.settings`) were checked on generated teacher errors
(``benchmarks/review_ranking.py``). A signal's *share* is its part ``w_s · r_s^p / Σ w_s
r_s^p`` of the score. ``normalise="raw"`` scores the raw signals (coverage and extent
through the ``low`` / ``high`` / ``low_extent`` thresholds) without a split, as
``review_image`` does alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .settings import TWO_SIDED, UNRANKED
from .signals import BoxSignals


class Calibration:
    """Ranks of signal values among a split's boxes (per class) and images.

    ``rank(name, cls, value)`` is the share of the reference values that are no more
    suspicious than ``value``: for the one-sided signals the share ``≤ value`` (and 0 for
    0), for the two-sided ones (``settings.TWO_SIDED``) ``|F(v−) + F(v) − 1|``, the
    distance from the median in either direction (0 at the class's median, 1 at its
    extremes). Box signals are ranked among the boxes of their class when it has at least
    ``per_class_min`` of them, else among all boxes; image signals among all images.
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
