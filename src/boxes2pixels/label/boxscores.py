"""Per-box records of a labelled image (class, box, mask area, coverage, teacher scores) and
the ``--min-score`` rule.

The teacher's scores come from :func:`boxes2pixels.teachers.scores.segment_scored`
(predicted IoU and stability score of SAM-family teachers; ``None`` for teachers without
scores). A box's ``score`` is the lower of the two; with ``min_score`` set, a box scoring
below it is *ignored*: its mask is not painted, and the pixels of its box that no kept mask
covers become 255 (ignore), which the training losses skip. Boxes without a score are never
ignored.

Each record is stored in the run's part file and in ``manifest.json``
(:meth:`BoxRecord.to_json`; keys documented in ``docs/teachers.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.labelmaps import IGNORE
from ..errors import Boxes2PixelsError, ConfigError
from ..teachers.base import Teacher, box_pixel_ranges
from ..teachers.scores import TeacherOutput, segment_scored
from .crops import Crop


@dataclass(frozen=True)
class BoxRecord:
    """One box of a labelled image.

    Attributes:
        cls: YOLO class id.
        box: ``x0, y0, x1, y1`` in pixels of the image.
        mask_area: pixels of the box's own mask (before the overlap policy).
        box_coverage: fraction of the box's pixels that its mask covers.
        predicted_iou: the teacher's predicted IoU, ``None`` when it has none.
        stability_score: the teacher's stability score, ``None`` when it has none.
        score: the lower of the two (``None`` when neither exists).
        ignored: the score is below ``min_score``: the box was marked ignore (255).
    """

    cls: int
    box: tuple[float, float, float, float]
    mask_area: int
    box_coverage: float
    predicted_iou: float | None
    stability_score: float | None
    score: float | None
    ignored: bool

    def to_json(self) -> dict[str, object]:
        """The record as stored in the part files and ``manifest.json``."""
        return {
            "class": self.cls,
            "box": [round(v, 2) for v in self.box],
            "mask_area": self.mask_area,
            "box_coverage": round(self.box_coverage, 6),
            "predicted_iou": _rounded(self.predicted_iou),
            "stability_score": _rounded(self.stability_score),
            "score": _rounded(self.score),
            "ignored": self.ignored,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def check_min_score(min_score: float | None, teacher: Teacher) -> None:
    """Refuse a ``min_score`` outside [0, 1] or for a teacher that gives no scores.

    Raises:
        ConfigError: with the reason.
    """
    if min_score is None:
        return
    if not 0.0 <= min_score <= 1.0:
        raise ConfigError(f"--min-score must be between 0 and 1, got {min_score}")
    if not callable(getattr(teacher, "segment_scored", None)):
        name = getattr(teacher, "name", type(teacher).__name__)
        raise ConfigError(
            f"--min-score needs a teacher that scores its masks (sam, mobile-sam, sam-hq, "
            f"sam2); teacher '{name}' gives no scores"
        )


def checked_output(teacher: Teacher, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput:
    """The teacher's masks (N×H×W bool) and scores for ``boxes``, shapes checked.

    Raises:
        Boxes2PixelsError: masks of another shape than N×H×W, or scores not of length N.
    """
    height, width = image.shape[:2]
    out = segment_scored(teacher, image, boxes)
    masks = np.asarray(out.masks)
    name = getattr(teacher, "name", type(teacher).__name__)
    if masks.shape != (len(boxes), height, width):
        raise Boxes2PixelsError(
            f"teacher '{name}' returned masks of shape {masks.shape} for "
            f"{len(boxes)} boxes on a {height}×{width} image (expected N×H×W)"
        )
    scores = []
    for what, values in (("predicted_iou", out.predicted_iou), ("stability", out.stability)):
        if values is not None:
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            if values.shape != (len(boxes),):
                raise Boxes2PixelsError(
                    f"teacher '{name}' returned {values.size} {what} scores for {len(boxes)} boxes"
                )
        scores.append(values)
    return TeacherOutput(masks.astype(bool, copy=False), *scores)


class CropScores:
    """The teacher call for :func:`~boxes2pixels.label.crops.segment_in_crops` that keeps the
    scores of each crop's boxes; called once per crop, in the order of ``crops``."""

    def __init__(self, teacher: Teacher, n_boxes: int, crops: Sequence[Crop]) -> None:
        self.teacher = teacher
        self._crops = iter(crops)
        self.predicted_iou: np.ndarray | None = None
        self.stability: np.ndarray | None = None
        self._n = n_boxes

    def __call__(self, window: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Masks of ``boxes`` in ``window`` (one crop); their scores are kept."""
        crop = next(self._crops)
        if len(boxes) != len(crop.boxes):
            raise Boxes2PixelsError("crop calls came out of the order of their plan")
        out = checked_output(self.teacher, window, boxes)
        idx = list(crop.boxes)
        if out.predicted_iou is not None:
            self.predicted_iou = self._put(self.predicted_iou, idx, out.predicted_iou)
        if out.stability is not None:
            self.stability = self._put(self.stability, idx, out.stability)
        return out.masks

    def _put(self, into: np.ndarray | None, idx: list[int], values: np.ndarray) -> np.ndarray:
        into = np.full(self._n, np.nan) if into is None else into
        into[idx] = values
        return into

    def output(self, masks: np.ndarray) -> TeacherOutput:
        """The pasted full-size masks with the scores of every crop."""
        return TeacherOutput(masks, self.predicted_iou, self.stability)


def _at(values: np.ndarray | None, i: int) -> float | None:
    if values is None or np.isnan(values[i]):
        return None
    return float(values[i])


def box_records(
    output: TeacherOutput,
    boxes: np.ndarray,
    classes: np.ndarray,
    coverage: np.ndarray,
    min_score: float | None = None,
) -> list[BoxRecord]:
    """One :class:`BoxRecord` per box, ``ignored`` set where the score is below ``min_score``."""
    areas = output.masks.reshape(len(boxes), -1).sum(axis=1)
    records = []
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64)):
        iou, stable = _at(output.predicted_iou, i), _at(output.stability, i)
        known = [s for s in (iou, stable) if s is not None]
        score = min(known) if known else None
        ignored = min_score is not None and score is not None and score < min_score
        records.append(
            BoxRecord(
                int(classes[i]),
                (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                int(areas[i]),
                float(coverage[i]),
                iou,
                stable,
                score,
                bool(ignored),
            )
        )
    return records


def mark_ignored(label_map: np.ndarray, boxes: np.ndarray, records: Sequence[BoxRecord]) -> None:
    """Set to 255 (in place) the pixels of ignored boxes that no kept mask covers."""
    height, width = label_map.shape
    for box, record in zip(np.asarray(boxes, dtype=np.float64), records, strict=True):
        if record.ignored:
            x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
            region = label_map[y0:y1, x0:x1]
            region[region == 0] = IGNORE
