"""Label maps to and from the formats other tools read: COCO instances and YOLO-seg polygons.

A label map (H×W ``uint8``: 0 background, ``k+1`` YOLO class ``k``, 255 ignore) becomes one
instance per connected component (8-connectivity) per class:

- COCO (Detectron2, MMDetection, CVAT, Label Studio): category ``id = k + 1`` (the mask value)
  with the name from ``names``; segmentation as compressed RLE (pycocotools) or as polygons
  that trace the pixel edges (:func:`pixel_polygons`): both decode to exactly the
  component's pixels with pycocotools, and a polygon's area is its pixel count;
- Label Studio tasks (:func:`label_studio_task`): the image reference and one brush region
  per class in Label Studio's own RLE (exact);
- YOLO-seg (Ultralytics): one line ``k x1 y1 x2 y2 …`` per component, the outline normalised
  by the image size (as Ultralytics' own ``convert_segment_masks_to_yolo_seg`` writes it).

Ignore pixels (255) are left out, unless asked for (``ignore=True``, as the review bundle
does): they then form the category or label ``ignore`` (COCO category id 255), which the
readers here turn back into 255. Folder-level conversion is in
:mod:`boxes2pixels.convert_folder`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .data.labelmaps import IGNORE, Region, label_regions
from .errors import ConfigError, DatasetError, WriteError
from .io import image_size

ENCODINGS = ("rle", "polygon")
IGNORE_NAME = "ignore"
"""Category (COCO, id 255) and label (Label Studio) name of ignore pixels, where exported."""


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


def _outside(mask: np.ndarray) -> np.ndarray:
    """True on the background pixels of ``mask`` that reach its border through background
    (4-connectivity); the other background pixels are holes."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 2, flags=4)
    return (padded == 2)[1:-1, 1:-1]


def _hole_free_pieces(
    mask: np.ndarray, limit: int | None = None
) -> list[tuple[int, int, np.ndarray]] | None:
    """``mask`` (bool) cut into 4-connected pieces without holes, each ``(x, y, crop)``: the
    mask is cut between the top row of each hole and the row below (which opens every hole),
    then split into its 4-connected components. Each piece's pixel-edge outline is one simple
    closed curve. ``None`` when there would be more than ``limit`` pieces."""
    holes = (~mask & ~_outside(mask)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    cuts = sorted({int(stats[i, cv2.CC_STAT_TOP]) + 1 for i in range(1, count)})
    pieces: list[tuple[int, int, np.ndarray]] = []
    bounds = [0, *cuts, mask.shape[0]]
    for top, bottom in pairwise(bounds):
        band = mask[top:bottom].astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(band, connectivity=4)
        if limit is not None and len(pieces) + count - 1 > limit:
            return None
        for i in range(1, count):
            x, y, w, h = (int(v) for v in stats[i, :4])
            pieces.append((x, top + y, labels[y : y + h, x : x + w] == i))
    return pieces


def _edge_loop(piece: np.ndarray) -> np.ndarray:
    """The pixel-edge outline of a hole-free 4-connected piece: (K, 2) corner coordinates
    (x, y) of the pixel squares (pixel ``(x, y)`` spans ``[x, x+1] × [y, y+1]``), clockwise on
    screen, only the corners where the outline turns."""
    padded = np.pad(piece, 1)
    ys, xs = np.nonzero(piece)
    # (side free, start corner offset, end corner offset), the piece on the right-hand side
    sides = (
        (~padded[ys, xs + 1], (0, 0), (1, 0)),  # top
        (~padded[ys + 1, xs + 2], (1, 0), (1, 1)),  # right
        (~padded[ys + 2, xs + 1], (1, 1), (0, 1)),  # bottom
        (~padded[ys + 1, xs], (0, 1), (0, 0)),  # left
    )
    width = piece.shape[1] + 2
    starts, ends = [], []
    for free, (sx, sy), (ex, ey) in sides:
        starts.append((ys[free] + sy) * width + xs[free] + sx)
        ends.append((ys[free] + ey) * width + xs[free] + ex)
    following = dict(
        zip(np.concatenate(starts).tolist(), np.concatenate(ends).tolist(), strict=True)
    )
    first = next(iter(following))
    loop, point = [first], following[first]
    while point != first:
        loop.append(point)
        point = following[point]
    corners = np.asarray(loop)
    points = np.stack([corners % width, corners // width], axis=1)
    before, after = points - np.roll(points, 1, 0), np.roll(points, -1, 0) - points
    turns = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0] != 0
    return points[turns]


def pixel_polygons(mask: np.ndarray, max_polygons: int | None = None) -> list[np.ndarray] | None:
    """Polygons whose union is exactly the pixels of ``mask`` (H×W ``bool``).

    Each polygon follows the edges of the pixel squares (corner coordinates: pixel ``(x, y)``
    spans ``[x, x+1] × [y, y+1]``, the COCO and CVAT convention), so its area is its pixel
    count and pycocotools rasterises it back to exactly those pixels. A component with holes
    is cut into hole-free pieces (a COCO polygon cannot hold a hole) and pixels that touch
    only at a corner become separate polygons, so every polygon is simple (no self-touching)
    with at least 4 corners: a lone pixel is a unit square.

    Args:
        mask: the pixels to outline.
        max_polygons: give up (``None``) when more polygons would be needed (a diagonal 1-px
            crack needs one per pixel).

    Returns:
        (K, 2) ``int`` arrays of (x, y) corners, one per polygon; or ``None``.
    """
    pieces = _hole_free_pieces(np.asarray(mask, dtype=bool), max_polygons)
    if pieces is None:
        return None
    return [_edge_loop(crop) + np.array([x, y]) for x, y, crop in pieces]


def polygon_area(points: np.ndarray) -> float:
    """The area of a simple polygon ((K, 2) points; the shoelace formula)."""
    x, y = np.asarray(points, dtype=np.float64).T
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


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


# ---------------------------------------------------------------------------------- COCO
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


# --------------------------------------------------------------------------- Label Studio
LS_FROM_NAME = "tag"
"""``from_name`` of the brush regions: the ``<BrushLabels name=…>`` of
:func:`label_studio_config`."""
LS_TO_NAME = "image"
"""``to_name`` of the regions and the task's data key: the ``<Image name=… value="$image">``."""
LS_IMAGE_URL = "/data/local-files/?d="
"""Default prefix of task image references: Label Studio's local file serving, relative to
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``."""
LS_KEY = "b2p_name"
"""Task data field holding the image's name as written (kept by Label Studio's exports)."""
_LS_RLE_SIZES = (3, 4, 8, 16)  # bits of a run length, by the 2-bit size index


def label_studio_rle(mask: np.ndarray) -> list[int]:
    """A boolean mask in Label Studio's brush RLE: the bytes that
    ``label_studio_sdk.converter.brush.mask2rle(mask * 255)`` returns.

    Label Studio stores a brush region as the flattened RGBA image of the mask (each pixel's
    value in all four channels; the alpha channel is the mask), run-length coded as a bit
    stream: a 32-bit value count, the word size − 1 (5 bits: 8), four run-length sizes − 1
    (4 bits each: 3, 4, 8, 16), then per run ``1``, a 2-bit size index, the run length − 1
    and the 8-bit value; runs over 65536 values are split. The stream is padded with zero
    bits to whole bytes (a full zero byte when it is already whole, as the SDK does).
    """
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]])) * 4  # 4 channels per pixel
    values = np.where(flat[starts], 255, 0)
    # runs longer than 65536 values: full 65536 chunks, then the rest
    chunks = np.maximum((lengths - 1) // 65536, 0)
    run_values = np.repeat(values, chunks + 1)
    run_lengths = np.repeat(lengths, chunks + 1)
    first = np.cumsum(chunks + 1) - (chunks + 1)
    within = np.arange(run_lengths.size) - np.repeat(first, chunks + 1)
    last = within == np.repeat(chunks, chunks + 1)
    run_lengths = np.where(last, run_lengths - within * 65536, 65536)
    size = np.select([run_lengths <= 8, run_lengths <= 16, run_lengths <= 256], [0, 1, 2], 3)
    bits = np.asarray(_LS_RLE_SIZES)[size]
    tokens = (((1 << 2 | size) << bits | (run_lengths - 1)) << 8 | run_values).astype(np.int64)
    widths = 1 + 2 + bits + 8
    header = [(flat.size * 4, 32), (7, 5)] + [(n - 1, 4) for n in _LS_RLE_SIZES]
    fields = np.concatenate([np.array([v for v, _ in header], np.int64), tokens])
    field_bits = np.concatenate([np.array([b for _, b in header]), widths])
    total = int(field_bits.sum())
    owner = np.repeat(np.arange(fields.size), field_bits)
    offset = np.arange(total) - np.repeat(np.cumsum(field_bits) - field_bits, field_bits)
    stream = (fields[owner] >> (field_bits[owner] - 1 - offset)) & 1
    stream = np.concatenate([stream, np.zeros(8 - total % 8, np.int64)])
    return np.packbits(stream.astype(np.uint8)).tolist()


def label_studio_rle_decode(rle: Sequence[int], width: int, height: int) -> np.ndarray:
    """The H×W boolean mask of a Label Studio brush RLE (the alpha channel, ≥ 128), decoded
    as ``label_studio_sdk.converter.brush.decode_rle`` does (runs and literal blocks, any
    word size)."""
    bits = np.unpackbits(np.asarray(list(rle), dtype=np.uint8)).astype(np.int64)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        chunk = bits[pos : pos + n]
        pos += n
        return int(chunk.dot(1 << np.arange(n - 1, -1, -1))) if n else 0

    count = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    if count != width * height * 4:
        raise DatasetError(
            f"a brush RLE of {count} values does not fit a {width}×{height} image "
            f"({width * height * 4} RGBA values)"
        )
    out = np.zeros(count, dtype=np.uint8)
    i = 0
    while i < count:
        if pos >= bits.size:
            raise DatasetError("a brush RLE ends early")
        run = read(1)
        j = i + 1 + read(sizes[read(2)])
        if run:
            out[i:j] = read(word)
            i = j
        else:
            while i < j:
                out[i] = read(word)
                i += 1
    return out.reshape(height, width, 4)[:, :, 3] >= 128


def label_studio_config(names: Sequence[str], ignore: bool = False) -> str:
    """The labeling config (XML) the tasks of :func:`label_studio_task` are made for: an
    ``<Image name="image" value="$image">`` and ``<BrushLabels name="tag">`` with one label
    per class (and ``ignore``), coloured as boxes2pixels colours them."""
    from html import escape

    from .data.labelmaps import class_colour

    labels = [(str(n), class_colour(k + 1)) for k, n in enumerate(names)]
    if ignore:
        labels.append((IGNORE_NAME, (255, 255, 255)))
    lines = [
        "<View>",
        f'  <Image name="{LS_TO_NAME}" value="${LS_TO_NAME}" zoom="true"/>',
        f'  <BrushLabels name="{LS_FROM_NAME}" toName="{LS_TO_NAME}">',
        *(
            f'    <Label value="{escape(name)}" background="#{r:02x}{g:02x}{b:02x}"/>'
            for name, (r, g, b) in labels
        ),
        "  </BrushLabels>",
        "</View>",
    ]
    return "\n".join(lines) + "\n"


def label_studio_task(
    name: str,
    label_map: np.ndarray,
    names: Sequence[str],
    *,
    image_url: str = LS_IMAGE_URL,
    ignore: bool = False,
    model_version: str = "boxes2pixels",
) -> dict[str, Any]:
    """A Label Studio task of one image with its label map as a prediction (pre-annotation).

    Args:
        name: the image's name (e.g. ``train/a.jpg``); the task's ``data.image`` is
            ``image_url + name`` and ``data.b2p_name`` keeps ``name`` for the way back.
        label_map: H×W ``uint8`` (0 background, k+1 class k, 255 ignore).
        names: YOLO class names (the labels of :func:`label_studio_config`).
        image_url: prefix of the image reference.
        ignore: also a region of the ignore pixels (label ``ignore``).
        model_version: the prediction's ``model_version``.

    Returns:
        ``{"data": {...}, "predictions": [{"model_version", "result": [...]}]}``: one
        ``brushlabels`` region per class present, in Label Studio's RLE
        (:func:`label_studio_rle`), exact.
    """
    _check_label_map(label_map, len(names), str(name))
    height, width = label_map.shape
    result = []
    for value in (int(v) for v in np.unique(label_map)):
        if value == 0 or (value == IGNORE and not ignore):
            continue
        label = IGNORE_NAME if value == IGNORE else str(names[value - 1])
        result.append(
            {
                "id": f"b2p-{value}",
                "type": "brushlabels",
                "from_name": LS_FROM_NAME,
                "to_name": LS_TO_NAME,
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "format": "rle",
                    "rle": label_studio_rle(label_map == value),
                    "brushlabels": [label],
                },
            }
        )
    return {
        "data": {LS_TO_NAME: f"{image_url}{name}", LS_KEY: str(name)},
        "predictions": [{"model_version": model_version, "result": result}],
    }


def _ls_task_name(task: Mapping[str, Any]) -> str:
    """The image name of an exported task: ``data.b2p_name``, else the image reference
    without a local-files prefix or URL query."""
    data = task.get("data", {})
    if data.get(LS_KEY):
        return str(data[LS_KEY])
    ref = str(data.get(LS_TO_NAME) or next(iter(data.values()), ""))
    if "?d=" in ref:
        return ref.split("?d=", 1)[1]
    return ref.split("?", 1)[0]


def _ls_region(region: Mapping[str, Any], where: str) -> tuple[str, np.ndarray] | None:
    """(label, H×W bool mask) of one result region: brush RLE or a polygon in percent; None
    for other region types."""
    from pycocotools import mask as mask_utils

    value = region.get("value", {})
    width, height = int(region["original_width"]), int(region["original_height"])
    if "rle" in value:
        labels = value.get("brushlabels") or value.get("labels") or []
        mask = label_studio_rle_decode(value["rle"], width, height)
    elif "points" in value:
        labels = value.get("polygonlabels") or value.get("labels") or []
        xy = (np.asarray(value["points"], np.float64) / 100.0 * [width, height]).reshape(-1)
        rle = mask_utils.merge(mask_utils.frPyObjects([xy.tolist()], height, width))
        mask = mask_utils.decode(rle).astype(bool)
    else:
        return None
    if len(labels) != 1:
        raise DatasetError(f"{where}: region {region.get('id')} has labels {labels}, not one")
    return str(labels[0]), mask


def label_studio_to_masks(
    tasks: str | Path | Sequence[Mapping[str, Any]], names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Label maps from a Label Studio JSON export (a list of tasks).

    Each task's latest annotation that was not cancelled is read (brush RLE and polygon
    regions; labels are matched by name, ``ignore`` paints 255, later regions win where they
    overlap); a task without one (never submitted: its prediction is not a correction) is
    left out. The name is ``data.b2p_name`` (what :func:`label_studio_task` writes), else the
    image reference after Label Studio's ``?d=``.

    Returns:
        ``{image name: H×W uint8 label map}``.

    Raises:
        DatasetError: unreadable JSON, a label that is no class, a malformed region.
    """
    import json

    where = str(tasks) if isinstance(tasks, (str, Path)) else "<Label Studio tasks>"
    if isinstance(tasks, (str, Path)):
        try:
            tasks = json.loads(Path(tasks).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{where}: cannot read Label Studio JSON ({exc})") from exc
    values = {str(n): k + 1 for k, n in enumerate(names)} | {IGNORE_NAME: IGNORE}
    maps: dict[str, np.ndarray] = {}
    try:
        for task in tasks:
            done = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            if not done:
                continue
            name = _ls_task_name(task)
            label_map = None
            for region in done[-1].get("result", []):
                found = _ls_region(region, f"{where} ({name})")
                if found is None:
                    continue
                label, mask = found
                if label not in values:
                    raise DatasetError(
                        f"{where} ({name}): label '{label}' is not in names ({', '.join(names)})"
                    )
                if label_map is None:
                    label_map = np.zeros(mask.shape, np.uint8)
                elif label_map.shape != mask.shape:
                    raise DatasetError(f"{where} ({name}): regions of different image sizes")
                label_map[mask] = values[label]
            if label_map is None:
                width, height = _ls_size(task, done[-1])
                label_map = np.zeros((height, width), np.uint8)
            maps[name] = label_map
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DatasetError(f"{where}: not a Label Studio JSON export ({exc!r})") from exc
    return maps


def _ls_size(task: Mapping[str, Any], annotation: Mapping[str, Any]) -> tuple[int, int]:
    """(width, height) of a task whose latest annotation has no region: from any region of
    its predictions."""
    for source in [annotation, *task.get("predictions", [])]:
        for region in source.get("result", []):
            if "original_width" in region:
                return int(region["original_width"]), int(region["original_height"])
    raise DatasetError(
        f"task {task.get('id')} ({_ls_task_name(task)}): an annotation without regions and "
        "no image size to make its empty mask from"
    )
