"""``b2p convert``: a folder of label maps (pseudo-masks or predictions) to COCO or YOLO-seg.

Masks are matched to the images of a YOLO ``data.yaml``: the mask of image
``images/<split>/<sub>/<stem>.<ext>`` is ``MASKS/<split>/<sub>/<stem>.png`` (what ``b2p label``
writes), or ``MASKS/<sub>/<stem>.png`` for one split's folder given with ``split=`` (what
``b2p predict`` writes for ``images/<split>``). One mask is held in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .convert import ENCODINGS, coco_dataset, coco_image, write_yolo_seg
from .data.yolo import YoloDataset, load_data_yaml
from .errors import ConfigError, DatasetError
from .io import image_size, read_mask, write_json_atomic

FORMATS = ("yolo-seg", "coco")


@dataclass
class ConvertSummary:
    """What :func:`convert_masks` wrote.

    Attributes:
        out: the output folder.
        files: the written dataset files (``data.yaml`` or one COCO JSON per split).
        images: images converted per split.
        instances: COCO instances (connected components) written.
        skipped: ``(image, reason)`` for images without a usable mask.
        image_roots: per split, the folder that COCO ``file_name`` entries are relative to.
    """

    out: Path
    files: list[Path] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)
    instances: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    image_roots: dict[str, Path] = field(default_factory=dict)


def _mask_folders(masks: Path, dataset: YoloDataset, split: str | None) -> dict[str, Path]:
    if split is not None:
        if split not in dataset.split_sources:
            raise DatasetError(
                f"{dataset.yaml_path}: split '{split}' is not defined "
                f"(defined: {', '.join(dataset.splits)})"
            )
        return {split: masks}
    found = {s: masks / s for s in dataset.splits if (masks / s).is_dir()}
    if not found:
        raise DatasetError(
            f"{masks}: no mask folder for any split of {dataset.yaml_path} "
            f"(looked for {', '.join(dataset.splits)}); for a folder of one split's masks "
            "(b2p predict output) pass --split"
        )
    return found


def _image_root(dataset: YoloDataset, split: str) -> Path:
    folders = [s for s in dataset.split_sources[split] if s.is_dir()]
    return folders[0] if len(folders) == 1 else dataset.root


def _image_name(dataset: YoloDataset, split: str, image: Path) -> str:
    """The image's path inside its split folder (its file name for a list-file split)."""
    for src in dataset.split_sources[split]:
        if src.is_dir():
            try:
                return image.relative_to(src).as_posix()
            except ValueError:
                continue
    return image.name


def _pairs(
    dataset: YoloDataset, split: str, folder: Path, summary: ConvertSummary
) -> Iterator[tuple[str, Path, np.ndarray]]:
    """``(relative image name, image path, label map)`` of the split's images with a mask."""
    for image, mask_name in dataset.mask_names(split).items():
        mask_path = folder / mask_name
        if not mask_path.is_file():
            summary.skipped.append((image, f"no mask {mask_path}"))
            continue
        label_map = read_mask(mask_path)
        width, height = image_size(image)
        if label_map.shape != (height, width):
            summary.skipped.append(
                (
                    image,
                    f"mask {mask_path} is {label_map.shape[1]}×{label_map.shape[0]}, "
                    f"the image {width}×{height}",
                )
            )
            continue
        summary.images[split] = summary.images.get(split, 0) + 1
        yield _image_name(dataset, split, image), image, label_map


def convert_masks(
    masks: str | Path,
    data: str | Path,
    out: str | Path,
    to: str,
    *,
    split: str | None = None,
    encoding: str = "rle",
    copy_images: bool = False,
) -> ConvertSummary:
    """Convert a folder of label-map PNGs for the images of ``data`` to another tool's format.

    Args:
        masks: the masks folder (``b2p label`` output with one sub-folder per split, or one
            split's masks with ``split``).
        data: the dataset's ``data.yaml`` (images and class names).
        out: output folder (must not be the masks folder).
        to: ``yolo-seg`` (Ultralytics dataset: ``images/``, ``labels/``, ``data.yaml``) or
            ``coco`` (``annotations/instances_<split>.json``).
        split: ``masks`` holds this split's masks directly.
        encoding: COCO segmentation: ``rle`` (exact) or ``polygon``.
        copy_images: YOLO-seg: copy images instead of linking them.

    Raises:
        ConfigError: unknown format or encoding, or ``out`` is the masks folder.
        DatasetError: the dataset or the mask folders are unusable.
    """
    if to not in FORMATS:
        raise ConfigError(f"unknown format '{to}' (use {', '.join(FORMATS)})")
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown COCO encoding '{encoding}' (use {', '.join(ENCODINGS)})")
    masks, out = Path(masks), Path(out)
    if not masks.is_dir():
        raise DatasetError(f"{masks}: masks folder not found")
    if out.resolve() == masks.resolve():
        raise ConfigError(f"{out}: the output folder must not be the masks folder")
    dataset = load_data_yaml(data)
    folders = _mask_folders(masks, dataset, split)
    summary = ConvertSummary(out=out)
    if to == "yolo-seg":
        items = (
            (name_split, rel, image, label_map)
            for name_split, folder in folders.items()
            for rel, image, label_map in _pairs(dataset, name_split, folder, summary)
        )
        summary.files.append(write_yolo_seg(out, items, dataset.names, copy_images=copy_images))
        return summary
    for name_split, folder in folders.items():
        entries, annotations = [], []
        for rel, _, label_map in _pairs(dataset, name_split, folder, summary):
            entry, anns = coco_image(
                len(entries) + 1, rel, label_map, dataset.names, len(annotations) + 1, encoding
            )
            entries.append(entry)
            annotations.extend(anns)
        summary.instances += len(annotations)
        path = out / "annotations" / f"instances_{name_split}.json"
        write_json_atomic(path, coco_dataset(entries, annotations, dataset.names))
        summary.files.append(path)
        summary.image_roots[name_split] = _image_root(dataset, name_split)
    return summary
