"""Label maps to and from Label Studio: tasks with one brush region per class in Label
Studio's own RLE (exact), their labeling config, and label maps from a JSON export."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.labelmaps import IGNORE
from ..errors import DatasetError
from .common import IGNORE_NAME, _check_label_map, load_export

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

    from ..data.labelmaps import class_colour

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
    tasks, where = load_export(tasks, "Label Studio")
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
