"""Side-by-side previews of labelled images: the boxes | the pseudo-mask overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import viz
from ..data.yolo import ImageLabels
from ..io import write_rgb
from .records import WorkItem


def write_preview(
    out: Path,
    item: WorkItem,
    image: np.ndarray,
    labels: ImageLabels,
    mask: np.ndarray,
    names: list[str],
) -> Path:
    """Write ``<out>/preview/<split>__<mask name>`` (boxes | mask, with a legend); its path."""
    boxes = labels.xyxy(image.shape[1], image.shape[0])
    left = viz.draw_boxes(image, boxes, labels.classes, names)
    right = viz.overlay_mask(image, mask)
    picture = viz.add_legend(
        viz.panel([left, right], ["boxes", "pseudo-mask"]), ["background", *names]
    )
    path = out / "preview" / f"{item.split}__{item.mask_name.replace('/', '__')}"
    write_rgb(path, picture)
    return path
