"""The demo report's qualitative panels, in the style of the paper's figure: image with its
boxes | pseudo-mask | student prediction | ground truth | error map, with legends; and the
choice of the images shown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from .. import viz
from ..reporting import enlarge, labelled_row

PANEL_MIN_HEIGHT = 280
"""Panels are enlarged by an integer factor until each tile is at least this many pixels high."""
PANEL_TITLES = ("image + boxes", "pseudo-mask (teacher)", "student", "ground truth", "errors")
_UNBOXED_COLOUR = (255, 255, 255)


def panel_scale(height: int) -> int:
    """Integer enlargement of the panel tiles for an image ``height`` pixels high."""
    return max(1, math.ceil(PANEL_MIN_HEIGHT / max(height, 1)))


def _outline_unboxed(truth: np.ndarray, unboxed: Sequence[Sequence[int]], s: int) -> None:
    """Outline, in place, the defects that have no annotation box ("no box")."""
    for x0, y0, x1, y1 in unboxed:
        cv2.rectangle(truth, (x0 * s - 2, y0 * s - 2), (x1 * s + 1, y1 * s + 1), _UNBOXED_COLOUR, 1)
        cv2.putText(
            truth,
            "no box",
            (x0 * s - 2, max(10, y0 * s - 5)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            _UNBOXED_COLOUR,
            1,
            cv2.LINE_AA,
        )


def render_panel(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    pseudo: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray,
    class_names: Sequence[str],
    unboxed: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """One row of the paper-style figure, with class and error legends below it.

    Tiles: the image with its annotation boxes | the teacher's pseudo-mask | the student's
    prediction | the ground truth (defects without a box outlined in white, "no box") | the
    error map of the prediction against the ground truth (true positive, false positive,
    false negative, wrong class). Tiles are enlarged by :func:`panel_scale` with nearest
    neighbours, so every mask pixel stays aligned with its image pixel.

    Args:
        image: RGB ``uint8`` H×W×3.
        boxes: N×4 pixel boxes ``x0, y0, x1, y1`` from the label file.
        classes: N YOLO class ids.
        pseudo: H×W pseudo-mask; pred: H×W prediction; gt: H×W ground truth.
        class_names: names of the label values, background first.
        unboxed: tight boxes ``x0, y0, x1, y1`` (end exclusive) of ground-truth defects that
            have no annotation box.
    """
    for name, mask in (("pseudo-mask", pseudo), ("prediction", pred), ("ground truth", gt)):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{name} is {mask.shape} but the image is {image.shape[:2]}")
    s = panel_scale(image.shape[0])
    big = enlarge(image, s)
    boxed = viz.draw_boxes(
        big, np.asarray(boxes, np.float64).reshape(-1, 4) * s, classes, list(class_names[1:])
    )
    truth = viz.overlay_mask(big, enlarge(gt, s))
    _outline_unboxed(truth, unboxed, s)
    tiles = [
        boxed,
        viz.overlay_mask(big, enlarge(pseudo, s)),
        viz.overlay_mask(big, enlarge(pred, s)),
        truth,
        enlarge(viz.error_map(pred, gt), s),
    ]
    return labelled_row(tiles, PANEL_TITLES, class_names, error_legend=True)


def choose_panel_images(
    manifest: dict[str, Any], count: int, splits: Sequence[str] = ("test", "val", "train")
) -> list[tuple[str, str, str]]:
    """Pick ``count`` images for the qualitative panels from a ``synth.json`` manifest.

    The first is an image with a defect left unboxed (from the first split in ``splits``
    that has one), then test images with boxed defects (alternating the class of their
    largest defect), then a defect-free test image.

    Returns:
        ``(split, image name, why)`` triples.
    """
    images: dict[str, dict[str, Any]] = manifest.get("images", {})
    chosen: list[tuple[str, str, str]] = []
    taken: set[tuple[str, str]] = set()

    def take(split: str, name: str, why: str) -> None:
        chosen.append((split, name, why))
        taken.add((split, name))

    for split in splits:
        found = [
            name
            for name, rec in sorted(images.get(split, {}).items())
            if any(d.get("box") is None for d in rec.get("defects", []))
        ]
        if found:
            take(split, found[0], "a defect without a box")
            break
    test = sorted(images.get(splits[0], {}).items())
    boxed = [
        (name, rec)
        for name, rec in test
        if rec.get("defects") and all(d.get("box") is not None for d in rec["defects"])
    ]
    by_class: dict[str, list[str]] = {}
    for name, rec in boxed:
        main = max(rec["defects"], key=lambda d: d.get("pixels", 0))
        by_class.setdefault(main.get("class", "?"), []).append(name)
    queues = [list(v) for _, v in sorted(by_class.items())]
    clean = [name for name, rec in test if not rec.get("defects")]
    want_clean = count >= 4 and bool(clean)
    while len(chosen) < count - int(want_clean) and any(queues):
        for queue in queues:
            if queue and len(chosen) < count - int(want_clean):
                name = queue.pop(0)
                take(splits[0], name, "boxed defects")
    if want_clean:
        take(splits[0], clean[0], "no defect")
    for name, _ in test:  # fill up when the split has too few of each kind
        if len(chosen) >= count:
            break
        if (splits[0], name) not in taken:
            take(splits[0], name, "test image")
    return chosen[:count]
