"""Synthetic datasets on disk: images, YOLO labels, exact masks, ``data.yaml``, ``synth.json``.

Image ``i`` of split ``s`` is drawn from its own generator seeded by ``(seed, s, i)``
(:func:`scene_rng`), so generating a subset reproduces the same images.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from ...errors import ConfigError, DatasetError
from ...io import (
    remove_outputs,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from ..labelmaps import write_mask
from .config import CLASS_NAMES, DEFAULT_SIZE, SynthConfig
from .scene import Scene, SynthDefect, render_scene

MANIFEST_NAME = "synth.json"
_SPLITS = ("train", "val", "test")
# Files and folders that generate_dataset writes (and removes first when overwriting).
_OUTPUTS = ("images", "labels", "gt_masks", "data.yaml", MANIFEST_NAME)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of every other image."""
    key = zlib.crc32(split.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, int(index)]))


def image_name(split: str, index: int) -> str:
    """File stem of image ``index`` of ``split`` (unique across splits)."""
    return f"{split}_{index:05d}"


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(
                f"{out}: folder is not empty; use a new or empty folder, or overwrite the "
                "generated dataset there (b2p synth --overwrite, or overwrite=True)"
            )
        remove_outputs(out, _OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)


def _check_args(counts: dict[str, int], w: int, h: int) -> None:
    if any(n < 0 for n in counts.values()):
        raise ConfigError(f"image counts must not be negative, got {counts}")
    if sum(counts.values()) == 0:
        raise ConfigError("nothing to generate: train, val and test are all 0")
    if w < 64 or h < 64:
        raise ConfigError(f"image size must be at least 64×64, got {w}×{h}")


def _defect_record(d: SynthDefect) -> dict[str, Any]:
    """One defect as ``synth.json`` lists it."""
    return {
        "class": CLASS_NAMES[d.cls],
        "kind": d.kind,
        "bbox": list(d.bbox),
        "box": None if d.box is None else [round(float(v), 2) for v in d.box],
        "pixels": int(d.mask.sum()),
        "strength": round(d.strength, 3),
    }


def _write_split(
    out: Path,
    split: str,
    n: int,
    seed: int,
    size: tuple[int, int],
    cfg: SynthConfig,
    report: Callable[[int], None],
    done: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the ``n`` images of ``split``; their counts and their ``synth.json`` records.

    ``report(k)`` is called after each image with ``k`` images done in all (``done`` before).
    """
    stats: dict[str, Any] = {
        "images": n,
        "with_defects": 0,
        "boxes": dict.fromkeys(CLASS_NAMES, 0),
        "defects": dict.fromkeys(CLASS_NAMES, 0),
        "unboxed": 0,
    }
    records: dict[str, Any] = {}
    for i in range(n):
        name = image_name(split, i)
        scene = render_scene(scene_rng(seed, split, i), size, cfg)
        _write_scene(out, split, name, scene, empty_label_file=i % 2 == 0)
        stats["with_defects"] += bool(scene.defects)
        for d in scene.defects:
            stats["defects"][CLASS_NAMES[d.cls]] += 1
            if d.boxed:
                stats["boxes"][CLASS_NAMES[d.cls]] += 1
            else:
                stats["unboxed"] += 1
        records[name] = {
            "jpeg_quality": scene.jpeg_quality,
            "defects": [_defect_record(d) for d in scene.defects],
        }
        report(done + i + 1)
    return stats, records


def _with_progress(
    progress: bool | Callable[[int, int], None],
    total: int,
    work: Callable[[Callable[[int], None]], None],
) -> None:
    """Run ``work(report)``; ``report(done)`` updates a progress bar or calls ``progress``."""
    if progress is True:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("generating blade images", total=total)
            work(lambda done: bar.update(task, completed=done))
    elif callable(progress):
        callback = progress
        work(lambda done: callback(done, total))
    else:
        work(lambda done: None)


def generate_dataset(
    out: str | Path,
    *,
    train: int = 200,
    val: int = 50,
    test: int = 50,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    config: SynthConfig | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[int, int], None] = False,
) -> Path:
    """Write a synthetic YOLO dataset with exact ground-truth masks.

    Layout: ``out/data.yaml``, ``out/images/<split>/<name>.jpg``,
    ``out/labels/<split>/<name>.txt`` (defect-free images alternately get an empty label file
    or none), ``out/gt_masks/<split>/<name>.png`` (0 background, 1 dirt, 2 damage) and
    ``out/synth.json`` (parameters, per-split counts and every defect with its tight box,
    annotation box or ``null`` when unboxed). ``data.yaml`` is written last, so a dataset
    without it is incomplete. Splits with 0 images are left out of ``data.yaml``.

    Args:
        out: output folder; it must be new or empty unless ``overwrite``.
        train: number of training images.
        val: number of validation images.
        test: number of test images.
        size: ``(width, height)`` of every image.
        seed: the dataset seed; image ``i`` of a split is the same whatever the split sizes.
        config: scene parameters (``SynthConfig()`` when omitted).
        overwrite: replace the generated files (``images``, ``labels``, ``gt_masks``,
            ``data.yaml``, ``synth.json``) in a non-empty ``out``; other files are kept.
        progress: ``True`` shows a rich progress bar on stderr; a callable is called as
            ``progress(done, total)`` after each image.

    Returns:
        The path of ``data.yaml``.

    Raises:
        DatasetError: ``out`` is not empty (and ``overwrite`` is false) or not a folder.
        ConfigError: negative counts, no images at all, or an image size below 64×64 (also a
            ``ValueError``).
    """
    cfg = config or SynthConfig()
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    w, h = int(size[0]), int(size[1])
    _check_args(counts, w, h)
    out = Path(out)
    _prepare_out(out, overwrite)
    manifest: dict[str, Any] = {
        "generator": "boxes2pixels.data.synth",
        "seed": int(seed),
        "size": [w, h],
        "names": list(CLASS_NAMES),
        "config": asdict(cfg),
        "splits": {},
        "images": {},
    }

    def work(report: Callable[[int], None]) -> None:
        done = 0
        for split, n in counts.items():
            if n > 0:
                stats, records = _write_split(out, split, n, seed, (w, h), cfg, report, done)
                manifest["splits"][split] = stats
                manifest["images"][split] = records
                done += n

    _with_progress(progress, sum(counts.values()), work)
    write_json_atomic(out / MANIFEST_NAME, manifest)
    yaml_lines = ["path: .", *(f"{s}: images/{s}" for s in _SPLITS if counts[s] > 0), "names:"]
    yaml_lines += [f"  {i}: {name}" for i, name in enumerate(CLASS_NAMES)]
    yaml_path = out / "data.yaml"
    write_text_atomic(yaml_path, "\n".join(yaml_lines) + "\n")
    return yaml_path


def _write_scene(out: Path, split: str, name: str, scene: Scene, empty_label_file: bool) -> None:
    write_bytes_atomic(out / "images" / split / f"{name}.jpg", scene.jpeg_bytes())
    write_mask(out / "gt_masks" / split / f"{name}.png", scene.mask)
    text = scene.label_text()
    label = out / "labels" / split / f"{name}.txt"
    if text or empty_label_file:
        write_text_atomic(label, text)
    else:
        label.parent.mkdir(parents=True, exist_ok=True)


def load_manifest(root: str | Path) -> dict[str, Any]:
    """Read ``synth.json`` of a generated dataset (its parameters, counts and defects).

    Raises:
        DatasetError: the file is missing or not valid JSON.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: not found; is this a dataset made by b2p synth?") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc


def summary_table(manifest: dict[str, Any]) -> Table:
    """A table of a generated dataset (from :func:`load_manifest`): images, images with
    defects, boxes per class and unboxed defects, per split and in total."""
    width, height = manifest["size"]
    table = Table(title=f"synthetic blade dataset ({width}×{height}, seed {manifest['seed']})")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("with defects", justify="right")
    for name in CLASS_NAMES:
        table.add_column(f"{name} boxes", justify="right")
    table.add_column("unboxed defects", justify="right")
    totals = [0] * (3 + len(CLASS_NAMES))
    for split, stats in manifest["splits"].items():
        row = [stats["images"], stats["with_defects"]]
        row += [stats["boxes"][n] for n in CLASS_NAMES] + [stats["unboxed"]]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        table.add_row(split, *(str(v) for v in row))
    table.add_row("total", *(str(v) for v in totals), style="bold")
    return table
