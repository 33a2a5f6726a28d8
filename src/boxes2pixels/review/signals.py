"""The doubt signals of a pseudo-mask, measured per box (:func:`box_signals`).

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
  mask's mean colour than any of its surroundings' main colours (a mask of the wrong object,
  or shifted).
- ``teacher``: ``1 − score`` of the teacher's own score for the box (predicted IoU,
  stability), when the labelling run recorded one.
- ``disagreement``: ``1 − IoU`` of the model's defect pixels and the mask's, counted only
  where the model is confident (``confident``); per box inside it, per image over all of it.
- ``missed`` (per image): the confidence of the most confident defect region the model sees
  outside every box ("possible missed defect").

Signals that cannot be measured (no teacher score, no model, shape signals of an empty
mask) are ``None`` and left out; the other weights are renormalised, so a missing signal
never counts as "no doubt".
How they are ranked and combined into a score: :mod:`.doubt`; the weights and thresholds:
:mod:`.settings`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..data.labelmaps import defect_pixels
from ..teachers.base import box_pixel_ranges
from .settings import BOX_SIGNALS, DoubtSettings

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


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


_CLOSING = 0.12
"""The radius of the disk closing the mask's outline (``holes``), as a share of the box's
geometric mean side."""

_MAX_RADIUS = 24
"""Above this radius (boxes over about 200 px) the closing runs on a smaller copy."""


def _close(mask: np.ndarray, r: int) -> np.ndarray:
    """The closing of ``mask`` (``uint8`` 0/1, padded by more than ``r``) by OpenCV's
    elliptic kernel of radius ``r``.

    OpenCV's time grows with the kernel's area (11 s for a 2000×1400 box, ``r`` 201), so above
    :data:`_MAX_RADIUS` the closing runs at the scale where the radius is ``_MAX_RADIUS``, on a
    copy where a pixel is set if any of its pixels is (thin parts survive), and comes back at
    that scale's coarseness; the mask itself is always kept."""
    if r <= _MAX_RADIUS:
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse(r))
    height, width = mask.shape
    scale = _MAX_RADIUS / r
    size = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
    small = (cv2.resize(mask * 255, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, _ellipse(_MAX_RADIUS))
    return cv2.resize(closed, (width, height), interpolation=cv2.INTER_NEAREST) | mask


def _ellipse(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _shape(
    region: np.ndarray,
    components: np.ndarray,
    sizes: np.ndarray,
    box: tuple[int, int, int, int],
    margin: float,
) -> tuple[float, np.ndarray, int, float, tuple[int, int]]:
    """``extent``, the *gaps* (box-sized: what filling the holes and a small closing add to
    the mask), the closed outline's area, ``offset``, and the pixels of the mask's regions
    outside the box and in all, of a non-empty mask ``region`` of ``box`` (``components``:
    the regions of the class's whole-image mask, ``sizes``: their pixel counts)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    ys, xs = np.nonzero(region)
    mx0, mx1, my0, my1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    extent = float((mx1 - mx0) * (my1 - my0) / (bw * bh))
    cx, cy = (mx0 + mx1) / 2 / bw - 0.5, (my0 + my1) / 2 / bh - 0.5
    offset = float(min(1.0, 2 * max(abs(cx), abs(cy))))
    r = max(1, round(_CLOSING * math.sqrt(bw * bh)))
    closed = _close(np.pad(region.astype(np.uint8), r + 1), r)
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(closed)
    cv2.drawContours(filled, contours, -1, 1, -1)
    outline = filled[r + 1 : r + 1 + bh, r + 1 : r + 1 + bw] > 0
    gaps = outline & ~region
    # spill: the pixels of the mask's regions outside the box grown by margin
    ids = np.unique(components[y0:y1, x0:x1][region])
    m = math.ceil(margin)
    near = components[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m]
    inside = int(np.count_nonzero(np.isin(near, ids)))
    total = int(sizes[ids].sum())
    return extent, gaps, max(1, int(np.count_nonzero(outline))), offset, (total - inside, total)


def _appearance(
    image: np.ndarray, full: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """``1 − IoU`` of the mask and its colour-nearest pixels (CIELAB) in the box grown by a
    quarter (``image``: RGB ``uint8``), and two maps of the box's pixels: those with the mask's
    colour (nearer the mask's mean than any of the :data:`_BACKGROUND_COLOURS` main colours of
    the window outside the box: a blade in light and shadow, sky and ground are several
    colours, and their one mean can lie near a faint defect's) and those with the background's
    (nearer the mean of the window's other pixels than the mask's). Each is the cautious side
    for the signal that uses it (``holes``, ``spill``). ``None`` where the window is all mask
    or has none."""
    x0, y0, x1, y1 = box
    h, w = full.shape
    gx, gy = (x1 - x0) // 4 + 2, (y1 - y0) // 4 + 2
    wx0, wy0, wx1, wy1 = max(0, x0 - gx), max(0, y0 - gy), min(w, x1 + gx), min(h, y1 + gy)
    inside = full[wy0:wy1, wx0:wx1]
    if inside.all() or not inside.any():
        return None
    pixels = lab_image(image[wy0:wy1, wx0:wx1])  # the window only: photos are large
    mask_colour, around = pixels[inside].mean(axis=0), ~inside
    in_box = np.s_[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    beyond = around.copy()
    beyond[in_box] = False  # outside the box: background (a missed part or hole is inside)
    to_mask = _distance(pixels, mask_colour)
    main = colour_centres(pixels[beyond if beyond.any() else around])
    like_mask = to_mask < np.min([_distance(pixels, c) for c in main], axis=0)
    like_background = _distance(pixels, pixels[around].mean(axis=0)) <= to_mask
    return 1.0 - iou(like_mask, inside), like_mask[in_box], like_background[in_box]


_BACKGROUND_COLOURS = 4
"""Main colours of a mask's surroundings (k-means clusters) for ``appearance`` and ``holes``."""

_SAMPLE = 4000
"""At most this many pixels (every n-th) are clustered; the others are only compared."""


def colour_centres(pixels: np.ndarray, k: int = _BACKGROUND_COLOURS) -> np.ndarray:
    """The ``k`` main colours (k-means centres) of N×3 ``pixels``, deterministic: OpenCV's
    k-means started from the pixels split into ``k`` lightness bands. Fewer than ``4k``
    pixels: their mean alone."""
    if len(pixels) < 4 * k:
        return pixels.mean(axis=0, keepdims=True)
    sample = np.ascontiguousarray(pixels[:: max(1, len(pixels) // _SAMPLE)], np.float32)
    bands = np.empty(len(sample), np.int32)
    bands[np.argsort(sample[:, 0], kind="stable")] = np.arange(len(sample)) * k // len(sample)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.1)
    _, _, centres = cv2.kmeans(
        sample, k, bands.reshape(-1, 1), criteria, 1, cv2.KMEANS_USE_INITIAL_LABELS
    )
    return centres


def _distance(pixels: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return ((pixels - colour) ** 2).sum(-1)


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
    components: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    out = []
    for i, (box, cls) in enumerate(zip(np.asarray(boxes, np.float64), classes, strict=True)):
        x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
        value = int(cls) + 1
        if value not in components:
            full = mask == value
            comps = cv2.connectedComponents(full.astype(np.uint8), 8)[1]
            components[value] = (full, comps, np.bincount(comps.ravel()))
        full, comps, sizes = components[value]
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
                region, comps, sizes, box_px, settings.margin
            )
            signals["extent"] = max(0.0, 1.0 - extent / settings.low_extent)
            signals["fragmentation"] = 1.0 - 1.0 / pieces
            signals["offset"] = offset
            looks = None if image is None else _appearance(image, full, box_px)
            if looks is not None:
                appearance, alike, background = looks
                signals["appearance"] = appearance
                # a gap of the mask's colour is a hole, one of the background's is the
                # defect's own shape; the mask's pixels of the background's colour spilled
                # (the mask's one-pixel rim is left out of both: edges blur)
                core = cv2.erode(region.astype(np.uint8), _CROSS, borderValue=1) > 0
                near = cv2.dilate(region.astype(np.uint8), _CROSS) > 0
                gaps &= alike & ~near
                outside += int(np.count_nonzero(core & background))
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
