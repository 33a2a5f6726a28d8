"""The review queue: point people at the pseudo-masks least worth trusting (``b2p review``).

Modules: :mod:`.settings` (the signals' weights and thresholds), :mod:`.signals` (the doubt
signals, measured per box), :mod:`.doubt` (ranks in the split and the documented score),
:mod:`.model` (a model's confidence map and possible missed defects), :mod:`.scores` (the
teacher's recorded per-box scores), :mod:`.reasons` (why, in words), :mod:`.queue`
(ranking a split; ``queue.csv`` / ``queue.json``),
:mod:`.gallery` (the HTML gallery), :mod:`.bundle` (images + COCO for CVAT / Label Studio)
and :mod:`.run` (``review_dataset``: all of it). Corrections come back through
``b2p label --corrections`` (:mod:`boxes2pixels.label.corrections`).
"""

from __future__ import annotations

from .bundle import write_bundle
from .doubt import Calibration, calibrate, doubt_score
from .gallery import gallery_document, write_gallery
from .model import MissedDefect, ModelView, missed_defects, model_view
from .queue import (
    BoxReview,
    ImageReview,
    Measured,
    ReviewQueue,
    measure_image,
    rank_measured,
    review_image,
    review_split,
    score_image,
)
from .run import ReviewResult, review_dataset
from .scores import teacher_scores
from .settings import DEFAULT_POWER, DEFAULT_WEIGHTS, SIGNALS, DoubtSettings, parse_weights

__all__ = [
    "DEFAULT_POWER",
    "DEFAULT_WEIGHTS",
    "SIGNALS",
    "BoxReview",
    "Calibration",
    "DoubtSettings",
    "ImageReview",
    "Measured",
    "MissedDefect",
    "ModelView",
    "ReviewQueue",
    "ReviewResult",
    "calibrate",
    "doubt_score",
    "gallery_document",
    "measure_image",
    "missed_defects",
    "model_view",
    "parse_weights",
    "rank_measured",
    "review_dataset",
    "review_image",
    "review_split",
    "score_image",
    "teacher_scores",
    "write_bundle",
    "write_gallery",
]
