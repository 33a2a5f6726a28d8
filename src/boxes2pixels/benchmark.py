"""The benchmark suite: the student, its ablations and three baselines on one dataset.

Every run trains on the same pseudo-masks with the same recipe (loss, schedule,
augmentation, EMA; :class:`~boxes2pixels.distill.Distiller`), predicts the test split and is
scored against ground-truth masks. Runs:

====================  ==========================================================
``student``           Boxes2Pixels as in the paper
``student-no-sc``     without online self-correction
``student-no-binary`` without the binary head (fine loss only)
``student-no-detail`` without the CNN detail branch
``unet``              U-Net, ResNet34 encoder (smp)
``deeplabv3``         DeepLabV3, EfficientNet-B2 encoder (smp)
``segformer``         SegFormer-B2 (MiT-B2 encoder, smp)
====================  ==========================================================

Suites: ``final`` (paper Table 1: student and the three baselines), ``ablations`` (the
student and its three ablations), ``all``.

Layout of ``OUT``::

    OUT/runs/<run>/train/        the Distiller's run folder (best/, last.ckpt, metrics.csv)
    OUT/runs/<run>/pred/<split>/ predicted masks of the evaluated split
    OUT/runs/<run>/result.json   scores and run facts; its presence marks the run finished
    OUT/summary.csv, OUT/summary.md, OUT/panels/*.png

Resumable: a run with ``result.json`` is skipped; an interrupted run continues from its
``last.ckpt``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import Boxes2PixelsError
from .metrics import SUMMARY_METRICS

SUITES: dict[str, tuple[str, ...]] = {
    "final": ("student", "unet", "deeplabv3", "segformer"),
    "ablations": ("student", "student-no-sc", "student-no-binary", "student-no-detail"),
    "all": (
        "student",
        "student-no-sc",
        "student-no-binary",
        "student-no-detail",
        "unet",
        "deeplabv3",
        "segformer",
    ),
}
RUN_TITLES: dict[str, str] = {
    "student": "Boxes2Pixels",
    "student-no-sc": "Boxes2Pixels w/o self-correction",
    "student-no-binary": "Boxes2Pixels w/o binary head",
    "student-no-detail": "Boxes2Pixels w/o detail branch",
    "unet": "U-Net (ResNet34)",
    "deeplabv3": "DeepLabV3 (EfficientNet-B2)",
    "segformer": "SegFormer-B2",
}
STUDENT_OVERRIDES: dict[str, dict[str, Any]] = {
    "student": {},
    "student-no-sc": {"self_correction": False},
    "student-no-binary": {"binary_head": False},
    "student-no-detail": {"detail_branch": False},
}
RESULT_NAME = "result.json"
# The paper's Table 1 (manually annotated test set), shown for reference in summary.md.
PAPER_TABLE_1 = {
    "U-Net": (0.7057, 0.5629, 0.7036, 0.5427),
    "DeepLabV3-B2": (0.6867, 0.5342, 0.6955, 0.5331),
    "SegFormer-B2": (0.7231, 0.5881, 0.6939, 0.5312),
    "Boxes2Pixels": (0.7661, 0.6523, 0.7674, 0.6226),
}


def parse_runs(suite: str = "final", runs: str | Sequence[str] | None = None) -> list[str]:
    """Run names of a suite, or the explicit ``runs`` (comma-separated or a sequence)."""
    if runs:
        names = [r.strip().lower() for r in (runs.split(",") if isinstance(runs, str) else runs)]
        names = [n for n in names if n]
        unknown = [n for n in names if n not in RUN_TITLES]
        if unknown:
            raise Boxes2PixelsError(
                f"unknown run(s) {', '.join(unknown)} (choose from {', '.join(RUN_TITLES)})"
            )
        return list(dict.fromkeys(names))
    if suite not in SUITES:
        raise Boxes2PixelsError(f"unknown suite '{suite}' (choose from {', '.join(SUITES)})")
    return list(SUITES[suite])


@dataclass
class RunResult:
    """One finished run: its scores on the evaluated split and facts about it."""

    name: str
    title: str
    scores: dict[str, Any]
    params_total: int
    params_trainable: int
    epochs: int
    best_epoch: int | None
    train_seconds: float
    init: str
    pred_dir: Path
    model_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict (what ``result.json`` holds)."""
        return {
            "name": self.name,
            "title": self.title,
            "scores": self.scores,
            "params_total": self.params_total,
            "params_trainable": self.params_trainable,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "train_seconds": round(self.train_seconds, 2),
            "init": self.init,
            "pred_dir": str(self.pred_dir),
            "model_dir": str(self.model_dir),
            "settings": self.settings,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_json`."""
        return cls(
            name=data["name"],
            title=data["title"],
            scores=data["scores"],
            params_total=int(data["params_total"]),
            params_trainable=int(data["params_trainable"]),
            epochs=int(data["epochs"]),
            best_epoch=data.get("best_epoch"),
            train_seconds=float(data.get("train_seconds", 0.0)),
            init=str(data.get("init", "")),
            pred_dir=Path(data["pred_dir"]),
            model_dir=Path(data["model_dir"]),
            settings=dict(data.get("settings", {})),
        )


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced."""

    out: Path
    runs: list[RunResult]
    skipped: list[str] = field(default_factory=list)
    summary_csv: Path = Path()
    summary_md: Path = Path()
    panels: list[Path] = field(default_factory=list)


def _settings(config: Any, name: str, split: str, encoder_init: str) -> dict[str, Any]:
    """The settings that make two runs comparable (checked when a finished run is reused)."""
    keys = ("epochs", "imgsz", "batch", "seed", "lr", "self_correction", "augment")
    settings = {k: getattr(config, k) for k in keys}
    settings["split"] = split
    if name in STUDENT_OVERRIDES:
        settings["backbone"] = config.backbone
        settings["backbone_init"] = config.backbone_init
        settings["backbone_mode"] = config.backbone_mode
    else:
        settings["encoder_init"] = encoder_init
    settings.update(STUDENT_OVERRIDES.get(name, {}))
    return settings


def _build_model(
    name: str,
    config: Any,
    class_names: list[str],
    encoder_init: str,
    encoder_weights: dict[str, str | Path] | None,
) -> Any:
    if name in STUDENT_OVERRIDES:
        from .distill.distiller import build_student

        return build_student(config, class_names)
    from .baselines import BaselineModel

    return BaselineModel(
        name,
        num_classes=len(class_names),
        class_names=class_names,
        encoder_init=encoder_init,
        encoder_weights=(encoder_weights or {}).get(name),
        imgsz=config.imgsz,
    )


def _load_trained(name: str, folder: Path) -> Any:
    if name in STUDENT_OVERRIDES:
        from .predict import load_student

        return load_student(folder, "cpu")
    from .baselines import BaselineModel

    return BaselineModel.from_pretrained(folder)


def _predict_split(
    model: Any,
    dataset: Any,
    split: str,
    pred_dir: Path,
    *,
    imgsz: int,
    batch_size: int,
    device: str,
    precision: str,
) -> None:
    from .device import resolve_device
    from .io import read_image, write_mask

    model.to(resolve_device(device))
    images = dataset.images(split)
    for start in range(0, len(images), batch_size):
        group = images[start : start + batch_size]
        arrays = [read_image(p) for p in group]
        preds = model.predict(arrays, imgsz=imgsz, batch_size=batch_size, precision=precision)
        for path, pred in zip(group, preds, strict=True):
            write_mask(pred_dir / dataset.mask_name(path, split), pred)


def _run_one(
    name: str,
    *,
    base: Any,
    run_dir: Path,
    class_names: list[str],
    dataset: Any,
    gt: Path,
    data_yaml: Path,
    split: str,
    encoder_init: str,
    encoder_weights: dict[str, str | Path] | None,
    say: Callable[[str], None],
) -> RunResult:
    import torch

    from .distill.distiller import CHECKPOINT_NAME, Distiller, build_datasets
    from .evaluate import evaluate
    from .io import write_json_atomic

    train_dir = run_dir / "train"
    overrides = dict(STUDENT_OVERRIDES.get(name, {}))
    resume = (train_dir / CHECKPOINT_NAME).is_file()
    config = base.model_copy(
        update={**overrides, "out": train_dir, "resume": resume, "overwrite": not resume}
    )
    torch.manual_seed(config.seed)
    model = _build_model(name, config, class_names, encoder_init, encoder_weights)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if name in STUDENT_OVERRIDES:
        init = f"backbone {config.backbone_init}"
    else:
        init = f"encoder {encoder_init}"
    train_data, val_data = build_datasets(config)
    say(f"{name}: training {config.epochs} epochs" + (" (resuming)" if resume else ""))
    started = time.perf_counter()
    fit = Distiller(model, config).fit(train_data, val_data)
    seconds = time.perf_counter() - started

    say(f"{name}: predicting the {split} split")
    trained = _load_trained(name, fit.best_dir)
    pred_root = run_dir / "pred"
    _predict_split(
        trained,
        dataset,
        split,
        pred_root / split,
        imgsz=config.imgsz,
        batch_size=config.batch,
        device=config.device,
        precision=config.precision,
    )
    result = evaluate(masks=gt, pred=pred_root, data_yaml=data_yaml, split=split, progress=False)
    run = RunResult(
        name=name,
        title=RUN_TITLES[name],
        scores=result.to_dict(),
        params_total=total,
        params_trainable=trainable,
        epochs=fit.epochs_completed,
        best_epoch=fit.best_epoch,
        train_seconds=seconds,
        init=init,
        pred_dir=pred_root / split,
        model_dir=fit.best_dir,
        settings=_settings(config, name, split, encoder_init),
    )
    write_json_atomic(run_dir / RESULT_NAME, run.to_json())
    return run


def run_benchmark(
    data_yaml: str | Path,
    masks: str | Path,
    gt: str | Path,
    out: str | Path,
    *,
    suite: str = "final",
    runs: str | Sequence[str] | None = None,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    backbone_init: str | None = None,
    backbone_mode: str | None = None,
    backbone_weights: str | Path | None = None,
    encoder_init: str = "imagenet",
    encoder_weights: dict[str, str | Path] | None = None,
    split: str = "test",
    panels: int = 8,
    config: Any | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> BenchmarkResult:
    """Train, predict and score each run of a suite; write the summary and panels.

    Args:
        data_yaml: the YOLO dataset's ``data.yaml`` (train, val and ``split`` splits).
        masks: pseudo-mask folder (``b2p label`` output) used for training and validation.
        gt: ground-truth masks of ``split`` (``gt/<split>/`` or ``gt``).
        out: output folder (see the module docstring).
        suite: ``final``, ``ablations`` or ``all``.
        runs: explicit run names instead of a suite.
        epochs: training epochs of every run (default: ``config``'s, else ``TrainConfig``'s).
        imgsz: training and prediction size of every run (default: as ``epochs``).
        batch: batch size of every run (default: as ``epochs``).
        device: device of every run (default: as ``epochs``).
        precision: mixed precision of every run (default: as ``epochs``).
        backbone_init: the students' backbone initialisation (``pretrained`` or ``random``).
        backbone_mode: the students' backbone training (``bitfit``, ``frozen`` or ``full``;
            a random backbone needs ``full``).
        backbone_weights: a local DINOv2 weights file for the students.
        encoder_init: the baselines' encoder initialisation (``imagenet`` or ``random``).
        encoder_weights: per baseline name, a local smp encoder weights file.
        split: the split that is predicted and scored.
        panels: number of test images shown in comparison panels (0: none).
        config: a base ``TrainConfig`` for everything else (loss, schedule, augmentation ...).
        progress: show the Distiller's progress display.
        say: called with a one-line message at each stage.

    Returns:
        A :class:`BenchmarkResult` (finished runs in suite order).

    Raises:
        Boxes2PixelsError: bad arguments, missing data, unavailable weights, or a run folder
            whose settings conflict with the requested ones.
    """
    from .config import TrainConfig
    from .data.yolo import load_data_yaml

    names = parse_runs(suite, runs)
    data_yaml, masks, gt, out = Path(data_yaml), Path(masks), Path(gt), Path(out)
    if not masks.is_dir():
        raise Boxes2PixelsError(f"{masks}: pseudo-mask folder not found")
    if not gt.is_dir():
        raise Boxes2PixelsError(f"{gt}: ground-truth mask folder not found")
    if panels < 0:
        raise Boxes2PixelsError("panels must not be negative")
    dataset = load_data_yaml(data_yaml)
    if split not in dataset.splits:
        raise Boxes2PixelsError(f"{data_yaml}: no '{split}' split to evaluate on")
    if not dataset.images(split):
        raise Boxes2PixelsError(f"{data_yaml}: the '{split}' split has no images")
    if any(n not in STUDENT_OVERRIDES for n in names):
        from .baselines import _import_smp

        _import_smp()
    class_names = ["background", *dataset.names]
    base = config if config is not None else TrainConfig()
    update: dict[str, Any] = {"data": data_yaml, "masks": masks, "progress": progress}
    for key, value in (
        ("epochs", epochs),
        ("imgsz", imgsz),
        ("batch", batch),
        ("device", device),
        ("precision", precision),
        ("backbone_init", backbone_init),
        ("backbone_mode", backbone_mode),
        ("backbone_weights", backbone_weights),
    ):
        if value is not None:
            update[key] = value
    base = TrainConfig.model_validate({**base.model_dump(), **update})
    say = say or (lambda _msg: None)

    finished: list[RunResult] = []
    skipped: list[str] = []
    for name in names:
        run_dir = out / "runs" / name
        result_file = run_dir / RESULT_NAME
        if result_file.is_file():
            try:
                earlier = RunResult.from_json(json.loads(result_file.read_text("utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise Boxes2PixelsError(
                    f"{result_file}: unreadable run result ({exc}); delete it to redo the run"
                ) from exc
            wanted = _settings(
                base.model_copy(update=STUDENT_OVERRIDES.get(name, {})), name, split, encoder_init
            )
            changed = {
                k: (earlier.settings.get(k), v)
                for k, v in wanted.items()
                if earlier.settings.get(k) != v
            }
            if changed:
                what = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in changed.items())
                raise Boxes2PixelsError(
                    f"{result_file}: run '{name}' finished with other settings ({what}); "
                    f"choose another --out or delete {run_dir} to redo it"
                )
            say(f"{name}: finished earlier, skipped ({result_file})")
            finished.append(earlier)
            skipped.append(name)
            continue
        finished.append(
            _run_one(
                name,
                base=base,
                run_dir=run_dir,
                class_names=class_names,
                dataset=dataset,
                gt=gt,
                data_yaml=data_yaml,
                split=split,
                encoder_init=encoder_init,
                encoder_weights=encoder_weights,
                say=say,
            )
        )
    notes = _notes(base, finished, split, len(dataset.images(split)), encoder_init)
    csv_path, md_path = write_summary(out, finished, class_names, notes)
    panel_paths = write_panels(out, finished, dataset, split, gt, class_names, limit=panels)
    return BenchmarkResult(
        out=out,
        runs=finished,
        skipped=skipped,
        summary_csv=csv_path,
        summary_md=md_path,
        panels=panel_paths,
    )


def _notes(
    base: Any, runs: list[RunResult], split: str, images: int, encoder_init: str
) -> list[str]:
    notes = [
        f"Scored on the '{split}' split ({images} images) against ground-truth masks; every run "
        f"trained on the same pseudo-masks: {base.epochs} epochs at {base.imgsz}px, batch "
        f"{base.batch}, the same loss, schedule, augmentation and EMA.",
        "Baselines have no binary head: they train with the fine loss (class-weighted "
        "cross-entropy with self-correction), as in the research code.",
    ]
    randoms = [r.name for r in runs if r.init.endswith("random")]
    if randoms:
        notes.append(
            f"Randomly initialised weights (not pretrained) in: {', '.join(randoms)}; these "
            "figures do not reflect the method's real accuracy."
        )
    return notes


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.4f}"


def write_summary(
    out: Path, runs: Sequence[RunResult], class_names: Sequence[str], notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` (paper Table 1 layout plus more columns)."""
    from .io import write_text_atomic

    defect_names = list(class_names[1:])
    header = ["run", "model", *SUMMARY_METRICS, *(f"iou_{n}" for n in class_names)]
    header += ["params_total", "params_trainable", "epochs", "best_epoch", "train_seconds", "init"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in runs:
        per_class = r.scores.get("per_class", {})
        writer.writerow(
            [
                r.name,
                r.title,
                *("" if r.scores.get(k) is None else r.scores[k] for k in SUMMARY_METRICS),
                *(
                    "" if per_class.get(n, {}).get("iou") is None else per_class[n]["iou"]
                    for n in class_names
                ),
                r.params_total,
                r.params_trainable,
                r.epochs,
                "" if r.best_epoch is None else r.best_epoch,
                round(r.train_seconds, 2),
                r.init,
            ]
        )
    csv_path = out / "summary.csv"
    write_text_atomic(csv_path, buf.getvalue())

    lines = [
        "# Benchmark",
        "",
        "| Model | mIoU | anomaly mIoU | anomaly F1 | binary IoU | binary precision "
        "| binary recall | " + " | ".join(f"IoU {n}" for n in defect_names) + " |",
        "|---" * (7 + len(defect_names)) + "|",
    ]
    for r in runs:
        per_class = r.scores.get("per_class", {})
        cells = [_fmt(r.scores.get(k)) for k in ("miou", "anomaly_miou", "anomaly_f1")]
        cells += [
            _fmt(r.scores.get(k)) for k in ("binary_iou", "binary_precision", "binary_recall")
        ]
        cells += [_fmt(per_class.get(n, {}).get("iou")) for n in defect_names]
        lines.append(f"| {r.title} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| Model | params (M) | trainable (M) | epochs | best epoch | train time (s) | init |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.title} | {r.params_total / 1e6:.1f} | {r.params_trainable / 1e6:.1f} "
            f"| {r.epochs} | {r.best_epoch if r.best_epoch is not None else '–'} "
            f"| {r.train_seconds:.0f} | {r.init} |"
        )
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    lines += [
        "",
        "For reference, the paper's Table 1 (its wind-turbine test set, SAM pseudo-masks):",
        "",
        "| Model | mIoU | anomaly mIoU | anomaly F1 | binary IoU |",
        "|---|---|---|---|---|",
        *(
            f"| {m} | " + " | ".join(f"{v:.4f}" for v in vals) + " |"
            for m, vals in PAPER_TABLE_1.items()
        ),
        "",
    ]
    md_path = out / "summary.md"
    write_text_atomic(md_path, "\n".join(lines))
    return csv_path, md_path


def _choose_panel_images(names: list[str], gt_dir: Path, limit: int) -> list[str]:
    """Up to ``limit`` mask names, those with defects in the ground truth first."""
    from .io import read_mask

    with_defects, without = [], []
    for name in names:
        path = gt_dir / name
        if not path.is_file():
            continue
        mask = read_mask(path)
        (with_defects if ((mask > 0) & (mask != 255)).any() else without).append(name)
        if len(with_defects) >= limit:
            break
    return (with_defects + without)[:limit]


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    import cv2

    if image.shape[0] <= height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)


def write_panels(
    out: Path,
    runs: Sequence[RunResult],
    dataset: Any,
    split: str,
    gt: Path,
    class_names: Sequence[str],
    *,
    limit: int = 8,
    height: int = 320,
) -> list[Path]:
    """One PNG per chosen test image: image, ground truth, then each run's prediction."""
    from .evaluate import split_dir
    from .io import read_image, read_mask, write_rgb
    from .viz import add_legend, overlay_mask, panel

    if limit <= 0 or not runs:
        return []
    gt_dir = split_dir(gt, split)
    by_name = {dataset.mask_name(p, split): p for p in dataset.images(split)}
    chosen = _choose_panel_images(sorted(by_name), gt_dir, limit)
    written = []
    for name in chosen:
        image = read_image(by_name[name])
        truth = read_mask(gt_dir / name)
        tiles = [_fit_height(image, height), _fit_height(overlay_mask(image, truth), height)]
        titles = ["image", "ground truth"]
        for r in runs:
            pred_path = r.pred_dir / name
            pred = read_mask(pred_path) if pred_path.is_file() else np.zeros_like(truth)
            tiles.append(_fit_height(overlay_mask(image, pred), height))
            titles.append(r.name)
        row = add_legend(panel(tiles, titles), list(class_names))
        path = out / "panels" / (Path(name).with_suffix("").as_posix().replace("/", "__") + ".png")
        write_rgb(path, row)
        written.append(path)
    return written
