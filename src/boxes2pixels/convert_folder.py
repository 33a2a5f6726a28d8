"""``b2p convert``: a folder of label maps (pseudo-masks or predictions) to COCO, a CVAT /
Datumaro COCO dataset, Label Studio tasks or YOLO-seg.

Masks are matched to the images of a YOLO ``data.yaml``: the mask of image
``images/<split>/<sub>/<stem>.<ext>`` is ``MASKS/<split>/<sub>/<stem>.png`` (what ``b2p label``
writes), or ``MASKS/<sub>/<stem>.png`` for one split's folder given with ``split=`` (what
``b2p predict`` writes for ``images/<split>``). One mask is held in memory at a time.

Everything that can be checked is checked before the first file is written: the output
folder keeps clear of the dataset and the masks (:func:`check_output_folder`), every mask's
size is read from its header, and a run with nothing to convert is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .convert import (
    ENCODINGS,
    LS_IMAGE_URL,
    coco_dataset,
    coco_image,
    label_studio_config,
    label_studio_task,
    place_image,
    write_yolo_seg,
)
from .data.labelmaps import read_mask
from .data.yolo import YoloDataset, label_path_for, load_data_yaml
from .errors import ConfigError, DatasetError, ImageReadError
from .io import image_size, remove_outputs, write_json_atomic, write_text_atomic

FORMATS = ("yolo-seg", "coco", "cvat", "label-studio")
DEFAULT_ENCODING = {"coco": "rle", "cvat": "polygon"}
"""COCO segmentation per format when none is asked for."""
LS_TASKS = "tasks.json"
LS_CONFIG = "label_config.xml"

OUTPUTS = {
    "yolo-seg": ("images", "labels", "data.yaml"),
    "coco": ("annotations",),
    "cvat": ("annotations", "images"),
    "label-studio": ("images", LS_TASKS, LS_CONFIG),
}
"""What each format writes into the output folder (``--overwrite`` replaces these, and
nothing else there)."""


def prepare_output(out: Path, to: str, overwrite: bool) -> None:
    """Refuse an output folder that already holds this format's outputs (an earlier
    conversion's files would mix with this one's: a stale label file trains like a current
    one), unless ``overwrite``, which removes them first; other files are kept.

    Raises:
        ConfigError: naming the folder and what is there.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    present = [name for name in OUTPUTS[to] if (out / name).exists() or (out / name).is_symlink()]
    if present and not overwrite:
        raise ConfigError(
            f"--out {out} already holds {', '.join(present)} (an earlier conversion?): its "
            "files would mix with this one's. Nothing was written; choose a new folder, or "
            "pass --overwrite to replace them (other files there are kept)"
        )
    remove_outputs(out, present)


_LISTED = 5  # file names a message lists before "and N more"


@dataclass
class ConvertSummary:
    """What :func:`convert_masks` wrote.

    Attributes:
        out: the output folder.
        files: the written dataset files (``data.yaml`` or one COCO JSON per split).
        images: images converted per split.
        instances: COCO instances (connected components) written.
        skipped: ``(image, reason)`` for images without a usable mask.
        unmatched: mask files that belong to no image of the dataset (not converted).
        empty_splits: splits with a mask folder but no image converted (no file written).
        image_roots: per split, the folder that COCO ``file_name`` entries are relative to.
        differences: YOLO-seg: per ``<split>/<name>``, the pixels whose class differs when
            the labels are read back and the mask's defect pixels
            (:func:`~boxes2pixels.convert.yolo_seg_difference`).
    """

    out: Path
    files: list[Path] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)
    instances: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)
    empty_splits: list[str] = field(default_factory=list)
    image_roots: dict[str, Path] = field(default_factory=dict)
    differences: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class _SplitPlan:
    """One split's images with a mask of their size, the images whose mask has another size
    (``(image, reason)``) and the masks of no image."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    misfits: list[tuple[Path, str]] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)


def listed(paths: list[Path]) -> str:
    """The first few of ``paths`` as text, with ``and N more`` for the rest."""
    text = ", ".join(str(p) for p in paths[:_LISTED])
    return text + (f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else "")


def source_folders(dataset: YoloDataset) -> list[tuple[str, Path]]:
    """The dataset's own folders, each with what it is: the root (``path``), every split's
    image folder and its label folder, and the folder of a split's list file or image file."""
    found = [(f"the dataset folder of {dataset.yaml_path}", dataset.root)]
    for split, sources in dataset.split_sources.items():
        for src in sources:
            if src.is_dir():
                found.append((f"the image folder of split '{split}'", src))
                labels = label_path_for(src / "x.jpg").parent
                if labels != src:
                    found.append((f"the label folder of split '{split}'", labels))
            else:
                found.append((f"the folder of split '{split}' entry {src.name}", src.parent))
    return found


def check_output_folder(
    out: Path, dataset: YoloDataset, masks: Path, *, containing: bool = True
) -> None:
    """Refuse an output folder that is, or lies inside, the dataset (its root, any split's
    image or label folder), the folder of its ``data.yaml`` or the masks folder; with
    ``containing`` also one that holds any of them (except the ``data.yaml`` folder).
    Paths are compared resolved (symbolic links, ``..``, relative paths).

    Raises:
        ConfigError: naming ``out`` and the folder it collides with.
    """
    target = out.resolve()
    guarded = [*source_folders(dataset), ("the masks folder", masks)]
    clashes = []  # (rank: "is" first, then the deepest folder out lies in, then the highest)
    for what, folder in guarded:
        resolved = folder.resolve()
        if target == resolved:
            clashes.append(((0, 0), "is", what, resolved))
        elif resolved in target.parents:
            clashes.append(((1, -len(resolved.parts)), "lies inside", what, resolved))
        elif containing and target in resolved.parents:
            clashes.append(((2, len(resolved.parts)), "contains", what, resolved))
    if target == dataset.yaml_path.parent.resolve():
        clashes.append(((0, 1), "is", f"the folder of {dataset.yaml_path}", target))
    if not clashes:
        return
    _, relation, what, resolved = min(clashes, key=lambda clash: clash[0])
    raise ConfigError(
        f"--out {out} {relation} {what} ({resolved}): writing there would overwrite or mix "
        "with the source files. Nothing was written; choose an output folder outside the "
        f"dataset {dataset.root} and the masks folder {masks}"
    )


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


def _mask_size(path: Path) -> tuple[int, int]:
    """(width, height) of a mask PNG from its header, as :func:`read_mask` will read it."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot read mask ({exc})") from exc


def _plan(dataset: YoloDataset, split: str, folder: Path, summary: ConvertSummary) -> _SplitPlan:
    """Match the split's images with the masks in ``folder``; images without a mask of their
    size go to ``summary.skipped``, PNGs of no image to the plan's ``unmatched``."""
    plan = _SplitPlan()
    names = dataset.mask_names(split)
    for image, mask_name in names.items():
        mask_path = folder / mask_name
        if not mask_path.is_file():
            summary.skipped.append((image, f"no mask {mask_path}"))
            continue
        mask_wh, image_wh = _mask_size(mask_path), image_size(image)
        if mask_wh != image_wh:
            reason = (
                f"mask {mask_path} is {mask_wh[0]}×{mask_wh[1]}, the image "
                f"{image_wh[0]}×{image_wh[1]}"
            )
            plan.misfits.append((image, reason))
            summary.skipped.append((image, reason))
            continue
        plan.pairs.append((image, mask_path))
    wanted = {folder / name for name in names.values()}
    plan.unmatched = sorted(
        p
        for p in folder.rglob("*.png")
        if p not in wanted and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return plan


def _nothing_to_convert(
    masks: Path,
    dataset: YoloDataset,
    plans: dict[str, _SplitPlan],
    folders: dict[str, Path],
    split: str | None,
) -> DatasetError:
    """The error of a run in which no image has a mask of its size, saying where it looked."""
    where = ", ".join(f"{folder} (split {s})" for s, folder in folders.items())
    misfits = [f"{image}: {reason}" for plan in plans.values() for image, reason in plan.misfits]
    if misfits:
        shown = "; ".join(misfits[:_LISTED])
        more = f" and {len(misfits) - _LISTED} more" if len(misfits) > _LISTED else ""
        return DatasetError(
            f"no mask in {where} has its image's size: {shown}{more}. Nothing was written"
        )
    images = sum(len(dataset.mask_names(s)) for s in folders)
    example = "<masks>/a.png" if split else "<masks>/<split>/a.png"
    text = (
        f"no masks found in {where} for the {images} images of {dataset.yaml_path} "
        f"(the mask of images/<split>/a.jpg is {example})"
    )
    unmatched = [p for plan in plans.values() for p in plan.unmatched]
    if unmatched:
        text += f"; {len(unmatched)} PNG files there match no image: {listed(unmatched)}"
    sub = [s for s in dataset.splits if (masks / s).is_dir()]
    if split is not None and sub:
        text += f"; {masks} has split sub-folders ({', '.join(sub)}): leave out --split"
    return DatasetError(text + ". Nothing was written")


def _pairs(
    dataset: YoloDataset, split: str, plan: _SplitPlan, summary: ConvertSummary
) -> Iterator[tuple[str, Path, np.ndarray]]:
    """``(relative image name, image path, label map)`` of the planned images, one at a time."""
    for image, mask_path in plan.pairs:
        summary.images[split] = summary.images.get(split, 0) + 1
        yield _image_name(dataset, split, image), image, read_mask(mask_path)


def convert_masks(
    masks: str | Path,
    data: str | Path,
    out: str | Path,
    to: str,
    *,
    split: str | None = None,
    encoding: str | None = None,
    copy_images: bool = False,
    image_url: str = LS_IMAGE_URL,
    overwrite: bool = False,
) -> ConvertSummary:
    """Convert a folder of label-map PNGs for the images of ``data`` to another tool's format.

    Args:
        masks: the masks folder (``b2p label`` output with one sub-folder per split, or one
            split's masks with ``split``).
        data: the dataset's ``data.yaml`` (images and class names).
        out: output folder, outside the dataset and the masks (see
            :func:`check_output_folder`).
        to: ``yolo-seg`` (Ultralytics dataset: ``images/``, ``labels/``, ``data.yaml``),
            ``coco`` (``annotations/instances_<split>.json``), ``cvat`` (the same beside
            ``images/<split>/``: the layout Datumaro's and CVAT's COCO importers read) or
            ``label-studio`` (``tasks.json`` with brush-RLE predictions, ``label_config.xml``
            and ``images/<split>/``).
        split: ``masks`` holds this split's masks directly.
        encoding: COCO segmentation: ``rle`` or ``polygon`` (both exact); default ``rle``
            for ``coco``, ``polygon`` for ``cvat`` (editable shapes).
        copy_images: YOLO-seg, CVAT, Label Studio: copy images instead of linking them.
        image_url: Label Studio: prefix of each task's image reference (followed by
            ``<split>/<name>``); the default serves ``<out>/images/`` through Label Studio's
            local files with ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<out>/images``.
        overwrite: replace an earlier conversion's outputs in ``out`` (:data:`OUTPUTS`);
            without it, ``out`` holding any of them is an error.

    Images without a mask of their size are listed in ``skipped``, masks of no image in
    ``unmatched`` (a mask cannot be converted without its image: COCO names the image and
    YOLO-seg links it); the other images are converted. A split with no converted image gets
    no file (``empty_splits``).

    Raises:
        ConfigError: unknown format or encoding, ``out`` collides with the dataset or the
            masks folder, or holds an earlier conversion's outputs without ``overwrite``.
        DatasetError: the dataset or the mask folders are unusable, or no image has a mask
            of its size (nothing is written).
    """
    if to not in FORMATS:
        raise ConfigError(f"unknown format '{to}' (use {', '.join(FORMATS)})")
    encoding = encoding or DEFAULT_ENCODING.get(to, "rle")
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown COCO encoding '{encoding}' (use {', '.join(ENCODINGS)})")
    masks, out = Path(masks), Path(out)
    if not masks.is_dir():
        raise DatasetError(f"{masks}: masks folder not found")
    dataset = load_data_yaml(data)
    check_output_folder(out, dataset, masks)
    folders = _mask_folders(masks, dataset, split)
    summary = ConvertSummary(out=out)
    plans = {s: _plan(dataset, s, folder, summary) for s, folder in folders.items()}
    summary.unmatched = [p for plan in plans.values() for p in plan.unmatched]
    if not any(plan.pairs for plan in plans.values()):
        raise _nothing_to_convert(masks, dataset, plans, folders, split)
    summary.empty_splits = [s for s, plan in plans.items() if not plan.pairs]
    plans = {s: plan for s, plan in plans.items() if plan.pairs}
    prepare_output(out, to, overwrite)
    if to == "yolo-seg":
        items = (
            (name_split, rel, image, label_map)
            for name_split, plan in plans.items()
            for rel, image, label_map in _pairs(dataset, name_split, plan, summary)
        )
        summary.files.append(
            write_yolo_seg(
                out, items, dataset.names, copy_images=copy_images, differences=summary.differences
            )
        )
        return summary
    if to == "label-studio":
        tasks = []
        for name_split, plan in plans.items():
            for rel, image, label_map in _pairs(dataset, name_split, plan, summary):
                place_image(image, out / "images" / name_split / rel, copy_images)
                name = f"{name_split}/{rel}"
                tasks.append(label_studio_task(name, label_map, dataset.names, image_url=image_url))
                summary.instances += len(tasks[-1]["predictions"][0]["result"])
        write_json_atomic(out / LS_TASKS, tasks)
        write_text_atomic(out / LS_CONFIG, label_studio_config(dataset.names))
        summary.files += [out / LS_TASKS, out / LS_CONFIG]
        return summary
    for name_split, plan in plans.items():
        entries, annotations = [], []
        for rel, image, label_map in _pairs(dataset, name_split, plan, summary):
            if to == "cvat":
                place_image(image, out / "images" / name_split / rel, copy_images)
            entry, anns = coco_image(
                len(entries) + 1, rel, label_map, dataset.names, len(annotations) + 1, encoding
            )
            entries.append(entry)
            annotations.extend(anns)
        summary.instances += len(annotations)
        path = out / "annotations" / f"instances_{name_split}.json"
        write_json_atomic(path, coco_dataset(entries, annotations, dataset.names))
        summary.files.append(path)
        summary.image_roots[name_split] = (
            out / "images" / name_split if to == "cvat" else _image_root(dataset, name_split)
        )
    return summary
