"""Prediction on image files: label maps, overlays and region reports.

``predict_files`` is what ``b2p predict`` calls. It loads any model through
:func:`~boxes2pixels.models.load_model` (a student or baseline folder, a run, a Hub id, an
``.onnx`` file) and reads images one batch at a time, so memory does not grow with the
number of images. How each image is segmented (whole or tiled at full resolution, in which
precision) is decided once by :func:`~boxes2pixels.inference.plan_inference` and recorded
in ``b2p_predict.json`` as what ran.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import remove_stale_temps
from .data.labelmaps import label_regions, write_mask
from .data.yolo import output_stem
from .errors import Boxes2PixelsError, ImageReadError
from .inference import (
    InferencePlan,
    SegmentationModel,
    backbone_is_random,
    load_model,
    model_sha256,
    plan_inference,
    segment,
)
from .io import (
    describe_unsupported,
    list_images,
    read_image,
    scan_images,
    write_json_atomic,
    write_rgb,
)
from .predict_outputs import SUMMARY_NAME, Journal, image_files, plan_folder

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
    h, w = mask.shape
    total = float(h * w)
    area: dict[str, dict[str, float | int]] = {}
    for k in range(1, len(class_names)):
        pixels = int((mask == k).sum())
        area[class_names[k]] = {"pixels": pixels, "fraction": pixels / total if total else 0.0}
    regions = [
        {
            "class": class_names[r.value],
            "class_id": r.value,
            "area": r.area,
            "bbox": [r.bbox[0], r.bbox[1], r.bbox[0] + r.bbox[2], r.bbox[1] + r.bbox[3]],
            "centroid": [round(r.centroid[0], 2), round(r.centroid[1], 2)],
        }
        for r in label_regions(mask, range(1, len(class_names)))
    ]
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
        plan: how the images were segmented (runtime, precision, whole or tiled).
        windows: forward windows run (images when whole, tiles when tiled).
        resumed: images a run cut short had finished, not predicted again.
        ignored: files of the source's folders and globs of an image type not read here
            (``io.OTHER_IMAGE_SUFFIXES``: ``.heic``, camera raw, ...), counted by suffix.
    """

    out: Path
    masks: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    random_backbone: bool = False
    plan: InferencePlan | None = None
    windows: int = 0
    resumed: int = 0
    ignored: dict[str, int] = field(default_factory=dict)

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
    """Relative output stem of each image: its folder below ``root`` and its
    :func:`~boxes2pixels.data.yolo.output_stem`, the rule ``b2p label`` names masks by
    (``a.jpg`` and ``a.png`` in one folder give ``a.jpg`` and ``a.png``, so neither output
    overwrites the other)."""
    return {p: p.absolute().relative_to(root.absolute()).parent / output_stem(p) for p in images}


def _check_out_dir(out: Path, root: Path, folder_source: bool) -> None:
    """Refuse an ``--out`` that is a file, the source folder, a folder above it (the mirrored
    names would land in the user's folders) or, for a folder source, inside it."""
    if out.exists() and not out.is_dir():
        raise Boxes2PixelsError(f"--out {out} is a file; predictions need a folder")
    out_abs, root_abs = out.resolve(), root.resolve()
    if out_abs == root_abs:
        where = "the source folder"
    elif out_abs in root_abs.parents:
        where = "a folder above the source folder"
    elif folder_source and root_abs in out_abs.parents:
        where = "inside the source folder"
    else:
        return
    raise Boxes2PixelsError(
        f"--out {out} is {where} {root}; predictions are never written among the source "
        f"images: choose another folder"
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


def _plan_outputs(
    source: str | Path | Sequence[str | Path], images: list[Path], out: Path, json_report: bool
) -> dict[Path, Path]:
    """Relative output stem of each image, after checking that ``out`` is not a source and
    that no two images (nor an image's report and the summary file) share an output."""
    if isinstance(source, (str, Path)):
        root, folder_source = _source_root(source, images)
        _check_out_dir(out, root, folder_source)
    else:
        for s in source:
            r, f = _source_root(s, list_images(s) or images)
            _check_out_dir(out, r, f)
        root = Path(os.path.commonpath([str(p.parent.absolute()) for p in images]))
    names = _output_names(images, root)
    owner: dict[str, Path] = {}
    for image, name in names.items():
        if json_report and name.as_posix() + ".json" == SUMMARY_NAME:
            raise Boxes2PixelsError(
                f"{image}: its report would overwrite {out / SUMMARY_NAME}; rename the image "
                "or leave out --json"
            )
        other = owner.setdefault(name.as_posix(), image)
        if other != image:
            raise Boxes2PixelsError(
                f"images {other} and {image} would both get the outputs {out / name}.png; "
                "rename one of them"
            )
    return names


def _write_outputs(
    summary: PredictSummary,
    stem: Path,
    path: Path,
    image: np.ndarray,
    pred: np.ndarray,
    class_names: list[str],
    *,
    overlay: bool,
    json: bool,
    alpha: float,
    palette: bool = False,
) -> list[Path]:
    """Write one image's mask (and overlay, region report; named by
    :func:`~boxes2pixels.predict_outputs.image_files`), record them in ``summary`` and
    return them."""
    files = image_files(stem, overlay, json)
    mask_path = files[0]
    write_mask(mask_path, pred, palette)
    summary.masks.append(mask_path)
    if overlay:
        from .viz import add_legend, overlay_mask

        vis = add_legend(overlay_mask(image, pred, alpha), class_names)
        overlay_path = files[1]
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
        report_path = files[-1]
        write_json_atomic(report_path, report)
        summary.reports.append(report_path)
    return files


def _read_group(group: list[Path], summary: PredictSummary) -> list[tuple[Path, np.ndarray]]:
    """The readable images of ``group``; unreadable ones go to ``summary.skipped``."""
    loaded: list[tuple[Path, np.ndarray]] = []
    for path in group:
        try:
            loaded.append((path, read_image(path)))
        except ImageReadError as exc:
            summary.skipped.append((path, str(exc)))
    return loaded


def predict_files(
    model: SegmentationModel | str | Path,
    source: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    overlay: bool = False,
    json: bool = False,
    tile: bool = False,
    tile_size: int | None = None,
    tile_overlap: float | None = None,
    imgsz: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    alpha: float = 0.5,
    runtime: str = "auto",
    progress: bool = True,
    palette: bool = False,
    revision: str | None = None,
    overwrite: bool = False,
) -> PredictSummary:
    """Predict label maps for image files and write them under ``out``.

    Output names mirror the source: ``SRC/a/b.jpg`` (folder source ``SRC``) gives
    ``OUT/a/b.png``; a single file or a glob's files are named relative to their (common)
    folder. Every output is at its image's own size. Unreadable images are skipped and
    listed in the summary, never a crash. ``OUT/b2p_predict.json`` records the model, the
    settings, the class names and the skipped files.

    Args:
        model: a model object, a run folder, a saved student or baseline folder, a Hub id or
            an ``.onnx`` file written by ``b2p export`` (see ``load_model``).
        source: an image file, a folder (searched recursively), a glob, or a list of those.
        out: output folder; must not be the source folder (nor inside a source folder).
        overlay: also write ``<name>_overlay.jpg``: the image with coloured classes and a legend.
        json: also write ``<name>.json`` (``describe_regions``): defect area per class and
            each connected defect region with its class, pixel area and box.
        tile: segment at full resolution with a sliding window instead of resizing the
            image to the model's input size (an ``.onnx`` file exported at a fixed size tiles
            at that size). Always on for a model trained with a crop size (``b2p train
            --crop-size``).
        tile_size: window side for ``tile`` (default: the model's crop size, else ``imgsz``,
            else the model's ``imgsz``).
        tile_overlap: overlap of neighbouring windows as a fraction of the tile (default
            0.25).
        imgsz: long side the image is resized to without ``tile`` (default: the model's).
        batch_size: images (or tiles) per forward pass (default: 16 on a GPU, 4 on the
            CPU; see ``plan_inference``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``auto`` (the fastest exact path here: see
            ``inference.choose_precision``), ``fp32``, ``bf16`` or ``fp16``; onnxruntime runs
            fp32 only (``bf16``/``fp16`` with it is an error).
        alpha: opacity of the class colours in overlays.
        runtime: ``auto`` (for an ``.onnx`` file OpenVINO on the CPU when installed, else
            onnxruntime; PyTorch otherwise), ``torch``, ``onnx`` or ``openvino``.
        progress: show a progress bar on stderr.
        palette: attach a colour palette to the mask PNGs (default: plain grayscale indices).
        revision: branch, tag, commit or ``refs/pr/N`` when ``model`` is a Hub id.
        overwrite: replace what ``out`` holds of this run's files, after removing the
            outputs an earlier ``predict`` run recorded there (in its ``b2p_predict.json``);
            without it, ``out`` holding any file this run writes or those outputs is an
            error.

    Raises:
        Boxes2PixelsError: no images match ``source``, ``out`` is a source folder, ``out``
            holds files this run would write (without ``overwrite``), or a setting the
            model cannot run (see ``plan_inference``).
    """
    start = time.perf_counter()
    images, ignored = scan_images(source)
    if not images:
        raise Boxes2PixelsError(f"{source}: no images found (file, folder or glob)" + (
            f"; {describe_unsupported(ignored)}" if ignored else ""))  # fmt: skip
    out = Path(out)
    names = _plan_outputs(source, images, out, json)
    asked = dict(tile=tile, tile_size=tile_size, tile_overlap=tile_overlap, imgsz=imgsz)
    asked.update(precision=precision, runtime=runtime, device=device)
    asked.update(overlay=overlay, json=json, palette=palette)
    identity = {"model_sha256": model_sha256(model), "asked": asked}
    stems = {p: out / names[p] for p in images}
    folder = plan_folder(
        out, stems, identity, overlay=overlay, json_report=json, overwrite=overwrite
    )
    if out.is_dir():
        remove_stale_temps(out)  # temporary files of a run killed mid-write
    loaded_model = load_model(model, runtime=runtime, device=device, revision=revision)
    plan = plan_inference(
        loaded_model, tile=tile, tile_size=tile_size, tile_overlap=tile_overlap, imgsz=imgsz,
        precision=precision, batch_size=batch_size,
    )  # fmt: skip
    class_names = list(loaded_model.class_names)
    for path in folder.remove:  # --overwrite, now that the model has loaded
        path.unlink(missing_ok=True)
    summary = PredictSummary(out=out, random_backbone=backbone_is_random(loaded_model), plan=plan)
    summary.ignored = ignored
    summary.resumed = len(images) - len(folder.todo)
    started = {"finished": False, **identity, "class_names": class_names}
    write_json_atomic(out / SUMMARY_NAME, started)  # a rerun after a kill resumes by it
    journal = Journal(out, resume=bool(folder.resumed))
    try:
        _predict_all(
            loaded_model, folder.todo, stems, plan, summary, class_names, journal, progress,
            overlay=overlay, json=json, alpha=alpha, palette=palette,
        )  # fmt: skip
    except BaseException:
        journal.close()  # a rerun with the same model and settings resumes
        raise
    summary.seconds = time.perf_counter() - start
    settings = {
        "asked": asked,
        "ran": {**plan.to_dict(), "windows": summary.windows},
        "model_sha256": identity["model_sha256"],
    }
    _write_summary(model, summary, class_names, settings, folder.resumed)
    journal.finish()
    return summary


def _predict_all(
    loaded_model: Any,
    images: list[Path],
    stems: dict[Path, Path],
    plan: InferencePlan,
    summary: PredictSummary,
    class_names: list[str],
    journal: Journal,
    progress: bool,
    *,
    overlay: bool,
    json: bool,
    alpha: float,
    palette: bool,
) -> None:
    """Predict ``images`` and write their files, recording each finished image in the
    journal."""
    with _progress(progress) as bar:
        task = bar.add_task("predict", total=len(images)) if bar is not None else None
        tiles = bar.add_task("tiles", total=None, visible=False) if bar and plan.tiled else None

        def on_tiles(done: int, total: int) -> None:
            if bar is not None and tiles is not None:
                bar.update(tiles, completed=done, total=total, visible=True)

        for group in _batches(images, 1 if plan.tiled else plan.batch_size):
            loaded = _read_group(group, summary)
            if not loaded:
                continue
            result = segment(
                loaded_model, [img for _, img in loaded], plan, callback=on_tiles
            )  # fmt: skip
            summary.windows += result.windows
            for (path, img), pred in zip(loaded, result.labels, strict=True):
                files = _write_outputs(
                    summary, stems[path], path, img, pred, class_names,
                    overlay=overlay, json=json, alpha=alpha, palette=palette,
                )  # fmt: skip
                journal.add([f.relative_to(summary.out).as_posix() for f in files])
            if bar is not None:
                bar.advance(task, len(group))


def _write_summary(
    model: Any,
    summary: PredictSummary,
    class_names: list[str],
    settings: dict[str, Any],
    resumed: list[str],
) -> None:
    """Write ``OUT/b2p_predict.json``: the model, classes, counts, skipped files, settings,
    every output (``resumed``: those of images finished before a kill)."""
    write_json_atomic(
        summary.out / SUMMARY_NAME,
        {
            "finished": True,
            "model": type(model).__name__ if hasattr(model, "predict") else str(model),
            "random_backbone": summary.random_backbone,
            "class_names": class_names,
            "images": summary.images + summary.resumed,
            "resumed": summary.resumed,
            "skipped": [{"image": str(p), "reason": r} for p, r in summary.skipped],
            "ignored": summary.ignored,
            "outputs": sorted(
                [
                    *resumed,
                    *(
                        p.relative_to(summary.out).as_posix()
                        for p in (*summary.masks, *summary.overlays, *summary.reports)
                    ),
                ]
            ),
            "settings": settings,
            "seconds": round(summary.seconds, 3),
        },
    )
