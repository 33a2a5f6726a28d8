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

Modules: :mod:`.coco` (COCO / CVAT, both ways), :mod:`.yolo_seg` (Ultralytics YOLO-seg lines
and dataset folders), :mod:`.label_studio` (Label Studio tasks, brush RLE, exports);
:mod:`.polygons` (outlines and pixel-edge polygons) and :mod:`.common` (the ``ignore`` name,
the label map check) serve them. Every name is importable from here.
"""

from __future__ import annotations

from .coco import (
    ENCODINGS,
    MAX_POLYGONS,
    coco_categories,
    coco_dataset,
    coco_image,
    coco_to_masks,
    instance_annotation,
    instance_polygons,
    masks_to_coco,
)
from .common import IGNORE_NAME
from .label_studio import (
    LS_FROM_NAME,
    LS_IMAGE_URL,
    LS_KEY,
    LS_TO_NAME,
    label_studio_config,
    label_studio_rle,
    label_studio_rle_decode,
    label_studio_task,
    label_studio_to_masks,
)
from .polygons import instance_outlines, pixel_polygons, polygon_area
from .yolo_seg import (
    mask_to_yolo_seg,
    place_image,
    write_yolo_seg,
    yolo_seg_data_yaml,
    yolo_seg_difference,
    yolo_seg_to_mask,
)

__all__ = [
    "ENCODINGS",
    "IGNORE_NAME",
    "LS_FROM_NAME",
    "LS_IMAGE_URL",
    "LS_KEY",
    "LS_TO_NAME",
    "MAX_POLYGONS",
    "coco_categories",
    "coco_dataset",
    "coco_image",
    "coco_to_masks",
    "instance_annotation",
    "instance_outlines",
    "instance_polygons",
    "label_studio_config",
    "label_studio_rle",
    "label_studio_rle_decode",
    "label_studio_task",
    "label_studio_to_masks",
    "mask_to_yolo_seg",
    "masks_to_coco",
    "pixel_polygons",
    "place_image",
    "polygon_area",
    "write_yolo_seg",
    "yolo_seg_data_yaml",
    "yolo_seg_difference",
    "yolo_seg_to_mask",
]
