"""Issue 22: the review ranking's pieces (ranks per class, power mean, worst box) and the
benchmark over generated teacher error models, as a smoke test."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from boxes2pixels.review import (
    DoubtSettings,
    calibrate,
    doubt_score,
    measure_image,
    rank_measured,
    review_image,
)
from boxes2pixels.review.signals import BoxSignals

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _box(cls: int, coverage: float, teacher: float | None = None) -> BoxSignals:
    signals = dict.fromkeys(("coverage", "extent", "fragmentation", "teacher"))
    signals["coverage"] = 0.0
    signals["teacher"] = teacher
    return BoxSignals(0, cls, (0, 0, 10, 10), coverage, 1, None, None, signals, extent=0.5)


def test_ranks_are_per_class_and_coverage_counts_both_ways() -> None:
    boxes = [_box(0, c) for c in np.linspace(0.05, 0.25, 21)]  # thin cracks: little coverage
    boxes += [_box(1, c) for c in np.linspace(0.3, 0.7, 21)]  # stains: half the box
    cal = calibrate(boxes, per_class_min=20)
    assert cal.rank("coverage", 0, 0.15) == pytest.approx(0.0, abs=0.05)  # typical crack
    assert cal.rank("coverage", 1, 0.15) == 1.0  # far too little for a stain
    assert cal.rank("coverage", 1, 0.95) == 1.0  # and a filled box: too much
    assert cal.rank("coverage", 1, 0.5) == pytest.approx(0.0, abs=0.05)
    assert cal.rank("teacher", 0, 0.0) == 0.0 and cal.rank("teacher", 0, None) is None
    small = calibrate(boxes[:5] + boxes[21:], per_class_min=20)  # class 0: too few boxes
    assert cal.rank("coverage", 0, 0.27) == 1.0  # above every crack of its class
    assert small.rank("coverage", 0, 0.27) < 0.7  # ranked among all boxes instead
    assert small.rank("missed", None, 0.93) == 0.93  # unranked: the model's own confidence


def test_power_mean_lets_one_far_signal_outweigh_several_raised_ones() -> None:
    weights = {"coverage": 1.0, "extent": 1.0, "holes": 1.0, "offset": 1.0}
    one_far = {"coverage": 1.0, "extent": 0.0, "holes": 0.0, "offset": 0.0}
    several = {"coverage": 0.45, "extent": 0.45, "holes": 0.45, "offset": 0.45}
    assert doubt_score(one_far, weights).value < doubt_score(several, weights).value
    assert doubt_score(one_far, weights, 2).value > doubt_score(several, weights, 2).value
    score = doubt_score(
        {"coverage": 0.8, "holes": 0.4, "teacher": None}, weights | {"teacher": 1}, 2
    )
    assert sum(score.contributions.values()) == pytest.approx(score.value)
    assert score.shares["coverage"] == pytest.approx(0.8**2 / (0.8**2 + 0.4**2))


def test_an_image_is_ranked_by_its_worst_box_and_says_why() -> None:
    mask = np.zeros((60, 120), np.uint8)
    boxes = np.array([[5, 5, 35, 35], [45, 5, 75, 35], [85, 5, 115, 35]], np.float32)
    mask[12:28, 12:28] = 1  # box 1: a fine stain
    mask[12:28, 52:68] = 1  # box 2: the same
    mask[2:58, 80:119] = 1  # box 3: spills far outside its box
    image = np.full((60, 120, 3), 200, np.uint8)
    image[mask == 1] = 60
    review = review_image(mask, boxes, np.array([0, 0, 0]), ["dirt", "damage"],
                          DoubtSettings(), image=image)  # fmt: skip
    assert review.worst_box == 2
    spill = review.boxes[2].signals["spill"]
    assert spill is not None and spill > 0.4 and review.boxes[0].signals["spill"] == 0.0
    assert review.reasons[0].startswith("box 3 (dirt):")
    # ranked in a split: the box that stands out leads the queue
    measured = [measure_image(mask, boxes[i : i + 1], np.array([0]), DoubtSettings(),
                              image=image) for i in range(3)] * 8  # fmt: skip
    scores = [r.score for r in rank_measured(measured, ["dirt", "damage"], DoubtSettings())]
    assert scores[2] == max(scores) > scores[0]


def test_the_benchmark_runs_and_prints_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        bench = importlib.import_module("review_ranking")
        lines = bench.main(["--quick"])
    finally:
        sys.path.remove(str(BENCH))
    table = [line for line in lines if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[1:]]
    assert names == ["thin", "spill", "holes", "fragments", "shifted", "empty", "wrong",
                     "mixture", "imitation"]  # fmt: skip
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "held-out teachers pass" in capsys.readouterr().out


def test_box_mean_blends_the_worst_box_with_the_mean_box() -> None:
    mask = np.zeros((60, 120), np.uint8)
    boxes = np.array([[5, 5, 35, 35], [45, 5, 75, 35]], np.float32)
    mask[2:58, 40:80] = 1  # box 2 spills; box 1 empty
    args = (mask, boxes, np.array([0, 0]), ["dirt", "damage"])
    worst = review_image(*args, DoubtSettings(normalise="raw", box_mean=0))
    blended = review_image(*args, DoubtSettings(normalise="raw", box_mean=2))
    box = [b.score for b in worst.boxes]
    assert worst.score == pytest.approx(max(box))
    assert blended.score == pytest.approx((max(box) + 2 * np.mean(box)) / 3)
    with pytest.raises(Exception, match="box_mean"):
        DoubtSettings(box_mean=-1)


def _stain_signals(image: np.ndarray, mask: np.ndarray) -> dict:
    boxes = np.array([[10, 10, 70, 70]], np.float32)
    review = review_image(mask, boxes, np.array([0]), ["dirt", "damage"],
                          DoubtSettings(normalise="raw"), image=image)  # fmt: skip
    return review.boxes[0].signals


def test_holes_and_spill_look_at_the_image_colour() -> None:
    """A gap in the mask where the image shows the defect is a hole; a gap where it shows
    the background is the defect's own shape (a ring-shaped stain); mask pixels showing the
    background inside the box spilled."""
    stain = np.zeros((80, 80), bool)
    stain[20:60, 20:60] = True
    hole = np.zeros_like(stain)
    hole[32:46, 32:46] = True
    image = np.full((80, 80, 3), 210, np.uint8)
    image[stain] = 50  # a dark square stain on a light blade
    punched = np.where(stain & ~hole, 1, 0).astype(np.uint8)
    assert _stain_signals(image, punched)["holes"] > 0.05  # the teacher punched a hole
    ring = image.copy()
    ring[hole] = 210  # the stain itself is a ring: the same mask is right
    assert _stain_signals(ring, punched)["holes"] == 0.0
    exact = stain.astype(np.uint8)
    assert _stain_signals(image, exact)["spill"] == 0.0
    filled = np.zeros((80, 80), np.uint8)
    filled[10:70, 10:70] = 1  # the whole box: the blade around the stain included
    assert _stain_signals(image, filled)["spill"] > 0.4
    # without the image, every gap of the closed outline counts, as before
    boxes = np.array([[10, 10, 70, 70]], np.float32)
    alone = review_image(punched, boxes, np.array([0]), ["dirt", "damage"],
                         DoubtSettings(normalise="raw"))  # fmt: skip
    assert alone.boxes[0].signals["holes"] > 0.05


def test_a_defect_between_the_surroundings_colours_is_told_apart() -> None:
    """A mid-grey stain on a blade half in light, half in shadow: the surroundings' one mean
    colour is the stain's own, so only their main colours (light, shadow) tell the stain
    apart; a hole punched in its mask is seen, and the exact mask looks right."""
    image = np.full((80, 80, 3), 220, np.uint8)
    image[:, 40:] = 80  # the blade's shadow
    stain = np.zeros((80, 80), bool)
    stain[20:60, 20:60] = True
    image[stain] = 150
    exact = stain.astype(np.uint8)
    assert _stain_signals(image, exact)["appearance"] < 0.1
    hole = np.zeros_like(stain)
    hole[32:46, 32:46] = True
    punched = np.where(stain & ~hole, 1, 0).astype(np.uint8)
    assert _stain_signals(image, punched)["holes"] > 0.05


def test_colour_centres_are_deterministic_and_find_the_main_colours() -> None:
    from boxes2pixels.review.signals import colour_centres

    rng = np.random.default_rng(0)
    colours = np.array([[90, 0, 0], [30, 20, 40], [60, -10, 5]], np.float32)
    pixels = colours[rng.integers(0, 3, 9000)] + rng.normal(0, 1, (9000, 3)).astype(np.float32)
    centres = colour_centres(pixels, 3)
    assert np.array_equal(centres, colour_centres(pixels, 3))
    nearest = np.abs(centres[:, None] - colours[None]).max(-1).min(0)
    assert (nearest < 1).all()  # each main colour has a centre within 1 unit
    assert colour_centres(pixels[:5], 3).shape == (1, 3)  # too few pixels: their mean


@pytest.mark.parametrize("r", [30, 60])
def test_the_closing_of_a_large_box_runs_small_and_stays_close_to_the_exact_one(r: int) -> None:
    """Above 24 px the outline closing behind ``holes`` runs on a smaller copy (OpenCV's time
    grows with the kernel's area: seconds for boxes of full-size photos); it keeps the mask,
    keeps a thin crack, and adds about what the exact closing adds."""
    import cv2

    from boxes2pixels.review.signals import _close, _ellipse

    rng = np.random.default_rng(r)
    height, width = 8 * r, 10 * r
    noise = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), r / 3)
    mask = (noise > np.quantile(noise, 0.6)).astype(np.uint8)
    cv2.line(mask, (0, height - 1), (width - 1, height // 2), 1, 1)  # a 1-px crack
    mask = np.pad(mask, r + 1)
    exact = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse(r)) > mask
    closed = _close(mask, r)
    fast = closed > mask
    assert (closed >= mask).all() and exact.any()
    assert (fast & exact).sum() / (fast | exact).sum() > 0.75  # 0.79–0.95 measured
