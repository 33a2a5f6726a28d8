"""SAM-like pseudo-masks made from a generated dataset's exact ground truth.

They stand in for a teacher's typical failures so the review queue can be measured against
the truth (``tests/test_review.py``, ``benchmarks/review_ranking.py``): per box the true
mask, the mask with its thin parts dropped, the whole box filled, or nothing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..data.labelmaps import read_mask, write_mask
from ..data.yolo import load_data_yaml
from ..teachers.base import box_pixel_ranges
from .image import combine_masks

#: Share of boxes given each failure: exact, thin parts dropped, box filled, missed.
FAILURE_SHARES = (0.55, 0.2, 0.15, 0.1)


def imitate_teacher(
    root: str | Path,
    masks: str | Path,
    split: str = "train",
    seed: int = 0,
    shares: tuple[float, float, float, float] = FAILURE_SHARES,
) -> dict[str, float]:
    """Write imitation pseudo-masks of ``split`` of the generated dataset at ``root`` (which
    has ``gt_masks/``) under ``masks/<split>/``; return each boxed image's binary defect IoU
    with the ground truth, keyed ``"<split>/<mask name>"`` as the review queue keys images."""
    root = Path(root)
    ds = load_data_yaml(root / "data.yaml")
    rng = np.random.default_rng(seed)
    ious = {}
    for image in ds.images(split):
        name = ds.mask_name(image, split)
        gt = read_mask(root / "gt_masks" / split / name)
        labels = ds.labels(image)
        height, width = gt.shape
        boxes = labels.xyxy(width, height)
        per_box = np.zeros((len(boxes), height, width), bool)
        for i, (box, cls) in enumerate(zip(boxes, labels.classes, strict=True)):
            x0, y0, x1, y1 = box_pixel_ranges(box, height, width)
            m = per_box[i]
            m[y0:y1, x0:x1] = gt[y0:y1, x0:x1] == cls + 1
            mode = rng.choice(4, p=list(shares))
            if mode == 1:
                opened = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3)))
                per_box[i] = opened.astype(bool)
            elif mode == 2:
                m[y0:y1, x0:x1] = True
            elif mode == 3:
                m[:] = False
        pseudo = combine_masks(per_box, labels.classes)
        write_mask(Path(masks) / split / name, pseudo)
        if len(boxes):
            a, g = pseudo > 0, gt > 0
            ious[f"{split}/{name}"] = float((a & g).sum() / max(1, (a | g).sum()))
    return ious
