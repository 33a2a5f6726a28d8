"""Generated teacher error models with known ground truth, for the review-ranking benchmark.

Scenes come from the project's generator (:func:`boxes2pixels.data.synth.render_scene`:
exact ground truth, loose boxes, some subtle defects left unboxed). A *teacher error model*
turns each box's true mask into a pseudo-mask the way a teacher like SAM fails:

========== ===================================================================================
thin       thin and low-contrast parts missed (a morphological opening; subtle defects eroded)
spill      over-segmentation spilling into the background, also outside the box
holes      holes punched into the mask (up to about half of it)
fragments  the mask cut into pieces, some pieces dropped
shifted    the whole mask displaced
empty      nothing, or a small leftover
wrong      the mask of another object inside the box (the blade or sky, or a blob beside
           the defect, or the box's background around the defect)
mixture    each corrupted box gets one of the above
========== ===================================================================================

:data:`IMITATION` adds the project's own imitation teacher (never used for tuning).

Per image: clean (share ``clean``) or corrupted; in a corrupted image each box is corrupted
with probability 0.75 at a severity drawn from U(0.2, 1). Clean boxes still get a 1-px
boundary jitter, so that no mask is perfect. Each box also gets a *teacher score* (like
SAM's predicted IoU, recorded by ``b2p label`` under ``box_scores``): high, noisy and only
loosely tied to the box's true IoU; how much it sees the error depends on the error model
(SAM is confidently wrong about a wrong object, less so about an empty mask).

Everything is deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from boxes2pixels.data.synth import Scene, SynthConfig, render_scene
from boxes2pixels.label.image import combine_masks
from boxes2pixels.label.imitation import FAILURE_SHARES
from boxes2pixels.teachers.base import box_pixel_ranges

ERROR_MODELS = ("thin", "spill", "holes", "fragments", "shifted", "empty", "wrong", "mixture")
IMITATION = "imitation"
"""The project's own imitation teacher (:mod:`boxes2pixels.label.imitation`: per box the
true mask 55 %, thin parts dropped 20 %, the box filled 15 %, nothing 10 %; no teacher
score), never used for tuning."""

#: How much the teacher's own score sees each error (0: blind, 1: its score follows the IoU).
TEACHER_SIGHT = {
    "clean": 0.5, "thin": 0.3, "spill": 0.5, "holes": 0.4, "fragments": 0.5,
    "shifted": 0.2, "empty": 0.8, "wrong": 0.1,
}  # fmt: skip


@dataclass
class Sample:
    """One image: its scene (ground truth, boxes), the pseudo-mask, the per-box teacher scores
    and the binary defect IoU of the pseudo-mask with the truth of the *boxed* defects, the
    teacher's task (``iou``), and with the whole truth, unboxed defects included
    (``iou_all``); both ``None`` for an image without boxes."""

    key: str
    scene: Scene
    image: np.ndarray
    pseudo: np.ndarray
    scores: list[float] | None
    box_iou: list[float]
    modes: list[str]
    iou: float | None
    iou_all: float | None = None


def render_scenes(
    count: int, seed: int, size: tuple[int, int] = (224, 168), defect_scale: float = 2.0
) -> list[tuple[Scene, np.ndarray]]:
    """``count`` generated scenes and their JPEG-decoded images (what a dataset holds)."""
    cfg = SynthConfig(defect_scale=defect_scale, defect_free_fraction=0.2)
    out = []
    for i in range(count):
        scene = render_scene(np.random.default_rng((seed, i)), size, cfg)
        jpeg = np.frombuffer(scene.jpeg_bytes(), np.uint8)
        image = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out.append((scene, image))
    return out


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _u8(m: np.ndarray) -> np.ndarray:
    return m.astype(np.uint8)


def _jitter(m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clean mask: its boundary one pixel in or out, where that keeps IoU ≥ 0.75 (a thin
    crack stays as it is), or unchanged."""
    roll = rng.random()
    out = m
    if roll < 0.3:
        out = cv2.dilate(_u8(m), np.ones((3, 3), np.uint8)) > 0
    elif roll < 0.5:
        out = cv2.erode(_u8(m), np.ones((2, 2), np.uint8)) > 0
    return out if _iou(out, m) >= 0.75 else m


def _thin(m, box, s, rng, ctx):
    r = 1 + round(s * 2.5)
    out = cv2.morphologyEx(_u8(m), cv2.MORPH_OPEN, _disk(r)) > 0
    if ctx["strength"] < 0.4:  # low contrast: the teacher also misses its faint rim
        out = cv2.erode(_u8(out), _disk(1)) > 0
    return out


def _spill(m, box, s, rng, ctx):
    x0, y0, x1, y1 = box
    size = np.sqrt((x1 - x0) * (y1 - y0))
    r = max(1, round(s * 0.22 * size))
    if rng.random() < 0.5:  # spreads one way (into a similar-looking neighbour)
        k = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
        dx, dy = rng.choice([-1, 1], 2)
        centre, axes = (r + dx * r // 2, r + dy * r // 2), (r // 2 + 1, r // 2 + 1)
        cv2.ellipse(k, centre, axes, 0, 0, 360, 1, -1)
        return (cv2.dilate(_u8(m), k) > 0) | m
    return cv2.dilate(_u8(m), _disk(r)) > 0


def _holes(m, box, s, rng, ctx):
    out = m.copy()
    ys, xs = np.nonzero(m)
    if not len(ys):
        return out
    area = len(ys)
    n = 1 + int(s * 5)
    r = max(1, round(np.sqrt(s * 0.7 * area / n / np.pi)))
    for i in rng.choice(len(ys), n):
        cv2.circle(out.view(np.uint8), (int(xs[i]), int(ys[i])), r, 0, -1)
    return out


def _fragments(m, box, s, rng, ctx):
    x0, y0, x1, y1 = box
    cuts = np.zeros(m.shape, np.uint8)
    for _ in range(1 + int(s * 4)):
        p = (int(rng.integers(x0, x1)), int(rng.integers(y0, y1)))
        angle = rng.uniform(0, np.pi)
        d = np.array([np.cos(angle), np.sin(angle)]) * 2 * max(x1 - x0, y1 - y0)
        cv2.line(cuts, (int(p[0] - d[0]), int(p[1] - d[1])), (int(p[0] + d[0]), int(p[1] + d[1])),
                 1, 1 + int(s * 2))  # fmt: skip
    out = m & (cuts == 0)
    count, pieces = cv2.connectedComponents(_u8(out), connectivity=8)
    for piece in range(1, count):
        if rng.random() < 0.5 * s:
            out[pieces == piece] = False
    return out


def _shifted(m, box, s, rng, ctx):
    x0, y0, x1, y1 = box
    angle = rng.uniform(0, 2 * np.pi)
    frac = 0.15 + 0.45 * s
    dx, dy = np.cos(angle) * frac * (x1 - x0), np.sin(angle) * frac * (y1 - y0)
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(_u8(m), shift, m.shape[::-1], flags=cv2.INTER_NEAREST) > 0


def _empty(m, box, s, rng, ctx):
    if rng.random() < 0.6 or not m.any():
        return np.zeros_like(m)
    keep = cv2.erode(_u8(m), _disk(1 + int(s * 3))) > 0
    count, pieces = cv2.connectedComponents(_u8(keep), connectivity=8)
    if count <= 1:
        return np.zeros_like(m)
    return pieces == 1 + int(rng.integers(count - 1))


def _wrong(m, box, s, rng, ctx):
    x0, y0, x1, y1 = box
    inside = np.zeros_like(m)
    inside[y0:y1, x0:x1] = True
    roll = rng.random()
    if roll < 0.35:  # the blade (or the sky) inside the box, without the defect
        part = ctx["blade"] if rng.random() < 0.7 else ~ctx["blade"]
        out = inside & part & ~m
        if out.sum() > 0.05 * inside.sum():
            return out
    if roll < 0.6:  # the box's background around the defect
        return inside & ~(cv2.dilate(_u8(m), _disk(1)) > 0)
    # a blob of about the defect's size beside it
    area = max(9, int(m.sum()))
    out = np.zeros_like(m)
    ra = max(2, int(np.sqrt(area / np.pi) * rng.uniform(0.7, 1.3)))
    rb = max(2, int(area / np.pi / ra))
    free = inside & ~(cv2.dilate(_u8(m), _disk(2)) > 0)
    ys, xs = np.nonzero(free)
    if not len(ys):
        return out
    i = int(rng.integers(len(ys)))
    cv2.ellipse(out.view(np.uint8), (int(xs[i]), int(ys[i])), (ra, rb), float(rng.uniform(0, 180)),
                0, 360, 1, -1)  # fmt: skip
    return out & inside & ~m


ERRORS: dict[str, Callable] = {
    "thin": _thin, "spill": _spill, "holes": _holes, "fragments": _fragments,
    "shifted": _shifted, "empty": _empty, "wrong": _wrong,
}  # fmt: skip


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def corrupt(
    scenes: list[tuple[Scene, np.ndarray]],
    error_model: str,
    seed: int,
    clean: float = 0.35,
    box_rate: float = 0.75,
) -> list[Sample]:
    """Pseudo-masks of ``scenes`` made by ``error_model`` (one of :data:`ERROR_MODELS`, or
    :data:`IMITATION`: the imitation teacher's failures on every image, without scores)."""
    rng = np.random.default_rng((seed, (*ERROR_MODELS, IMITATION).index(error_model)))
    samples = []
    for i, (scene, image) in enumerate(scenes):
        height, width = scene.mask.shape
        boxed = [d for d in scene.defects if d.boxed]
        corrupted_image = rng.random() >= clean
        per_box = np.zeros((len(boxed), height, width), bool)
        scores, box_ious, modes = [], [], []
        for j, d in enumerate(boxed):
            assert d.box is not None
            box = box_pixel_ranges(d.box, height, width)
            x0, y0, x1, y1 = box
            true = np.zeros((height, width), bool)
            true[y0:y1, x0:x1] = d.mask[y0:y1, x0:x1]
            mode = "clean"
            if error_model == IMITATION:
                mode = ("clean", "imitation-thin", "imitation-filled", "empty")[
                    int(rng.choice(4, p=list(FAILURE_SHARES)))
                ]
                m = true.copy()
                if mode == "imitation-thin":
                    m = cv2.morphologyEx(_u8(true), cv2.MORPH_OPEN, np.ones((3, 3))) > 0
                elif mode == "imitation-filled":
                    m[y0:y1, x0:x1] = True
                elif mode == "empty":
                    m[:] = False
            elif corrupted_image and rng.random() < box_rate:
                mode = error_model
                if mode == "mixture":
                    mode = str(rng.choice(list(ERRORS)))
            if error_model == IMITATION:
                pass
            elif mode == "clean":
                m = _jitter(true, rng)
            else:
                ctx = {"strength": d.strength, "blade": scene.blade}
                m = ERRORS[mode](true, box, rng.uniform(0.2, 1.0), rng, ctx)
            per_box[j] = m
            box_iou = _iou(m[y0:y1, x0:x1], true[y0:y1, x0:x1])
            if error_model != IMITATION:  # the imitation teacher records no score
                sight = TEACHER_SIGHT[mode]
                score = 0.93 - sight * 0.7 * (1 - box_iou) + rng.normal(0, 0.08)
                scores.append(float(np.clip(score, 0.0, 1.0)))
            box_ious.append(box_iou)
            modes.append(mode)
        classes = np.array([d.cls for d in boxed], np.int64)
        pseudo = combine_masks(per_box, classes)
        boxed_truth = np.zeros((height, width), bool)
        for d in boxed:
            boxed_truth |= d.mask
        iou = _iou(pseudo > 0, boxed_truth) if boxed else None
        iou_all = _iou(pseudo > 0, scene.mask > 0) if boxed else None
        samples.append(
            Sample(
                f"train/{i:05d}.png", scene, image, pseudo, scores if scores else None,
                box_ious, modes, iou, iou_all,
            )
        )  # fmt: skip
    return samples


def simulated_view(scene: Scene, seed: int, recall: float = 0.8, false_rate: float = 0.15):
    """A model with a known error rate, made from the ground truth (no training needed):
    each defect, boxed or not, found with probability ``recall`` (its boundary jittered by a
    pixel, confidence 0.97 inside, 0.6 on its rim), and on a share ``false_rate`` of the
    images a false defect blob (confidence U(0.6, 0.99)). Returns a
    :class:`~boxes2pixels.review.ModelView`."""
    from boxes2pixels.review import ModelView

    rng = np.random.default_rng(seed)
    height, width = scene.mask.shape
    labels = np.zeros((height, width), np.uint8)
    confidence = np.full((height, width), 0.97, np.float32)
    for d in scene.defects:
        if rng.random() < recall:
            found = _jitter(d.mask, rng)
            labels[found] = d.cls + 1
            rim = found ^ (cv2.erode(_u8(found), np.ones((3, 3), np.uint8)) > 0)
            confidence[rim] = 0.6
    if rng.random() < false_rate:
        ys, xs = np.nonzero(scene.blade)
        if len(ys):
            i = int(rng.integers(len(ys)))
            blob = np.zeros((height, width), np.uint8)
            axes = (int(rng.integers(3, 9)), int(rng.integers(3, 9)))
            cv2.ellipse(blob, (int(xs[i]), int(ys[i])), axes, 0, 0, 360, 1, -1)
            labels[blob > 0] = int(rng.integers(1, 3))
            confidence[blob > 0] = rng.uniform(0.6, 0.99)
    return ModelView(labels, confidence)
