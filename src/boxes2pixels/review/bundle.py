"""The correction bundle: the top of the queue in a form annotation tools import.

Layout of ``<out>/``::

    images/<split>/<name>.<ext>     copies of the images
    masks/<split>/<name>.png        their current pseudo-masks (label-map PNGs)
    annotations.json                COCO instances of those masks (CVAT, Label Studio)

``annotations.json`` names each image ``<split>/<name>.<ext>`` relative to ``images/``; it is
written by :func:`boxes2pixels.convert.masks_to_coco`. After correction, either file set
goes back with ``b2p label ... --corrections``: the COCO file exported by the tool, or the
bundle folder (its ``masks/``) after editing the PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ..convert import copy_file_atomic, masks_to_coco
from ..io import read_mask, write_json_atomic, write_mask
from .queue import ImageReview

COCO_NAME = "annotations.json"


def bundle_name(review: ImageReview) -> str:
    """The image's name inside the bundle's ``images/``: ``<split>/<mask name>`` with the
    image's own suffix."""
    return str(PurePosixPath(review.key).with_suffix(Path(review.image).suffix))


def write_bundle(
    reviews: Sequence[ImageReview], names: Sequence[str], out: str | Path, encoding: str = "polygon"
) -> Path:
    """Copy the images and masks of ``reviews`` into ``out`` and write ``annotations.json``.

    Args:
        reviews: the images to correct (e.g. ``queue.top(k)``).
        names: YOLO class names (COCO category ``k + 1`` is ``names[k]``).
        out: the bundle folder.
        encoding: ``polygon`` (editable as polygons in CVAT and Label Studio) or ``rle``
            (exact for 1–2 px structures; imported as masks).

    Returns:
        The path of ``annotations.json``.
    """
    out = Path(out)
    files = []
    for review in reviews:
        name = bundle_name(review)
        copy_file_atomic(Path(review.image), out / "images" / name)
        write_mask(out / "masks" / review.key, read_mask(review.mask))
        files.append(name)
    coco = masks_to_coco(
        files, (read_mask(r.mask) for r in reviews), list(names), encoding=encoding
    )
    path = out / COCO_NAME
    write_json_atomic(path, coco)
    return path
