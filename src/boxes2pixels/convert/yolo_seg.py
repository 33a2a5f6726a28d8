"""Label maps to and from YOLO-seg (Ultralytics): one line ``k x1 y1 x2 y2 …`` per component,
the outline normalised by the image size (as Ultralytics' own
``convert_segment_masks_to_yolo_seg`` writes it), and the dataset folder with its ``data.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..atomic import copy_file_atomic
from ..data.labelmaps import IGNORE, label_regions
from .common import _check_label_map
from .polygons import instance_outlines


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


def yolo_seg_difference(label_map: np.ndarray, lines: Sequence[str]) -> tuple[int, int]:
    """How far YOLO-seg ``lines`` fall short of ``label_map``: the pixels whose class differs
    once the lines are read back as Ultralytics rasterises them (:func:`yolo_seg_to_mask`),
    and the label map's defect pixels (ignore pixels, which YOLO-seg cannot hold, count in
    neither)."""
    height, width = label_map.shape
    kept = label_map != IGNORE
    back = yolo_seg_to_mask(lines, width, height)
    defect = int(np.count_nonzero(kept & (label_map > 0)))
    return int(np.count_nonzero(kept & (back != label_map))), defect


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


def place_image(image: Path, target: Path, copy: bool) -> None:
    """Put ``image`` at ``target``: a symbolic link to it, or (``copy``, or where the file
    system refuses links) a copy (:func:`~boxes2pixels.atomic.copy_file_atomic`)."""
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
    differences: dict[str, tuple[int, int]] | None = None,
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
        differences: when given, filled with :func:`yolo_seg_difference` of every image
            (``"<split>/<relative_name>"``): YOLO-seg has no holes and no polygon for a lone
            pixel, so the labels are an approximation of the masks.

    Returns:
        The written ``data.yaml`` (``path`` is the absolute dataset folder, so Ultralytics
        finds it from any working directory).
    """
    import yaml

    from ..io import write_text_atomic

    out = Path(out_dir).resolve()
    splits: list[str] = []
    for split, name, image_path, label_map in items:
        if split not in splits:
            splits.append(split)
        place_image(Path(image_path), out / "images" / split / name, copy_images)
        lines = mask_to_yolo_seg(label_map, len(names))
        if differences is not None:
            differences[f"{split}/{name}"] = yolo_seg_difference(label_map, lines)
        label_file = (out / "labels" / split / name).with_suffix(".txt")
        write_text_atomic(label_file, "".join(line + "\n" for line in lines))
    config = yolo_seg_data_yaml(names, splits)
    config["path"] = str(out)
    yaml_path = out / "data.yaml"
    write_text_atomic(yaml_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return yaml_path
