"""Label maps to and from the formats other tools read: COCO instances and YOLO-seg polygons.

A label map (H×W ``uint8``: 0 background, ``k+1`` YOLO class ``k``, 255 ignore) becomes one
instance per connected component (8-connectivity) per class:

- COCO (Detectron2, MMDetection, CVAT, Label Studio): category ``id = k + 1`` (the mask value)
  with the name from ``names``; segmentation as compressed RLE (pycocotools; exact) or as
  polygons (outer outline of each component; holes are filled and 1–2 px wide structures lose
  most of their area when a COCO tool rasterises them, so RLE is the default);
- YOLO-seg (Ultralytics): one line ``k x1 y1 x2 y2 …`` per component, the outline normalised
  by the image size (as Ultralytics' own ``convert_segment_masks_to_yolo_seg`` writes it).

Ignore pixels (255) are never exported. Folder-level conversion is in
:mod:`boxes2pixels.convert_folder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .data.labelmaps import IGNORE, Region, label_regions
from .errors import ConfigError, DatasetError, WriteError
from .io import image_size

ENCODINGS = ("rle", "polygon")


def _check_label_map(label_map: np.ndarray, num_names: int, where: str) -> None:
    if label_map.ndim != 2:
        raise ConfigError(f"{where}: a label map must be 2-D, got shape {label_map.shape}")
    values = np.unique(label_map)
    bad = [int(v) for v in values if v != IGNORE and v > num_names]
    if bad:
        raise DatasetError(
            f"{where}: label values {bad} have no class in names (1..{num_names} and 255 ignore)"
        )


def instance_outlines(instance: Region) -> list[np.ndarray]:
    """Outer outlines of a component as (K, 2) ``int`` pixel coordinates (x, y).

    One outline for an 8-connected component; OpenCV's ``findContours`` with
    ``CHAIN_APPROX_SIMPLE`` (only the corners of straight runs are kept). Outlines with fewer
    than 3 points (a single pixel, a short straight line) are padded by repeating points so
    every outline is a valid polygon for COCO and Ultralytics.
    """
    x, y, w, h = instance.bbox
    crop = np.ascontiguousarray(instance.mask[y : y + h, x : x + w].astype(np.uint8))
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outlines = []
    for contour in contours:
        points = contour.reshape(-1, 2) + np.array([x, y])
        while len(points) < 3:
            points = np.concatenate([points, points[-1:]])
        outlines.append(points)
    return outlines


# ---------------------------------------------------------------------------------- COCO
def coco_categories(names: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories for YOLO ``names``: id ``k + 1`` (the label value), name ``names[k]``."""
    return [{"id": k + 1, "name": str(n), "supercategory": "defect"} for k, n in enumerate(names)]


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def instance_annotation(
    instance: Region, image_id: int, annotation_id: int, encoding: str = "rle"
) -> dict[str, Any]:
    """A COCO annotation dict of one instance (``iscrowd`` 0, area = pixel count)."""
    if encoding == "rle":
        segmentation: Any = _rle(instance.mask)
    elif encoding == "polygon":
        segmentation = [
            [float(v) for v in outline.reshape(-1)] for outline in instance_outlines(instance)
        ]
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
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO ``images`` entry of one label map and its annotations (ids counting up from
    ``first_annotation_id``), for writers that stream many images."""
    _check_label_map(label_map, len(names), str(file_name))
    height, width = label_map.shape
    entry = {"id": int(image_id), "file_name": str(file_name), "width": width, "height": height}
    annotations = [
        instance_annotation(instance, int(image_id), first_annotation_id + i, encoding)
        for i, instance in enumerate(label_regions(label_map))
    ]
    return entry, annotations


def coco_dataset(
    images: list[dict[str, Any]], annotations: list[dict[str, Any]], names: Sequence[str]
) -> dict[str, Any]:
    """The top-level COCO dict: ``info``, ``licenses``, ``images``, ``annotations``,
    ``categories`` (from ``names``)."""
    return {
        "info": {"description": "boxes2pixels label maps", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(names),
    }


def masks_to_coco(
    images: Sequence[str],
    masks: Iterable[np.ndarray],
    names: Sequence[str],
    *,
    encoding: str = "rle",
    image_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A COCO instance-segmentation dict for label maps.

    Args:
        images: the ``file_name`` of each image as the consuming tool should see it (usually
            relative to its image folder, e.g. ``sub/a.jpg``).
        masks: one label map per image (H×W ``uint8``, 0 background, k+1 class k, 255 ignore),
            a list or a generator (only one map is held at a time); its size is the image's
            ``width``/``height``.
        names: YOLO class names; category ``k + 1`` is ``names[k]``.
        encoding: ``rle`` (compressed RLE, exact) or ``polygon`` (outer outlines).
        image_ids: COCO image ids (default 1..N in order).

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
            image_id, file_name, label_map, names, len(annotations) + 1, encoding
        )
        out_images.append(entry)
        annotations.extend(anns)
    if len(out_images) != len(images):
        raise ConfigError(f"{len(images)} image names but {len(out_images)} masks")
    return coco_dataset(out_images, annotations, names)


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
    """COCO category id → label value: by name when ``names`` is given, else the id itself."""
    values: dict[int, int] = {}
    for category in categories:
        cid = int(category["id"])
        if names is None:
            value = cid
        elif str(category.get("name")) in names:
            value = list(names).index(str(category["name"])) + 1
        else:
            raise DatasetError(
                f"{where}: category '{category.get('name')}' is not in names ({', '.join(names)})"
            )
        if not 1 <= value < IGNORE:
            raise DatasetError(f"{where}: category id {cid} does not fit a label value 1..254")
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
    give an all-background map.

    Args:
        coco_json: a path to the JSON file or the loaded dict.
        image_dir: where the images are, used only for an image entry without
            ``width``/``height`` (its size is read from ``image_dir / file_name``).
        names: YOLO class names; categories are then matched by name (value ``k + 1``).
            Without it the category id is the label value (as :func:`masks_to_coco` writes).

    Returns:
        ``{file_name: H×W uint8 label map}``.

    Raises:
        DatasetError: unreadable JSON, a missing field, or a category that fits no class.
    """
    import json

    where = str(coco_json) if isinstance(coco_json, (str, Path)) else "<COCO dict>"
    if isinstance(coco_json, (str, Path)):
        try:
            data = json.loads(Path(coco_json).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{where}: cannot read COCO JSON ({exc})") from exc
    else:
        data = coco_json
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


# ------------------------------------------------------------------------------ YOLO-seg
def mask_to_yolo_seg(label_map: np.ndarray, num_names: int | None = None) -> list[str]:
    """YOLO-seg label lines ``k x1 y1 …`` (normalised, 6 decimals) of a label map.

    One line per outer outline of each connected component; value ``k + 1`` gives class ``k``.
    ``num_names`` (when given) checks that every value has a class. An outline without
    width or height (a lone pixel, a perfectly straight 1-px line) encloses nothing as a
    polygon and is left out, as Ultralytics' own converter leaves it out; COCO RLE keeps it.
    """
    if num_names is not None:
        _check_label_map(label_map, num_names, "label map")
    height, width = label_map.shape
    lines = []
    for instance in label_regions(label_map):
        for outline in instance_outlines(instance):
            if np.ptp(outline[:, 0]) == 0 or np.ptp(outline[:, 1]) == 0:
                continue
            coords = (outline / np.array([width, height])).reshape(-1)
            lines.append(f"{instance.value - 1} " + " ".join(f"{c:.6f}" for c in coords))
    return lines


def yolo_seg_to_mask(lines: Sequence[str], width: int, height: int) -> np.ndarray:
    """Rasterise YOLO-seg lines back into a label map (``cv2.fillPoly``, as Ultralytics does).

    Lines are painted in order; value ``k + 1`` for class ``k``.
    """
    label_map = np.zeros((height, width), dtype=np.uint8)
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        points = np.asarray([float(v) for v in fields[1:]], dtype=np.float64).reshape(-1, 2)
        pixels = np.round(points * np.array([width, height])).astype(np.int32)
        cv2.fillPoly(label_map, [pixels], color=int(float(fields[0])) + 1)
    return label_map


def yolo_seg_data_yaml(names: Sequence[str], splits: Sequence[str]) -> dict[str, Any]:
    """An Ultralytics ``data.yaml`` dict for a dataset written in this folder's layout.

    ``path: .`` is resolved against the yaml file's folder by :func:`load_data_yaml`; pass
    the absolute folder when Ultralytics reads it (it resolves a relative ``path`` against its
    own datasets folder), as :func:`write_yolo_seg` does.
    """
    out: dict[str, Any] = {"path": "."}
    for split in splits:
        out[split] = f"images/{split}"
    out["names"] = {k: str(n) for k, n in enumerate(names)}
    return out


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (metadata too) through :func:`~boxes2pixels.io.atomic_path`,
    checking that every byte arrived.

    Raises:
        WriteError: the disk cannot take the file or the copy came out short (``target`` is
            unchanged).
    """
    import shutil

    from .io import atomic_path

    with atomic_path(target) as tmp:
        shutil.copy2(source, tmp)
        expected, written = source.stat().st_size, tmp.stat().st_size
        if written != expected:
            raise WriteError(
                f"{target}: cannot copy {source}: {written} of {expected} bytes reached the "
                "disk. Nothing half-written is left behind; make room and run the command again."
            )


def _place_image(image: Path, target: Path, copy: bool) -> None:
    """Put ``image`` at ``target``: a symbolic link to it, or (``copy``, or where the file
    system refuses links) a copy (:func:`copy_file_atomic`)."""
    if not copy:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            target.symlink_to(image.resolve())
            return
        except OSError:
            pass
    copy_file_atomic(image, target)


def write_yolo_seg(
    out_dir: str | Path,
    items: Iterable[tuple[str, str, Path, np.ndarray]],
    names: Sequence[str],
    *,
    copy_images: bool = False,
) -> Path:
    """Write an Ultralytics segmentation dataset: ``images/``, ``labels/``, ``data.yaml``.

    Args:
        out_dir: the dataset folder to write.
        items: ``(split, relative_name, image_path, label_map)`` for each image (a list or
            a generator: one label map is held at a time);
            ``relative_name`` (e.g. ``sub/a.jpg``) places the image at
            ``images/<split>/<relative_name>`` and its labels at ``labels/<split>/sub/a.txt``.
        names: YOLO class names.
        copy_images: copy the images; by default they are symbolic links to the originals
            (copied where the file system refuses links).

    Returns:
        The written ``data.yaml`` (``path`` is the absolute dataset folder, so Ultralytics
        finds it from any working directory).
    """
    import yaml

    from .io import write_text_atomic

    out = Path(out_dir).resolve()
    splits: list[str] = []
    for split, name, image_path, label_map in items:
        if split not in splits:
            splits.append(split)
        _place_image(Path(image_path), out / "images" / split / name, copy_images)
        lines = mask_to_yolo_seg(label_map, len(names))
        label_file = (out / "labels" / split / name).with_suffix(".txt")
        write_text_atomic(label_file, "".join(line + "\n" for line in lines))
    config = yolo_seg_data_yaml(names, splits)
    config["path"] = str(out)
    yaml_path = out / "data.yaml"
    write_text_atomic(yaml_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return yaml_path
