"""Prediction on image files: label maps, overlays, region reports and tiled inference.

``predict_files`` is what ``b2p predict`` calls. It reads images one batch at a time, so
memory does not grow with the number of images; ``tile=True`` segments each image at its
full resolution with a sliding window whose memory is bounded by the tile size and the
image width (see ``predict_tiled``).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import Boxes2PixelsError, CheckpointError, ImageReadError
from .io import list_images, read_image, write_json_atomic, write_mask, write_rgb

if TYPE_CHECKING:
    import torch

    from .student import Student

SUMMARY_NAME = "b2p_predict.json"
"""File written into the output folder by ``predict_files``: settings, model, skipped images."""

PATCH = 14
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------------------------
# Loading a model
# --------------------------------------------------------------------------------------------


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def resolve_model_dir(path: Path) -> Path:
    """The saved-model folder named by ``path``: ``path`` itself, or ``path/best`` for a run.

    Raises:
        CheckpointError: ``path`` holds neither a saved model nor a run with ``best/``.
    """
    if _is_model_folder(path):
        return path
    if _is_model_folder(path / "best"):
        return path / "best"
    if path.is_dir():
        raise CheckpointError(
            f"{path}: neither a saved model (no config.json) nor a training run "
            f"(no best/config.json); pass a run folder, a model folder or a Hub id"
        )
    if not path.exists():
        raise CheckpointError(
            f"{path}: no such model; pass a run folder, a saved model folder or a Hub id"
        )
    raise CheckpointError(f"{path}: not a model folder (a saved model is a folder, not a file)")


def load_student(spec: Student | str | Path, device: str | torch.device | None = "auto") -> Student:
    """Load a student for inference and put it on ``device`` in eval mode.

    Args:
        spec: a ``Student`` (returned moved to ``device``), a training run folder (its
            ``best/`` model is used), a folder written by ``save_pretrained``, or a Hugging
            Face Hub id ``owner/name``. An existing local path always wins over a Hub id.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        CheckpointError: the path is not a model, or the Hub id cannot be loaded.
    """
    from .device import resolve_device
    from .student import Student

    dev = resolve_device(device)
    if isinstance(spec, Student):
        return spec.to(dev).eval()
    path = Path(spec).expanduser()
    if path.exists():
        model = Student.from_pretrained(str(resolve_model_dir(path)))
    elif _HUB_ID.match(str(spec)):
        try:
            model = Student.from_pretrained(str(spec))
        except Boxes2PixelsError:
            raise
        except Exception as exc:  # network, missing repo, offline mode: name the id
            raise CheckpointError(
                f"cannot load model '{spec}' from the Hugging Face Hub ({type(exc).__name__}: "
                f"{exc}); no local folder of that name exists either"
            ) from exc
    else:
        raise CheckpointError(
            f"{spec}: no such model folder (and not a Hub id of the form owner/name)"
        )
    return model.to(dev).eval()


def backbone_is_random(model: Any) -> bool:
    """True when the model's backbone was initialised randomly (tests, the offline demo)."""
    return bool(getattr(model, "random_backbone", False))


# --------------------------------------------------------------------------------------------
# Tiled inference
# --------------------------------------------------------------------------------------------


def _round_up(value: int, multiple: int = PATCH) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _model_imgsz(model: Any) -> int:
    size = getattr(model, "imgsz", None)
    if size is None:
        raise Boxes2PixelsError("the model has no imgsz; pass tile_size explicitly")
    if isinstance(size, (tuple, list)):
        size = max(size)
    return int(size)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of evenly spaced windows of size ``tile`` covering ``0..length``.

    The first window starts at 0 and the last ends exactly at ``length``; there are as few
    windows as keep every step at most ``stride`` (so neighbours overlap by at least
    ``tile - stride``). A length up to the tile gives one window at 0.
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def ramp_weights(tile: int, overlap: int) -> np.ndarray:
    """1-D blending weights: a linear ramp over ``overlap`` pixels at each end, 1 inside.

    Never zero, so pixels near the image border that only one tile covers keep a weight.
    """
    i = np.arange(tile, dtype=np.float32)
    ramp = float(max(overlap, 1))
    return np.minimum(1.0, np.minimum(i + 1, tile - i) / (ramp + 1)).astype(np.float32)


def _logits(model: Any, batch: np.ndarray, device: torch.device, dtype: Any) -> np.ndarray:
    """Fine-head logits (B×C×h×w float32, numpy) of a batch of B×h×w×3 ``uint8`` tiles."""
    import torch

    from .geometry import normalize

    x = normalize(batch, model.mean, model.std).to(device)
    with (
        torch.inference_mode(),
        torch.autocast(
            device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None
        ),
    ):
        out = model(x, heads=("fine",))["fine"]
    return out.float().cpu().numpy()


def predict_tiled(
    model: Student,
    image: np.ndarray,
    *,
    tile_size: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    precision: str = "fp32",
    callback: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Segment one image at full resolution with overlapping tiles and blended logits.

    Windows of ``tile_size`` pixels (rounded up to a multiple of 14; default the model's
    ``imgsz``) slide with ``overlap`` (fraction of the tile) over the unscaled image. Each
    tile's fine-head logits are weighted by a linear ramp towards its edges and summed; the
    label of a pixel is the argmax of that sum. Rows are finished as soon as no later tile
    can reach them, so memory holds one strip of ``C × tile × width`` logits, never the
    whole image's: a 5280×2970 photo needs about 35 MB of logits at tile 518 with 3 classes.

    Args:
        model: the student (on its device, in eval mode).
        image: RGB ``uint8`` H×W×3.
        tile_size: window side in pixels.
        overlap: fraction of the tile shared by neighbouring windows, in ``[0, 0.9]``.
        batch_size: tiles per forward pass.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (autocast dtype).
        callback: called as ``callback(tiles_done, tiles_total)`` after each forward pass.

    Returns:
        H×W ``uint8`` label map.
    """
    from .device import resolve_precision

    if not 0.0 <= overlap <= 0.9:
        raise Boxes2PixelsError(f"tile overlap must be between 0 and 0.9, got {overlap}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    device = next(model.parameters()).device
    dtype = resolve_precision(precision, device)
    tile = _round_up(tile_size or _model_imgsz(model))
    h, w = image.shape[:2]
    th, tw = min(tile, _round_up(h)), min(tile, _round_up(w))
    ph, pw = max(h, th), max(w, tw)  # the image padded so every window is full
    stride_h = max(1, round(th * (1 - overlap)))
    stride_w = max(1, round(tw * (1 - overlap)))
    ys, xs = tile_starts(ph, th, stride_h), tile_starts(pw, tw, stride_w)
    weight = ramp_weights(th, th - stride_h)[:, None] * ramp_weights(tw, tw - stride_w)[None, :]

    labels = np.zeros((h, w), dtype=np.uint8)
    # Ring buffer of weighted logit sums: image row r lives in buffer row r % th. Rows above
    # the next window's start are final; they are argmaxed and their buffer rows reused.
    ring: np.ndarray | None = None  # C × th × pw
    top = 0  # first image row not yet written to ``labels``

    def ring_spans(start: int, count: int) -> Iterator[tuple[int, int, int]]:
        """(buffer row, image offset, length) pieces of image rows start..start+count."""
        first = start % th
        head = min(count, th - first)
        yield first, 0, head
        if count > head:
            yield 0, head, count - head

    def flush(upto: int) -> None:
        nonlocal top
        upto = min(upto, ph)
        if ring is None or upto <= top:
            return
        for row, offset, length in ring_spans(top, upto - top):
            for a in range(0, length, 64):  # argmax in slices: small int64 temporaries
                b = min(length, a + 64)
                r0, r1 = top + offset + a, top + offset + b
                if r0 < h:
                    block = ring[:, row + a : row + b, :w].argmax(axis=0).astype(np.uint8)
                    labels[r0 : min(r1, h)] = block[: min(r1, h) - r0]
            ring[:, row : row + length] = 0
        top = upto

    total, done = len(ys) * len(xs), 0
    for y in ys:
        flush(y)
        rows = image[y : y + th]
        for i in range(0, len(xs), batch_size):
            chunk = xs[i : i + batch_size]
            # black padding where a window runs past the image, as the letterbox does
            batch = np.zeros((len(chunk), th, tw, 3), dtype=np.uint8)
            for j, x in enumerate(chunk):
                crop = rows[:, x : x + tw]
                batch[j, : crop.shape[0], : crop.shape[1]] = crop
            logits = _logits(model, batch, device, dtype)
            if ring is None:
                ring = np.zeros((logits.shape[1], th, pw), dtype=np.float32)
            for j, x in enumerate(chunk):
                weighted = logits[j] * weight
                for row, offset, length in ring_spans(y, th):
                    ring[:, row : row + length, x : x + tw] += weighted[:, offset : offset + length]
            done += len(chunk)
            if callback is not None:
                callback(done, total)
    flush(ph)
    return labels


# --------------------------------------------------------------------------------------------
# Region reports
# --------------------------------------------------------------------------------------------


def describe_regions(mask: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Defect area per class and every connected defect region of a label map.

    Regions are 8-connected components of each defect class (values ``1..C-1``; background
    and 255 are not regions). Boxes are ``[x0, y0, x1, y1]`` in pixels with exclusive ends,
    like the package's other boxes.

    Returns:
        ``{"width", "height", "defect_area": {name: {"pixels", "fraction"}},
        "regions": [{"class", "class_id", "area", "bbox", "centroid"}, ...]}``.
    """
    import cv2

    h, w = mask.shape
    total = float(h * w)
    area: dict[str, dict[str, float | int]] = {}
    regions: list[dict[str, Any]] = []
    for k in range(1, len(class_names)):
        binary = (mask == k).astype(np.uint8)
        pixels = int(binary.sum())
        area[class_names[k]] = {"pixels": pixels, "fraction": pixels / total if total else 0.0}
        if pixels == 0:
            continue
        n, _, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for i in range(1, n):
            x, y, bw, bh, a = (int(v) for v in stats[i])
            regions.append(
                {
                    "class": class_names[k],
                    "class_id": k,
                    "area": a,
                    "bbox": [x, y, x + bw, y + bh],
                    "centroid": [
                        round(float(centroids[i][0]), 2),
                        round(float(centroids[i][1]), 2),
                    ],
                }
            )
    regions.sort(key=lambda r: (-r["area"], r["class_id"], r["bbox"]))
    return {"width": w, "height": h, "defect_area": area, "regions": regions}


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@dataclass
class PredictSummary:
    """What ``predict_files`` did.

    Attributes:
        out: the output folder.
        masks: label-map PNGs written, one per readable image.
        overlays: overlay images written (``overlay=True``).
        reports: per-image JSON files written (``json=True``).
        skipped: unreadable images and why, as ``(path, reason)``.
        seconds: wall-clock time of the whole call.
        random_backbone: the model's backbone was randomly initialised (not a real model).
    """

    out: Path
    masks: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    random_backbone: bool = False

    @property
    def images(self) -> int:
        """Number of images predicted."""
        return len(self.masks)


def _source_root(source: str | Path, images: list[Path]) -> tuple[Path, bool]:
    """Folder that output names are made relative to, and whether it is a folder source."""
    src = Path(source)
    if src.is_dir():
        return src, True
    if src.is_file():
        return src.parent, False
    return Path(os.path.commonpath([str(p.parent.absolute()) for p in images])), False


def _output_names(images: list[Path], root: Path) -> dict[Path, Path]:
    """Relative output stem of each image: its path below ``root`` without the suffix.

    Two images that differ only by suffix (``a.jpg``, ``a.png``) keep their suffix in the
    stem (``a.jpg``, ``a.png``) so that neither output overwrites the other.
    """
    rel = {p: p.absolute().relative_to(root.absolute()) for p in images}
    stems: dict[Path, list[Path]] = {}
    for p, r in rel.items():
        stems.setdefault(r.with_suffix(""), []).append(p)
    out: dict[Path, Path] = {}
    for stem, members in stems.items():
        for p in members:
            out[p] = stem if len(members) == 1 else rel[p]
    return out


def _check_out_dir(out: Path, root: Path, folder_source: bool) -> None:
    out_abs, root_abs = out.resolve(), root.resolve()
    if out_abs == root_abs or (folder_source and root_abs in out_abs.parents):
        where = "the source folder" if out_abs == root_abs else "inside the source folder"
        raise Boxes2PixelsError(
            f"--out {out} is {where} {root}; predictions are never written next to the "
            f"source images: choose another folder"
        )


def _batches(items: list[Path], size: int) -> Iterator[list[Path]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _progress(enabled: bool) -> Any:
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def predict_files(
    model: Student | str | Path,
    source: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    overlay: bool = False,
    json: bool = False,
    tile: bool = False,
    tile_size: int | None = None,
    tile_overlap: float = 0.25,
    imgsz: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    precision: str = "fp32",
    alpha: float = 0.5,
    runtime: str = "torch",
    progress: bool = True,
) -> PredictSummary:
    """Predict label maps for image files and write them under ``out``.

    Output names mirror the source: ``SRC/a/b.jpg`` (folder source ``SRC``) gives
    ``OUT/a/b.png``; a single file or a glob's files are named relative to their (common)
    folder. Every output is at its image's own size. Unreadable images are skipped and
    listed in the summary, never a crash. ``OUT/b2p_predict.json`` records the model, the
    settings, the class names and the skipped files.

    Args:
        model: a ``Student``, a run folder, a saved model folder or a Hub id (``load_student``).
        source: an image file, a folder (searched recursively), a glob, or a list of those.
        out: output folder; must not be the source folder (nor inside a source folder).
        overlay: also write ``<name>_overlay.jpg``: the image with coloured classes and a legend.
        json: also write ``<name>.json`` (``describe_regions``): defect area per class and
            each connected defect region with its class, pixel area and box.
        tile: segment at full resolution with a sliding window (``predict_tiled``) instead of
            resizing the image to the model's input size.
        tile_size: window side for ``tile`` (default: ``imgsz``, else the model's ``imgsz``).
        tile_overlap: overlap of neighbouring windows as a fraction of the tile.
        imgsz: long side the image is resized to without ``tile`` (default: the model's).
        batch_size: images (or tiles) per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``.
        alpha: opacity of the class colours in overlays.
        runtime: ``torch`` (the model as saved) or ``onnx`` (``model`` is an ``.onnx`` file
            written by ``b2p export``, run by onnxruntime; not with ``tile``).
        progress: show a progress bar on stderr.

    Raises:
        Boxes2PixelsError: no images match ``source``, or ``out`` is a source folder.
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise Boxes2PixelsError(f"batch size must be at least 1, got {batch_size}")
    images = list_images(source)
    if not images:
        raise Boxes2PixelsError(f"{source}: no images found (file, folder or glob)")
    out = Path(out)
    if isinstance(source, (str, Path)):
        root, folder_source = _source_root(source, images)
        _check_out_dir(out, root, folder_source)
        names = _output_names(images, root)
    else:
        for s in source:
            r, f = _source_root(s, list_images(s) or images)
            _check_out_dir(out, r, f)
        root = Path(os.path.commonpath([str(p.parent.absolute()) for p in images]))
        names = _output_names(images, root)
    if any(n.as_posix() + ".json" == SUMMARY_NAME for n in names.values()):
        raise Boxes2PixelsError(
            f"an image's report would overwrite {out / SUMMARY_NAME}; rename that image"
        )

    if runtime == "onnx":
        if tile:
            raise Boxes2PixelsError("--tile runs the PyTorch model; use --runtime torch with it")
        from .export import load_onnx

        student = load_onnx(model)
    elif runtime == "torch":
        student = load_student(model, device)
    else:
        raise Boxes2PixelsError(f"unknown runtime '{runtime}' (use torch or onnx)")
    class_names = list(student.class_names)
    summary = PredictSummary(out=out, random_backbone=backbone_is_random(student))
    if overlay:
        from .viz import add_legend, overlay_mask

    with _progress(progress) as bar:
        task = bar.add_task("predict", total=len(images)) if bar is not None else None
        tiles = bar.add_task("tiles", total=None, visible=False) if bar and tile else None

        def on_tiles(done: int, total: int) -> None:
            if bar is not None and tiles is not None:
                bar.update(tiles, completed=done, total=total, visible=True)

        for group in _batches(images, 1 if tile else batch_size):
            loaded: list[tuple[Path, np.ndarray]] = []
            for path in group:
                try:
                    loaded.append((path, read_image(path)))
                except ImageReadError as exc:
                    summary.skipped.append((path, str(exc)))
            if tile:
                preds = [
                    predict_tiled(
                        student,
                        img,
                        tile_size=tile_size or imgsz,
                        overlap=tile_overlap,
                        batch_size=batch_size,
                        precision=precision,
                        callback=on_tiles,
                    )
                    for _, img in loaded
                ]
            elif loaded:
                preds = student.predict(
                    [img for _, img in loaded],
                    imgsz=imgsz,
                    batch_size=batch_size,
                    precision=precision,
                )
            else:
                preds = []
            for (path, img), pred in zip(loaded, preds, strict=True):
                stem = out / names[path]
                mask_path = stem.parent / (stem.name + ".png")
                write_mask(mask_path, pred)
                summary.masks.append(mask_path)
                if overlay:
                    vis = add_legend(overlay_mask(img, pred, alpha), class_names)
                    overlay_path = stem.parent / (stem.name + "_overlay.jpg")
                    write_rgb(overlay_path, vis)
                    summary.overlays.append(overlay_path)
                if json:
                    report = {
                        "image": str(path),
                        "mask": mask_path.name,
                        "class_names": class_names,
                        "random_backbone": summary.random_backbone,
                        **describe_regions(pred, class_names),
                    }
                    report_path = stem.parent / (stem.name + ".json")
                    write_json_atomic(report_path, report)
                    summary.reports.append(report_path)
            if bar is not None:
                bar.advance(task, len(group))

    summary.seconds = time.perf_counter() - start
    write_json_atomic(
        out / SUMMARY_NAME,
        {
            "model": str(model) if not hasattr(model, "state_dict") else type(model).__name__,
            "random_backbone": summary.random_backbone,
            "class_names": class_names,
            "images": summary.images,
            "skipped": [{"image": str(p), "reason": r} for p, r in summary.skipped],
            "settings": {
                "tile": tile,
                "tile_size": tile_size,
                "tile_overlap": tile_overlap,
                "imgsz": imgsz,
                "precision": precision,
                "runtime": runtime,
            },
            "seconds": round(summary.seconds, 3),
        },
    )
    return summary
