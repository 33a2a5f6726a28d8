"""Per-box teacher confidence: :class:`TeacherOutput` and the stability score.

A teacher may offer, next to ``segment``, a method ``segment_scored(image, boxes)`` that
returns a :class:`TeacherOutput`: the same masks plus, per box, the decoder's predicted IoU
and a stability score. The SAM-family teachers (``sam``, ``mobile-sam``, ``sam-hq``,
``sam2``) do; a teacher without the method (``grabcut``, ``box``, older plugins) has no
scores, which :func:`segment_scored` reports as ``None``.

Stability score (as SAM's automatic mask generator computes it,
``segment_anything.utils.amg.calculate_stability_score``): the mask logits of one box,
upsampled to the image, are thresholded at ``t + offset`` and at ``t − offset``
(``t`` = the model's mask threshold, 0; ``offset`` = 1.0); the score is the IoU of the two
binary masks, i.e. ``#(logits > t+1) / #(logits > t−1)`` because the first lies inside the
second. 1.0 means the mask barely changes when the threshold moves; a low value means much of
the mask hangs on logits near the threshold. An empty mask (no logit above ``t − 1``) scores
0.0: the teacher found nothing in the box, so its mask is not to be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import Boxes2PixelsError

if TYPE_CHECKING:
    import torch

STABILITY_OFFSET = 1.0
"""Logit offset of the stability score (SAM's automatic mask generator default)."""


@dataclass(frozen=True)
class TeacherOutput:
    """Masks of one image's boxes and, when the teacher rates them, per-box scores.

    Attributes:
        masks: N×H×W boolean masks, mask ``i`` for box ``i``.
        predicted_iou: N floats, the decoder's own estimate of the mask's IoU with the object
            (SAM, MobileSAM, HQ-SAM: an unbounded regression, usually in [0, 1]; SAM 2: a
            sigmoid in [0, 1]); ``None`` when the teacher has none.
        stability: N floats in [0, 1], see the module docstring; ``None`` when the teacher
            has none.
    """

    masks: np.ndarray
    predicted_iou: np.ndarray | None = None
    stability: np.ndarray | None = None

    def score(self) -> np.ndarray | None:
        """Per box, the lower of the available scores (``None`` when there are none).

        This is the number ``b2p label --min-score`` compares: a box needs both a high
        predicted IoU and a stable mask to be trusted.
        """
        parts = [s for s in (self.predicted_iou, self.stability) if s is not None]
        if not parts:
            return None
        return np.minimum.reduce([np.asarray(p, dtype=np.float64) for p in parts])


def stability_score(
    logits: torch.Tensor, threshold: float = 0.0, offset: float = STABILITY_OFFSET
) -> torch.Tensor:
    """Stability score of each mask in ``logits`` (…×H×W), computed over the last two axes.

    ``#(logits > threshold + offset) / #(logits > threshold − offset)``; 0.0 for a mask
    with no logit above ``threshold − offset``.
    """
    high = (logits > threshold + offset).flatten(-2).sum(-1)
    low = (logits > threshold - offset).flatten(-2).sum(-1)
    return high.double() / low.clamp(min=1).double()


def segment_scored(teacher: Any, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput:
    """The teacher's masks and scores: ``teacher.segment_scored`` when it has one, else
    ``teacher.segment`` with both scores ``None``."""
    method = getattr(teacher, "segment_scored", None)
    if callable(method):
        out = method(image, boxes)
        if isinstance(out, TeacherOutput):
            return out
        name = getattr(teacher, "name", type(teacher).__name__)
        raise Boxes2PixelsError(
            f"teacher '{name}': segment_scored returned {type(out).__name__}, not TeacherOutput"
        )
    return TeacherOutput(np.asarray(teacher.segment(image, boxes)))
