"""The demo's stages (generate, label, train, predict, evaluate, ablation) and their resume
rules: a stage whose outputs exist is reused, an interrupted training run is resumed from its
checkpoint."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backbone import resolve_backbone_init
from .layout import SPLITS, DemoLayout, metrics_rows, read_teacher, save_state
from .settings import DemoSettings

logger = logging.getLogger(__name__)

MIN_CORRECTED_SHARE = 1e-4
"""The ablation is trained only when self-correction relabelled at least this share of the
training pixels in some epoch (0.01 %); below it both students come out practically equal."""


class StageLog:
    """Prints stage progress and records each stage's time in ``demo.json``.

    Args:
        layout: the demo folder.
        state: the content of ``demo.json`` (updated in place).
        progress: print the stages on stderr.
        total: the number of stages of this run.
    """

    def __init__(self, layout: DemoLayout, state: dict[str, Any], progress: bool, total: int):
        self.layout = layout
        self.state = state
        self.total = total
        self.count = 0
        self.reused: list[str] = []
        self.console: Any = None
        if progress:
            from rich.console import Console

            self.console = Console(stderr=True)

    def say(self, markup: str, plain: str = "") -> None:
        """Print one line (when ``progress``): ``markup`` as Rich markup, then ``plain`` as
        written (paths and messages never read as styles)."""
        if self.console is not None:
            from rich.markup import escape

            self.console.print(markup + escape(plain), highlight=False)

    def save(self) -> None:
        """Write ``demo.json``."""
        save_state(self.layout.out, self.state)

    @contextmanager
    def run(self, key: str, title: str) -> Iterator[None]:
        """Announce stage ``key``, time the block and record the time when it succeeds."""
        self.count += 1
        self.say(f"[bold cyan][{self.count}/{self.total}][/] {title}")
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.state["stages"][key] = {"seconds": round(seconds, 2), "done": True}
        self.save()
        self.say(f"      done in {seconds:.1f} s")

    def reuse(self, key: str, title: str) -> None:
        """Record stage ``key`` as reused from an earlier run."""
        self.count += 1
        self.reused.append(key)
        self.say(
            f"[bold cyan][{self.count}/{self.total}][/] {title}: [green]outputs exist, reused[/]"
        )

    def skip(self, title: str, why: str) -> None:
        """Announce a stage left out, and why."""
        self.count += 1
        self.say(
            f"[bold cyan][{self.count}/{self.total}][/] {title}: [yellow]skipped[/] ", f"({why})"
        )

    def seconds(self, key: str) -> float:
        """The recorded time of stage ``key`` (0 when it has none)."""
        return float(self.state["stages"].get(key, {}).get("seconds", 0.0))


# --------------------------------------------------------------------------------------------
# what exists


def labels_complete(layout: DemoLayout) -> bool:
    """Every image of every split has its pseudo-mask, and the manifest is written."""
    from ..data.yolo import load_data_yaml

    if not (layout.pseudo / "manifest.json").is_file():
        return False
    ds = load_data_yaml(layout.data_yaml)
    return all(
        (layout.pseudo / split / ds.mask_name(image, split)).is_file()
        for split in SPLITS
        for image in ds.images(split)
    )


def run_finished(run: Path, epochs: int) -> bool:
    """The training run has all its epochs and its best model."""
    return len(metrics_rows(run)) >= epochs and (run / "best" / "config.json").is_file()


def predictions_complete(pred: Path, run: Path, expected: int) -> bool:
    """``pred`` holds ``expected`` masks, written after the run's current best model."""
    from ..predict import SUMMARY_NAME

    summary = pred / SUMMARY_NAME
    weights = run / "best" / "model.safetensors"
    if not summary.is_file() or not weights.is_file():
        return False
    if summary.stat().st_mtime < weights.stat().st_mtime:
        return False
    return len(list(pred.rglob("*.png"))) == expected


# --------------------------------------------------------------------------------------------
# doing it


def train_run(config: Any) -> None:
    """Train the run of ``config`` unless it is finished; resume it from its checkpoint."""
    from ..distill import CHECKPOINT_NAME, train

    run = Path(config.out)
    if run_finished(run, config.epochs):
        return
    if (run / CHECKPOINT_NAME).is_file():
        config = config.model_copy(update={"resume": True})
    else:
        config = config.model_copy(update={"overwrite": True})
    train(config)


def predict_run(run: Path, images: Path, pred: Path, device: str, progress: bool) -> None:
    """Predict ``images`` with the run's best model into a fresh ``pred``."""
    from ..predict import predict_files

    if pred.exists():
        shutil.rmtree(pred)
    # fp32, as the evaluation of the model that the report checks these files against
    predict_files(run, images, pred, device=device, precision="fp32", progress=progress)


def drop_checkpoints(layout: DemoLayout, log: StageLog) -> None:
    """Delete the training runs' checkpoints (only resuming an interrupted run needs them)."""
    from ..distill import CHECKPOINT_NAME

    for run in (layout.run, layout.run_no_correction):
        checkpoint = run / CHECKPOINT_NAME
        if checkpoint.is_file():
            checkpoint.unlink()
            log.say(
                f"removed {checkpoint.relative_to(layout.out).as_posix()} (only resuming needs "
                "it; --keep-checkpoint keeps it)"
            )


# --------------------------------------------------------------------------------------------
# the stages


@dataclass
class DemoContext:
    """What every stage of one ``run_demo`` call needs: its folder, settings, options and
    stage log."""

    layout: DemoLayout
    settings: DemoSettings
    log: StageLog
    seed: int
    device: str
    progress: bool
    quick: bool


def backbone_stage(ctx: DemoContext, requested: str) -> tuple[str, str, str]:
    """``(init, mode, note)`` of the student's backbone: recorded in ``demo.json`` once the
    student's run exists, else decided now (so a missing pretrained backbone fails at once)."""
    from ..student.backbone import DEFAULT_BACKBONE

    log = ctx.log
    recorded = log.state.get("backbone")
    if recorded and (ctx.layout.run / "config.yaml").is_file():
        init, mode, note = recorded["init"], recorded["mode"], recorded["note"]
    else:
        init, mode, note = resolve_backbone_init(requested, DEFAULT_BACKBONE)
        log.state["backbone"] = {"init": init, "mode": mode, "note": note}
        log.save()
    log.say("", f"student backbone: {init} weights, {mode} training ({note})")
    return init, mode, note


def data_stage(ctx: DemoContext) -> dict[str, Any]:
    """Generate the synthetic blade dataset; return its manifest (``synth.json``)."""
    from ..data.synth import generate_dataset, load_manifest

    layout, settings = ctx.layout, ctx.settings
    if layout.data_yaml.is_file():
        ctx.log.reuse("data", "synthetic blade dataset")
    else:
        with ctx.log.run(
            "data",
            f"generating {settings.train}+{settings.val}+{settings.test} blade images "
            f"({settings.size[0]}×{settings.size[1]})",
        ):
            generate_dataset(
                layout.data,
                train=settings.train,
                val=settings.val,
                test=settings.test,
                size=settings.size,
                seed=ctx.seed,
                config=settings.synth_config(),
                overwrite=True,
                progress=ctx.progress,
            )
    return load_manifest(layout.data)


def label_stage(ctx: DemoContext, teacher: str, checkpoint: str | None) -> dict[str, Any]:
    """Label train, val and test with the teacher; return the teacher's description."""
    from ..label import label_dataset
    from ..teachers import load_teacher

    layout = ctx.layout
    if labels_complete(layout):
        ctx.log.reuse("label", f"pseudo-masks ({teacher})")
    else:
        with ctx.log.run("label", f"labelling train, val and test with the {teacher} teacher"):
            options: dict[str, Any] = {}
            if checkpoint is not None:
                options["checkpoint"] = checkpoint
            if teacher in ("sam", "mobile-sam"):
                options["device"] = ctx.device
            teacher_obj = load_teacher(teacher, **options)
            label_dataset(
                layout.data_yaml, teacher_obj, layout.pseudo, splits=SPLITS, progress=ctx.progress
            )
    return read_teacher(layout.pseudo)


def train_config(ctx: DemoContext, init: str, mode: str) -> Any:
    """The ``TrainConfig`` of the demo's student (with self-correction)."""
    from ..config import TrainConfig

    settings = ctx.settings
    return TrainConfig(
        data=ctx.layout.data_yaml,
        masks=ctx.layout.pseudo,
        out=ctx.layout.run,
        epochs=settings.epochs,
        imgsz=settings.imgsz,
        batch=settings.batch,
        workers=0,
        device=ctx.device,
        seed=ctx.seed,
        patience=0,
        progress=ctx.progress,
        lr=settings.lr,
        ema_decay=settings.ema_decay,
        correction_warmup=settings.correction_warmup,
        self_correction=True,
        backbone_init=init,
        backbone_mode=mode,
    )


def train_stage(ctx: DemoContext, config: Any) -> None:
    """Train the student (with self-correction)."""
    settings = ctx.settings
    if run_finished(ctx.layout.run, settings.epochs):
        ctx.log.reuse("train", "student")
        return
    with ctx.log.run(
        "train",
        f"training the student ({settings.epochs} epochs at {settings.imgsz}px, "
        f"{config.backbone_init} backbone, {config.backbone_mode})",
    ):
        train_run(config)


def count_test_images(layout: DemoLayout) -> int:
    """The number of test images (ground-truth masks of the test split)."""
    return len(list(layout.gt_masks.joinpath("test").glob("*.png")))


def predict_stage(ctx: DemoContext) -> None:
    """Predict the test split with the student."""
    layout = ctx.layout
    if predictions_complete(layout.pred, layout.run, count_test_images(layout)):
        ctx.log.reuse("predict", "student predictions on the test split")
        return
    with ctx.log.run("predict", "predicting the test split with the student"):
        predict_run(layout.run, layout.test_images, layout.pred, ctx.device, ctx.progress)


def evaluate_stage(ctx: DemoContext) -> tuple[dict[str, Any], bool]:
    """Score the teacher's and the student's test masks against the ground truth.

    The student is scored twice, from its prediction files and by running the model.

    Returns:
        ``({"teacher": scores, "student": scores}, both student scorings agree)``.
    """
    from ..evaluate import evaluate

    layout = ctx.layout
    with ctx.log.run("evaluate", "scoring teacher and student against the ground truth"):
        common: dict[str, Any] = {
            "masks": layout.gt_masks,
            "data_yaml": layout.data_yaml,
            "split": "test",
            "progress": False,
        }
        teacher_eval = evaluate(pred=layout.pseudo, **common)
        student_eval = evaluate(pred=layout.pred, **common)
        model_eval = evaluate(model=layout.run, device=ctx.device, **common)
        agree = bool(
            np.array_equal(
                np.asarray(student_eval.scores.confusion_matrix),
                np.asarray(model_eval.scores.confusion_matrix),
            )
        )
        if not agree:
            logger.warning(
                "scoring %s and running the model %s gave different confusion matrices",
                layout.pred,
                layout.run,
            )
    return {"teacher": teacher_eval.scores, "student": student_eval.scores}, agree


def _ablation_skip_reason(ctx: DemoContext, elapsed: float) -> str | None:
    """Why the student without self-correction is not trained now (``None``: train it)."""
    layout, settings, log = ctx.layout, ctx.settings, ctx.log
    if run_finished(layout.run_no_correction, settings.epochs):
        return None
    corrected = max(
        (float(r.get("corrected_share") or 0.0) for r in metrics_rows(layout.run)), default=0.0
    )
    if corrected < MIN_CORRECTED_SHARE:
        return (
            "not trained: the self-correction was rarely confident enough (softmax "
            "confidence above τ = 0.9 on a background-labelled pixel) to act; it relabelled "
            f"at most {100 * corrected:.4f} % of the training pixels in any epoch, too few "
            "to change the student, so a student trained without it would be practically "
            "the same"
        )
    estimate = log.seconds("train") + log.seconds("predict") + 15.0
    budget = settings.time_budget_s
    if budget is not None and elapsed + estimate > budget:
        return (
            f"not trained: the first student took {log.seconds('train'):.0f} s, so a "
            f"second one would end the demo after about {elapsed + estimate:.0f} s, over "
            f"its {budget:.0f} s budget (rerunning into the same folder with "
            "run_demo(..., settings=replace(DemoSettings.for_mode(False), "
            "time_budget_s=None)) trains it and reuses everything else)"
        )
    return None


def ablation_stage(ctx: DemoContext, config: Any, elapsed: float) -> tuple[str | None, Any]:
    """Train, predict and score the student without self-correction (the paper's ablation),
    when the settings ask for it, its self-correction acted and the time budget allows.

    Args:
        ctx: the demo call.
        config: the ``TrainConfig`` of the student with self-correction.
        elapsed: seconds since the demo started.

    Returns:
        ``(why it was not trained, None)`` or ``(None, its test scores)``.
    """
    from ..evaluate import evaluate

    layout = ctx.layout
    if not ctx.settings.ablation:
        off = (
            "not trained in --quick mode"
            if ctx.quick
            else "not trained (ablation off in the settings)"
        )
        return off, None
    why = _ablation_skip_reason(ctx, elapsed)
    if why is not None:
        ctx.log.skip("student without self-correction", why)
        return why, None
    run, pred = layout.run_no_correction, layout.pred_no_correction
    if run_finished(run, ctx.settings.epochs) and predictions_complete(
        pred, run, count_test_images(layout)
    ):
        ctx.log.reuse("ablation", "student without self-correction")
    else:
        with ctx.log.run("ablation", "training the student without self-correction"):
            train_run(config.model_copy(update={"out": run, "self_correction": False}))
            predict_run(run, layout.test_images, pred, ctx.device, ctx.progress)
    scores = evaluate(
        masks=layout.gt_masks, pred=pred, data_yaml=layout.data_yaml, split="test", progress=False
    ).scores
    return None, scores
