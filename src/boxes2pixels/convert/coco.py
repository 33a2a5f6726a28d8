"""Label maps to and from COCO instances (Detectron2, MMDetection, CVAT, Label Studio).

Category ``id = k + 1`` (the mask value) with the name from ``names``; segmentation as
compressed RLE (pycocotools) or as polygons that trace the pixel edges
(:func:`~boxes2pixels.convert.polygons.pixel_polygons`): both decode to exactly the
component's pixels with pycocotools, and a polygon's area is its pixel count. With
``ignore=True`` the ignore pixels are category 255 ``ignore``, which :func:`coco_to_masks`
turns back into 255.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.labelmaps import IGNORE, Region, label_regions
from ..errors import ConfigError, DatasetError
from ..io import image_size
from .common import IGNORE_NAME, _check_label_map, load_export
from .polygons import pixel_polygons

ENCODINGS = ("rle", "polygon")


MAX_POLYGONS = 32
"""Polygons one COCO instance may have; a component that needs more (a diagonal hairline:
one polygon per pixel) is written as RLE."""


def instance_polygons(
    instance: Region, max_polygons: int | None = MAX_POLYGONS
) -> list[list[float]] | None:
    """COCO polygons (``[[x1, y1, x2, y2, …], …]``, image coordinates) of a component, as
    :func:`pixel_polygons` draws them, checked with pycocotools: ``None`` when it needs more
    than ``max_polygons`` or they would not decode to exactly its pixels (the caller then
    writes RLE)."""
    from pycocotools import mask as mask_utils

    x, y, w, h = instance.bbox
    crop = instance.components[y : y + h, x : x + w] == instance.index
    polygons = pixel_polygons(crop, max_polygons)
    if polygons is None:
        return None
    local = [p.reshape(-1).astype(np.float64).tolist() for p in polygons]
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(local, h, w)))
    if not np.array_equal(decoded.astype(bool), crop):
        return None
    return [(p + np.array([x, y])).reshape(-1).astype(np.float64).tolist() for p in polygons]


def coco_categories(names: Sequence[str], ignore: bool = False) -> list[dict[str, Any]]:
    """COCO categories for YOLO ``names``: id ``k + 1`` (the label value), name ``names[k]``;
    with ``ignore`` also ``{"id": 255, "name": "ignore"}``."""
    categories = [
        {"id": k + 1, "name": str(n), "supercategory": "defect"} for k, n in enumerate(names)
    ]
    if ignore:
        categories.append({"id": IGNORE, "name": IGNORE_NAME, "supercategory": IGNORE_NAME})
    return categories


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def instance_annotation(
    instance: Region, image_id: int, annotation_id: int, encoding: str = "rle"
) -> dict[str, Any]:
    """A COCO annotation dict of one instance (``iscrowd`` 0, area = pixel count).

    ``polygon``: the pixel-edge polygons of :func:`instance_polygons` (their area is the
    pixel count); a component that needs more than :data:`MAX_POLYGONS` of them (thin
    diagonal cracks) gets RLE instead.
    """
    if encoding == "rle":
        segmentation: Any = _rle(instance.mask)
    elif encoding == "polygon":
        segmentation = instance_polygons(instance)
        if segmentation is None:
            segmentation = _rle(instance.mask)
    else:
        raise ConfigError(f"unknown COCO encoding '{encoding}' (use {', '.join(ENCODINGS)})")
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": instance.value,
        "segmentation": segmentation,
        "area": instance.area,
        "bbox": [float(v) for v in instance.bbox],
        "iscrowd": 0,
    }


def coco_image(
    image_id: int,
    file_name: str,
    label_map: np.ndarray,
    names: Sequence[str],
    first_annotation_id: int = 1,
    encoding: str = "rle",
    ignore: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO ``images`` entry of one label map and its annotations (ids counting up from
    ``first_annotation_id``), for writers that stream many images; with ``ignore`` the ignore
    pixels are annotations of category 255 too."""
    _check_label_map(label_map, len(names), str(file_name))
    height, width = label_map.shape
    entry = {"id": int(image_id), "file_name": str(file_name), "width": width, "height": height}
    annotations = [
        instance_annotation(instance, int(image_id), first_annotation_id + i, encoding)
        for i, instance in enumerate(_instances(label_map, ignore))
    ]
    return entry, annotations


def _instances(label_map: np.ndarray, ignore: bool) -> Iterator[Region]:
    """The regions of every class, then (with ``ignore``) those of the ignore pixels (value
    255)."""
    yield from label_regions(label_map)
    if ignore and (label_map == IGNORE).any():
        for region in label_regions((label_map == IGNORE).astype(np.uint8)):
            yield replace(region, value=IGNORE)


def coco_dataset(
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    names: Sequence[str],
    ignore: bool = False,
) -> dict[str, Any]:
    """The top-level COCO dict: ``info``, ``licenses``, ``images``, ``annotations``,
    ``categories`` (from ``names``, with ``ignore`` also category 255 ``ignore``)."""
    return {
        "info": {"description": "boxes2pixels label maps", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(names, ignore),
    }


def masks_to_coco(
    images: Sequence[str],
    masks: Iterable[np.ndarray],
    names: Sequence[str],
    *,
    encoding: str = "rle",
    image_ids: Sequence[int] | None = None,
    ignore: bool = False,
) -> dict[str, Any]:
    """A COCO instance-segmentation dict for label maps.

    Args:
        images: the ``file_name`` of each image as the consuming tool should see it (usually
            relative to its image folder, e.g. ``sub/a.jpg``).
        masks: one label map per image (H×W ``uint8``, 0 background, k+1 class k, 255 ignore),
            a list or a generator (only one map is held at a time); its size is the image's
            ``width``/``height``.
        names: YOLO class names; category ``k + 1`` is ``names[k]``.
        encoding: ``rle`` (compressed RLE) or ``polygon`` (pixel-edge polygons); both
            decode to exactly the component's pixels with pycocotools.
        image_ids: COCO image ids (default 1..N in order).
        ignore: also export the ignore pixels (255), as category 255 ``ignore``
            (:func:`coco_to_masks` reads them back as 255); by default they are left out.

    Returns:
        ``{"info", "licenses", "images", "annotations", "categories"}``, JSON-serialisable,
        one annotation per connected component per class.

    Raises:
        ConfigError: counts differ, an unknown encoding, or a mask that is not 2-D.
        DatasetError: a mask holds a value with no class in ``names``.
    """
    ids = list(image_ids) if image_ids is not None else list(range(1, len(images) + 1))
    if len(ids) != len(images):
        raise ConfigError(f"{len(ids)} image ids for {len(images)} images")
    out_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, file_name, label_map in zip(ids, images, masks, strict=False):
        entry, anns = coco_image(
            image_id, file_name, label_map, names, len(annotations) + 1, encoding, ignore
        )
        out_images.append(entry)
        annotations.extend(anns)
    if len(out_images) != len(images):
        raise ConfigError(f"{len(images)} image names but {len(out_images)} masks")
    return coco_dataset(out_images, annotations, names, ignore)


def _decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles) if rles else None
        if rle is None:
            return np.zeros((height, width), dtype=bool)
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


def _category_values(
    categories: Sequence[Mapping[str, Any]], names: Sequence[str] | None, where: str
) -> dict[int, int]:
    """COCO category id → label value: by name when ``names`` is given, else the id itself;
    the category ``ignore`` (not a class name) is 255."""
    values: dict[int, int] = {}
    for category in categories:
        cid = int(category["id"])
        if names is None:
            value = cid
        elif str(category.get("name")) in names:
            value = list(names).index(str(category["name"])) + 1
        elif str(category.get("name")) == IGNORE_NAME:
            value = IGNORE
        else:
            raise DatasetError(
                f"{where}: category '{category.get('name')}' is not in names ({', '.join(names)})"
            )
        if not 1 <= value <= IGNORE:
            raise DatasetError(f"{where}: category id {cid} does not fit a label value 1..255")
        values[cid] = value
    return values


def coco_to_masks(
    coco_json: str | Path | Mapping[str, Any],
    image_dir: str | Path | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Label maps from a COCO instance file (ours, or corrections from CVAT / Label Studio).

    Polygons, uncompressed and compressed RLE are decoded with pycocotools. Annotations are
    painted in file order (a later one wins where two overlap); images without annotations
    give an all-background map. The category ``ignore`` (what ``masks_to_coco(...,
    ignore=True)`` writes) paints 255.

    Args:
        coco_json: a path to the JSON file or the loaded dict.
        image_dir: where the images are, used only for an image entry without
            ``width``/``height`` (its size is read from ``image_dir / file_name``).
        names: YOLO class names; categories are then matched by name (value ``k + 1``).
            Without it the category id is the label value (as :func:`masks_to_coco` writes;
            255 ignore).

    Returns:
        ``{file_name: H×W uint8 label map}``.

    Raises:
        DatasetError: unreadable JSON, a missing field, or a category that fits no class.
    """
    data, where = load_export(coco_json, "COCO")
    try:
        values = _category_values(data.get("categories", []), names, where)
        maps: dict[str, np.ndarray] = {}
        by_id: dict[int, str] = {}
        for image in data["images"]:
            width, height = image.get("width"), image.get("height")
            if not width or not height:
                if image_dir is None:
                    raise DatasetError(
                        f"{where}: image {image['file_name']} has no width/height; "
                        "pass image_dir to read its size"
                    )
                width, height = image_size(Path(image_dir) / image["file_name"])
            maps[str(image["file_name"])] = np.zeros((int(height), int(width)), dtype=np.uint8)
            by_id[int(image["id"])] = str(image["file_name"])
        for ann in data.get("annotations", []):
            label_map = maps[by_id[int(ann["image_id"])]]
            value = values.get(int(ann["category_id"]))
            if value is None:
                raise DatasetError(
                    f"{where}: annotation {ann.get('id')} has unknown category {ann['category_id']}"
                )
            label_map[_decode_segmentation(ann["segmentation"], *label_map.shape)] = value
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{where}: not a COCO instance file (missing {exc})") from exc
    return maps
