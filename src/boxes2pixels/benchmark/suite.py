"""``run_benchmark``: train, predict and score each run of a suite on one dataset, resuming
finished runs, then write the summary and panels."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Boxes2PixelsError
from .runs import RESULT_NAME, RUN_TITLES, STUDENT_OVERRIDES, RunResult, parse_runs, run_settings
from .summary import summary_notes, write_panels, write_summary


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced."""

    out: Path
    runs: list[RunResult]
    skipped: list[str] = field(default_factory=list)
    summary_csv: Path = Path()
    summary_md: Path = Path()
    panels: list[Path] = field(default_factory=list)


def _build_model(
    name: str,
    config: Any,
    class_names: list[str],
    encoder_init: str,
    encoder_weights: dict[str, str | Path] | None,
) -> Any:
    if name in STUDENT_OVERRIDES:
        from ..distill import build_student

        return build_student(config, class_names)
    from ..baselines import BaselineModel

    return BaselineModel(
        name,
        num_classes=len(class_names),
        class_names=class_names,
        encoder_init=encoder_init,
        encoder_weights=(encoder_weights or {}).get(name),
        imgsz=config.imgsz,
    )


def _predict_split(model: Any, dataset: Any, split: str, pred_dir: Path, *, config: Any) -> None:
    """Write the model's label map of every image of ``split`` into ``pred_dir``."""
    from ..data.labelmaps import write_mask
    from ..io import read_image

    images = dataset.images(split)
    for start in range(0, len(images), config.batch):
        group = images[start : start + config.batch]
        arrays = [read_image(p) for p in group]
        preds = model.predict(
            arrays, imgsz=config.imgsz, batch_size=config.batch, precision=config.precision
        )
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
    split: str,
    encoder_init: str,
    encoder_weights: dict[str, str | Path] | None,
    say: Callable[[str], None],
) -> RunResult:
    """Train (or resume) run ``name``, predict ``split``, score it and write ``result.json``."""
    import torch

    from ..distill import CHECKPOINT_NAME, Distiller, build_datasets
    from ..evaluate import evaluate
    from ..inference import load_model
    from ..io import write_json_atomic

    train_dir = run_dir / "train"
    resume = (train_dir / CHECKPOINT_NAME).is_file()
    config = base.model_copy(
        update={
            **STUDENT_OVERRIDES.get(name, {}),
            "out": train_dir,
            "resume": resume,
            "overwrite": not resume,
        }
    )
    torch.manual_seed(config.seed)
    model = _build_model(name, config, class_names, encoder_init, encoder_weights)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_data, val_data = build_datasets(config)
    say(f"{name}: training {config.epochs} epochs" + (" (resuming)" if resume else ""))
    started = time.perf_counter()
    fit = Distiller(model, config).fit(train_data, val_data)
    seconds = time.perf_counter() - started

    say(f"{name}: predicting the {split} split")
    pred_root = run_dir / "pred"
    trained = load_model(fit.best_dir, device=config.device)
    _predict_split(trained, dataset, split, pred_root / split, config=config)
    result = evaluate(masks=gt, pred=pred_root, data_yaml=config.data, split=split, progress=False)
    run = RunResult(
        name=name,
        title=RUN_TITLES[name],
        scores=result.to_dict(),
        params_total=total,
        params_trainable=trainable,
        epochs=fit.epochs_completed,
        best_epoch=fit.best_epoch,
        train_seconds=seconds,
        init=(
            f"backbone {config.backbone_init}"
            if name in STUDENT_OVERRIDES
            else f"encoder {encoder_init}"
        ),
        pred_dir=pred_root / split,
        model_dir=fit.best_dir,
        settings=run_settings(config, name, split, encoder_init),
    )
    write_json_atomic(run_dir / RESULT_NAME, run.to_json())
    return run


def _finished_run(
    run_dir: Path, name: str, base: Any, split: str, encoder_init: str
) -> RunResult | None:
    """The run's earlier result, or ``None`` when it has not finished.

    Raises:
        Boxes2PixelsError: ``result.json`` is unreadable or the run finished with other
            settings.
    """
    result_file = run_dir / RESULT_NAME
    if not result_file.is_file():
        return None
    try:
        earlier = RunResult.from_json(json.loads(result_file.read_text("utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise Boxes2PixelsError(
            f"{result_file}: unreadable run result ({exc}); delete it to redo the run"
        ) from exc
    wanted = run_settings(
        base.model_copy(update=STUDENT_OVERRIDES.get(name, {})), name, split, encoder_init
    )
    changed = {
        k: (earlier.settings.get(k), v) for k, v in wanted.items() if earlier.settings.get(k) != v
    }
    if changed:
        what = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in changed.items())
        raise Boxes2PixelsError(
            f"{result_file}: run '{name}' finished with other settings ({what}); "
            f"choose another --out or delete {run_dir} to redo it"
        )
    return earlier


def _load_dataset(data_yaml: Path, masks: Path, gt: Path, split: str, panels: int) -> Any:
    """The dataset, after checking the folders and the split exist."""
    from ..data.yolo import load_data_yaml

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
    return dataset


def _base_config(config: Any | None, overrides: dict[str, Any]) -> Any:
    """``config`` (default ``TrainConfig()``) with the given values that are not ``None``."""
    from ..config import TrainConfig

    base = config if config is not None else TrainConfig()
    update = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig.model_validate({**base.model_dump(), **update})


def _run_all(
    names: list[str],
    *,
    out: Path,
    base: Any,
    split: str,
    encoder_init: str,
    say: Callable[[str], None],
    **kwargs: Any,
) -> tuple[list[RunResult], list[str]]:
    """Every run of ``names``, in order (finished runs reused); ``(runs, names reused)``.

    ``kwargs`` are the other keyword arguments of :func:`_run_one`.
    """
    finished: list[RunResult] = []
    skipped: list[str] = []
    for name in names:
        run_dir = out / "runs" / name
        earlier = _finished_run(run_dir, name, base, split, encoder_init)
        if earlier is not None:
            say(f"{name}: finished earlier, skipped ({run_dir / RESULT_NAME})")
            finished.append(earlier)
            skipped.append(name)
            continue
        finished.append(
            _run_one(
                name,
                base=base,
                run_dir=run_dir,
                split=split,
                encoder_init=encoder_init,
                say=say,
                **kwargs,
            )
        )
    return finished, skipped


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
    backbone: str | None = None,
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
        out: output folder (see :mod:`boxes2pixels.benchmark`).
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
        backbone_weights: a local backbone weights file for the students.
        backbone: the students' timm backbone name (default: ``config``'s, else DINOv2 ViT-S/14).
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
    names = parse_runs(suite, runs)
    data_yaml, masks, gt, out = Path(data_yaml), Path(masks), Path(gt), Path(out)
    dataset = _load_dataset(data_yaml, masks, gt, split, panels)
    if any(n not in STUDENT_OVERRIDES for n in names):
        from ..baselines import _import_smp

        _import_smp()
    class_names = ["background", *dataset.names]
    base = _base_config(
        config,
        {
            "data": data_yaml,
            "masks": masks,
            "progress": progress,
            "epochs": epochs,
            "imgsz": imgsz,
            "batch": batch,
            "device": device,
            "precision": precision,
            "backbone": backbone,
            "backbone_init": backbone_init,
            "backbone_mode": backbone_mode,
            "backbone_weights": backbone_weights,
        },
    )
    finished, skipped = _run_all(
        names,
        base=base,
        out=out,
        class_names=class_names,
        dataset=dataset,
        gt=gt,
        split=split,
        encoder_init=encoder_init,
        encoder_weights=encoder_weights,
        say=say or (lambda _msg: None),
    )
    notes = summary_notes(base, finished, split, len(dataset.images(split)), encoder_init)
    csv_path, md_path = write_summary(out, finished, class_names, notes)
    return BenchmarkResult(
        out=out,
        runs=finished,
        skipped=skipped,
        summary_csv=csv_path,
        summary_md=md_path,
        panels=write_panels(out, finished, dataset, split, gt, class_names, limit=panels),
    )
