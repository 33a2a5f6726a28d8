"""The teacher's own per-box scores, as the labelling run recorded them.

Teachers that rate their masks (SAM's predicted IoU, a stability score) have them recorded
per box, in label-file order, in each image's record of ``<masks>/.parts/*.jsonl`` under
:data:`SCORE_KEY`. Images or boxes without a recorded score give ``None``: that signal is
then left out of the doubt score, never counted as a perfect or a failed mask.
"""

from __future__ import annotations

from pathlib import Path

from ..label.records import read_parts

SCORE_KEY = "box_scores"


def teacher_scores(masks: str | Path) -> dict[str, list[float | None]]:
    """Per-box teacher scores by image key ``<split>/<mask name>`` (images with any)."""
    _, latest = read_parts(Path(masks))
    out: dict[str, list[float | None]] = {}
    for key, rec in latest.items():
        scores = rec.get(SCORE_KEY)
        if scores and not rec.get("corrected"):
            out[key] = [None if s is None else float(s) for s in scores]
    return out
