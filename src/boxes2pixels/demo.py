"""``run_demo``: the whole Boxes2Pixels method on generated blade data, with a report.

One call runs every stage on an embedded default, each stage reading the files the previous
one wrote (the same files the ``b2p`` commands use):

1. ``data/``: a synthetic blade dataset with exact ground truth (``b2p synth``);
2. ``pseudo_masks/``: the teacher's masks for the train, val and test splits (``b2p label``);
3. ``runs/student/``: the student distilled from the pseudo-masks (``b2p train``);
4. ``predictions/test/``: the student's test predictions (``b2p predict``);
5. scores of the teacher's test pseudo-masks and of the student against the ground truth
   (``b2p evaluate``), the student scored both from its prediction files and by running the
   model, and checked to agree;
6. in the default mode, when the student's self-correction relabelled at least 0.01 % of the
   training pixels in some epoch and the time budget allows: the same student trained
   without self-correction (the paper's ablation) in ``runs/student_no_correction/`` and
   ``predictions_no_correction/test/``;
7. ``report.html`` (self-contained) and ``report.md`` (see :mod:`boxes2pixels.report`).

A rerun into the same folder skips every stage whose outputs exist (an interrupted training
run is resumed from its checkpoint), so ``b2p demo`` can be stopped and continued.
``demo.json`` records the settings, the stages' times and the scores.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DemoError, WeightsUnavailableError
from .io import remove_outputs, write_json_atomic

logger = logging.getLogger(__name__)

DEMO_FORMAT = "boxes2pixels-demo/1"
STATE_NAME = "demo.json"
DATA_DIR = "data"
PSEUDO_DIR = "pseudo_masks"
RUN_DIR = "runs/student"
RUN_DIR_NO_CORRECTION = "runs/student_no_correction"
PRED_DIR = "predictions"
PRED_DIR_NO_CORRECTION = "predictions_no_correction"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FILES = "report_files"
BACKBONE_INITS = ("auto", "pretrained", "random")
# What the demo writes into OUT (and removes first with ``overwrite``); other files are kept.
_OUTPUTS = (
    DATA_DIR,
    PSEUDO_DIR,
    "runs",
    PRED_DIR,
    PRED_DIR_NO_CORRECTION,
    REPORT_FILES,
    REPORT_HTML,
    REPORT_MD,
    STATE_NAME,
)
_SPLITS = ("train", "val", "test")
MIN_CORRECTED_SHARE = 1e-4
"""The ablation is trained only when self-correction relabelled at least this share of the
training pixels in some epoch (0.01 %); below it both students come out practically equal."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and training settings of one demo mode (chosen for a 2-core CPU).

    Attributes:
        train: training images generated.
        val: validation images (the student is validated on their pseudo-masks).
        test: test images (scored against the ground truth).
        size: ``(width, height)`` of the generated images.
        defect_scale: ``SynthConfig.defect_scale``: larger defects stay visible at ``imgsz``.
        defect_free_fraction: share of images without any defect.
        unboxed_fraction: ``SynthConfig.unboxed_fraction``: defects left without a box.
        imgsz: student input size (multiple of 14).
        epochs: training epochs of each student.
        batch: images per training step.
        lr: AdamW learning rate.
        ema_decay: decay of the weights' moving average used for validation and inference.
        correction_warmup: epochs trained before self-correction starts.
        panels: test images shown as qualitative panels in the report.
        ablation: also train a student without self-correction, when the first student's
            self-correction relabelled at least ``MIN_CORRECTED_SHARE`` of the pixels in some
            epoch (otherwise both come out practically the same) and the time budget allows.
        time_budget_s: the ablation is skipped when the run would end later than this many
            seconds after the demo started (its duration is estimated from the first
            student's); ``None`` always trains it.
    """

    train: int
    val: int
    test: int
    size: tuple[int, int]
    defect_scale: float
    defect_free_fraction: float
    unboxed_fraction: float
    imgsz: int
    epochs: int
    batch: int
    lr: float
    ema_decay: float
    correction_warmup: int
    panels: int
    ablation: bool
    time_budget_s: float | None

    @classmethod
    def for_mode(cls, quick: bool) -> DemoSettings:
        """The settings of ``b2p demo`` (``quick=False``) or ``b2p demo --quick``."""
        if quick:
            return cls(
                train=24,
                val=4,
                test=8,
                size=(224, 168),
                defect_scale=2.5,
                defect_free_fraction=0.35,
                unboxed_fraction=0.25,
                imgsz=112,
                epochs=3,
                batch=4,
                lr=1e-3,
                ema_decay=0.9,
                correction_warmup=1,
                panels=3,
                ablation=False,
                time_budget_s=None,
            )
        return cls(
            train=96,
            val=16,
            test=24,
            size=(224, 168),
            defect_scale=2.5,
            defect_free_fraction=0.35,
            unboxed_fraction=0.25,
            imgsz=112,
            epochs=20,
            batch=4,
            lr=1e-3,
            ema_decay=0.99,
            correction_warmup=3,
            panels=5,
            ablation=True,
            time_budget_s=600.0,
        )

    def synth_config(self) -> Any:
        """The ``SynthConfig`` of the generated scenes."""
        from .data.synth import SynthConfig

        return SynthConfig(
            defect_free_fraction=self.defect_free_fraction,
            unboxed_fraction=self.unboxed_fraction,
            defect_scale=self.defect_scale,
        )


@dataclass
class DemoResult:
    """What ``run_demo`` produced.

    Attributes:
        out: the demo folder.
        report_html: ``out/report.html`` (self-contained).
        report_md: ``out/report.md`` (pictures in ``out/report_files/``).
        data_yaml: the generated dataset's ``data.yaml``.
        run_dir: the student's training run (``run_dir/best`` is the model).
        backbone_init: the backbone initialisation actually used: ``pretrained`` or ``random``.
        backbone_mode: ``bitfit`` (pretrained) or ``full`` (random weights).
        backbone_note: why that initialisation was used.
        teacher: the teacher's description (name, options, checkpoint, sha256).
        scores: test scores against the ground truth: ``teacher``, ``student`` and, when
            trained, ``student_no_correction`` (``SegmentationScores``).
        evaluations_agree: scoring the prediction files and running the model gave the same
            confusion matrix.
        ablation_note: why the student without self-correction was not trained (or ``None``).
        timings: seconds per stage (stages reused from an earlier run keep their time).
        reused: stages skipped because their outputs existed.
        seconds: wall time of this call.
        settings: the mode's settings.
    """

    out: Path
    report_html: Path
    report_md: Path
    data_yaml: Path
    run_dir: Path
    backbone_init: str
    backbone_mode: str
    backbone_note: str
    teacher: dict[str, Any]
    scores: dict[str, Any]
    evaluations_agree: bool
    ablation_note: str | None
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: DemoSettings | None = None

    @property
    def random_backbone(self) -> bool:
        """True when the student's backbone started from random weights."""
        return self.backbone_init == "random"


# --------------------------------------------------------------------------------------------
# backbone initialisation


def pretrained_backbone_available(name: str) -> tuple[bool, str]:
    """Whether the timm pretrained weights of backbone ``name`` can be loaded here, and why.

    An offline machine answers in well under a second (see ``pretrained_unreachable``); when
    the weights are cached or the Hub is reachable they are loaded (downloaded).
    """
    from .student.backbone import Backbone

    try:
        Backbone(name, init="pretrained", mode="bitfit")
    except WeightsUnavailableError as exc:
        return False, exc.cause or str(exc).split(". ", 1)[0]
    return True, f"pretrained DINOv2 weights ('{name}') loaded"


def resolve_backbone_init(requested: str, name: str) -> tuple[str, str, str]:
    """``(init, mode, note)`` for ``--backbone-init`` ``auto``, ``pretrained`` or ``random``.

    Pretrained weights train with BitFit as in the paper; random weights train with full
    fine-tuning (a random frozen DINOv2 gives collapsed features). ``pretrained`` that cannot
    be had is an error, never a silent fallback; ``auto`` falls back to random and says why.

    Raises:
        DemoError: an unknown ``requested`` value.
        WeightsUnavailableError: ``pretrained`` was requested and cannot be had.
    """
    if requested not in BACKBONE_INITS:
        raise DemoError(f"unknown --backbone-init '{requested}' (use {', '.join(BACKBONE_INITS)})")
    if requested == "random":
        return "random", "full", "random weights chosen with --backbone-init random"
    ok, why = pretrained_backbone_available(name)
    if ok:
        return "pretrained", "bitfit", why
    if requested == "pretrained":
        raise WeightsUnavailableError(
            f"--backbone-init pretrained: {why}. Copy a Hugging Face cache holding the weights "
            "into HF_HOME, run where the Hub is reachable, or use --backbone-init auto (random "
            "weights when none can be had, reported as such)"
        )
    return "random", "full", f"no pretrained weights could be loaded: {why}"


# --------------------------------------------------------------------------------------------
# folder state


def _fingerprint(
    settings: DemoSettings,
    seed: int,
    teacher: str,
    checkpoint: str | None,
    backbone_init: str,
) -> dict[str, Any]:
    # settings that change no file but the report's are left out, so a rerun may change them
    kept = {k: v for k, v in asdict(settings).items() if k not in ("time_budget_s", "panels")}
    return {
        "settings": json_safe(kept),
        "seed": int(seed),
        "teacher": teacher,
        "checkpoint": checkpoint,
        "backbone_init": backbone_init,
    }


def json_safe(value: Any) -> Any:
    """``value`` with tuples turned into lists (as JSON reads it back)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _read_state(out: Path) -> dict[str, Any] | None:
    import json

    path = out / STATE_NAME
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoError(f"{path}: unreadable demo state ({exc}); rerun with --overwrite") from exc
    if not isinstance(state, dict) or state.get("format") != DEMO_FORMAT:
        raise DemoError(f"{path}: not a b2p demo state file; rerun with --overwrite")
    return state


def _prepare_out(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Check (or clean) the demo folder; return the state to continue from."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out}: exists and is not a folder")
    if overwrite and out.is_dir():
        remove_outputs(out, _OUTPUTS)
    state = _read_state(out) if out.is_dir() else None
    if state is None:
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise DemoError(
                f"{out}: folder is not empty and holds no b2p demo ({STATE_NAME} missing); "
                "choose another --out, or pass --overwrite to replace the demo's files there"
            )
        state = {"format": DEMO_FORMAT, "fingerprint": fingerprint, "stages": {}}
    elif state.get("fingerprint") != fingerprint and not state.get("stages"):
        # no stage finished under the old settings: nothing to keep
        state = {"format": DEMO_FORMAT, "fingerprint": fingerprint, "stages": {}}
    elif state.get("fingerprint") != fingerprint:
        raise DemoError(
            f"{out}: holds a demo run with other settings (mode, seed, teacher, checkpoint or "
            "backbone init); use another --out or pass --overwrite to start again"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / STATE_NAME, state)
    return state


class _Stages:
    """Prints stage progress and records each stage's time in ``demo.json``."""

    def __init__(self, out: Path, state: dict[str, Any], progress: bool, total: int) -> None:
        self.out = out
        self.state = state
        self.total = total
        self.count = 0
        self.reused: list[str] = []
        self.console: Any = None
        if progress:
            from rich.console import Console

            self.console = Console(stderr=True)

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False)

    def save(self) -> None:
        write_json_atomic(self.out / STATE_NAME, self.state)

    @contextmanager
    def run(self, key: str, title: str) -> Iterator[None]:
        self.count += 1
        self.say(f"[bold cyan][{self.count}/{self.total}][/] {title}")
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.state["stages"][key] = {"seconds": round(seconds, 2), "done": True}
        self.save()
        self.say(f"      done in {seconds:.1f} s")

    def reuse(self, key: str, title: str) -> None:
        self.count += 1
        self.reused.append(key)
        self.say(
            f"[bold cyan][{self.count}/{self.total}][/] {title}: [green]outputs exist, reused[/]"
        )

    def seconds(self, key: str) -> float:
        return float(self.state["stages"].get(key, {}).get("seconds", 0.0))


# --------------------------------------------------------------------------------------------
# stages


def _labels_complete(pseudo: Path, data_yaml: Path) -> bool:
    from .data.yolo import load_data_yaml

    if not (pseudo / "manifest.json").is_file():
        return False
    ds = load_data_yaml(data_yaml)
    return all(
        (pseudo / split / ds.mask_name(image, split)).is_file()
        for split in _SPLITS
        for image in ds.images(split)
    )


def _metrics_rows(run: Path) -> list[dict[str, str]]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _train_config(
    data_yaml: Path,
    pseudo: Path,
    run: Path,
    settings: DemoSettings,
    *,
    init: str,
    mode: str,
    self_correction: bool,
    seed: int,
    device: str,
    progress: bool,
) -> Any:
    from .config import TrainConfig

    return TrainConfig(
        data=data_yaml,
        masks=pseudo,
        out=run,
        epochs=settings.epochs,
        imgsz=settings.imgsz,
        batch=settings.batch,
        workers=0,
        device=device,
        seed=seed,
        patience=0,
        progress=progress,
        lr=settings.lr,
        ema_decay=settings.ema_decay,
        correction_warmup=settings.correction_warmup,
        self_correction=self_correction,
        backbone_init=init,
        backbone_mode=mode,
    )


def _train_stage(config: Any) -> bool:
    """Train (or resume, or reuse) the run of ``config``; True when the run was complete."""
    from .distill.distiller import CHECKPOINT_NAME, train

    run = Path(config.out)
    done = len(_metrics_rows(run)) >= config.epochs and (run / "best" / "config.json").is_file()
    if done:
        return True
    if (run / CHECKPOINT_NAME).is_file():
        config = config.model_copy(update={"resume": True})
    else:
        config = config.model_copy(update={"overwrite": True})
    train(config)
    return False


def _predictions_complete(pred: Path, run: Path, expected: int) -> bool:
    from .predict import SUMMARY_NAME

    summary = pred / SUMMARY_NAME
    weights = run / "best" / "model.safetensors"
    if not summary.is_file() or not weights.is_file():
        return False
    if summary.stat().st_mtime < weights.stat().st_mtime:
        return False
    return len(list(pred.rglob("*.png"))) == expected


def _predict_stage(run: Path, images: Path, pred: Path, device: str, progress: bool) -> None:
    from .predict import predict_files

    if pred.exists():
        shutil.rmtree(pred)
    predict_files(run, images, pred, device=device, progress=progress)


def _scores_dict(scores: Any) -> dict[str, Any]:
    return scores.to_dict()


# --------------------------------------------------------------------------------------------
# the demo


def run_demo(
    out: str | Path = "b2p-demo",
    *,
    quick: bool = False,
    backbone_init: str = "auto",
    teacher: str | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    settings: DemoSettings | None = None,
) -> DemoResult:
    """Run the whole method on generated blade data and write ``out/report.html`` and ``.md``.

    Args:
        out: the demo folder (created; a rerun continues where an earlier run stopped).
        quick: the small mode (about a minute on a 2-core CPU) instead of the default one
            (within ten minutes).
        backbone_init: ``auto`` (pretrained DINOv2 weights when they can be loaded, else
            random, and the report says which), ``pretrained`` (an error if unavailable) or
            ``random``.
        teacher: a registered teacher name; default ``grabcut`` (no weights needed), or
            ``mobile-sam`` when ``checkpoint`` is given.
        checkpoint: SAM / MobileSAM weights (local path or ``hf://owner/repo/file``).
        seed: seed of the generated data and of training.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        overwrite: delete the demo's earlier outputs in ``out`` first.
        progress: print the stages and progress bars on stderr.
        settings: override the mode's sizes and training settings.

    Returns:
        A :class:`DemoResult` with the scores and the report paths.

    Raises:
        DemoError: ``out`` holds other files or a demo with other settings (without
            ``overwrite``), or the options contradict each other.
        WeightsUnavailableError: ``backbone_init="pretrained"`` and no weights can be had.
    """
    from .data.synth import generate_dataset, load_manifest
    from .evaluate import evaluate
    from .label import label_dataset
    from .report import build_demo_report
    from .teachers import load_teacher

    started = time.perf_counter()
    out = Path(out)
    settings = settings or DemoSettings.for_mode(quick)
    if settings.imgsz % 14:
        raise DemoError(f"imgsz must be a multiple of 14, got {settings.imgsz}")
    teacher_name = teacher or ("mobile-sam" if checkpoint else "grabcut")
    if backbone_init not in BACKBONE_INITS:
        raise DemoError(
            f"unknown --backbone-init '{backbone_init}' (use {', '.join(BACKBONE_INITS)})"
        )
    fingerprint = _fingerprint(settings, seed, teacher_name, checkpoint, backbone_init)
    state = _prepare_out(out, fingerprint, overwrite)
    total = 7 if settings.ablation else 6
    stages = _Stages(out, state, progress, total)

    # the backbone's weights: decided first, so a missing pretrained backbone fails at once
    from .student.backbone import DEFAULT_BACKBONE

    recorded = state.get("backbone")
    if recorded and (out / RUN_DIR / "config.yaml").is_file():
        init, mode, note = recorded["init"], recorded["mode"], recorded["note"]
    else:
        init, mode, note = resolve_backbone_init(backbone_init, DEFAULT_BACKBONE)
        state["backbone"] = {"init": init, "mode": mode, "note": note}
        stages.save()
    stages.say(f"student backbone: {init} weights, {mode} training ({note})")

    data_dir, pseudo = out / DATA_DIR, out / PSEUDO_DIR
    data_yaml = data_dir / "data.yaml"
    gt_root = data_dir / "gt_masks"

    # 1. data
    if data_yaml.is_file():
        stages.reuse("data", "synthetic blade dataset")
    else:
        with stages.run(
            "data",
            f"generating {settings.train}+{settings.val}+{settings.test} blade images "
            f"({settings.size[0]}×{settings.size[1]})",
        ):
            generate_dataset(
                data_dir,
                train=settings.train,
                val=settings.val,
                test=settings.test,
                size=settings.size,
                seed=seed,
                config=settings.synth_config(),
                overwrite=True,
                progress=progress,
            )
    manifest = load_manifest(data_dir)

    # 2. pseudo-masks
    teacher_info: dict[str, Any]
    if _labels_complete(pseudo, data_yaml):
        stages.reuse("label", f"pseudo-masks ({teacher_name})")
        teacher_info = _manifest_teacher(pseudo)
    else:
        with stages.run("label", f"labelling train, val and test with the {teacher_name} teacher"):
            options: dict[str, Any] = {}
            if checkpoint is not None:
                options["checkpoint"] = checkpoint
            if teacher_name in ("sam", "mobile-sam"):
                options["device"] = device
            teacher_obj = load_teacher(teacher_name, **options)
            label_dataset(data_yaml, teacher_obj, pseudo, splits=_SPLITS, progress=progress)
        teacher_info = _manifest_teacher(pseudo)

    # 3. student
    run = out / RUN_DIR
    config = _train_config(
        data_yaml,
        pseudo,
        run,
        settings,
        init=init,
        mode=mode,
        self_correction=True,
        seed=seed,
        device=device,
        progress=progress,
    )
    if len(_metrics_rows(run)) >= settings.epochs and (run / "best" / "config.json").is_file():
        stages.reuse("train", "student")
    else:
        with stages.run(
            "train",
            f"training the student ({settings.epochs} epochs at {settings.imgsz}px, "
            f"{init} backbone, {mode})",
        ):
            _train_stage(config)

    # 4. predictions
    test_images = data_dir / "images" / "test"
    n_test = len(list(gt_root.joinpath("test").glob("*.png")))
    pred = out / PRED_DIR / "test"
    if _predictions_complete(pred, run, n_test):
        stages.reuse("predict", "student predictions on the test split")
    else:
        with stages.run("predict", "predicting the test split with the student"):
            _predict_stage(run, test_images, pred, device, progress)

    # 5. evaluation
    with stages.run("evaluate", "scoring teacher and student against the ground truth"):
        teacher_eval = evaluate(
            masks=gt_root, pred=pseudo, data_yaml=data_yaml, split="test", progress=False
        )
        student_eval = evaluate(
            masks=gt_root, pred=pred, data_yaml=data_yaml, split="test", progress=False
        )
        model_eval = evaluate(
            masks=gt_root,
            model=run,
            data_yaml=data_yaml,
            split="test",
            device=device,
            progress=False,
        )
        agree = bool(
            np.array_equal(
                np.asarray(student_eval.scores.confusion_matrix),
                np.asarray(model_eval.scores.confusion_matrix),
            )
        )
        if not agree:
            logger.warning(
                "scoring %s and running the model %s gave different confusion matrices",
                pred,
                run,
            )
    scores: dict[str, Any] = {"teacher": teacher_eval.scores, "student": student_eval.scores}

    # 6. student without self-correction (the paper's ablation), if time allows
    ablation_note: str | None = None
    run_nc = out / RUN_DIR_NO_CORRECTION
    pred_nc = out / PRED_DIR_NO_CORRECTION / "test"
    if settings.ablation:
        nc_done = (
            len(_metrics_rows(run_nc)) >= settings.epochs
            and (run_nc / "best" / "config.json").is_file()
        )
        elapsed = time.perf_counter() - started
        estimate = stages.seconds("train") + stages.seconds("predict") + 15.0
        budget = settings.time_budget_s
        corrected = max(
            (float(r.get("corrected_share") or 0.0) for r in _metrics_rows(run)), default=0.0
        )
        if not nc_done and corrected < MIN_CORRECTED_SHARE:
            ablation_note = (
                "not trained: the self-correction was rarely confident enough (softmax "
                "confidence above τ = 0.9 on a background-labelled pixel) to act; it relabelled "
                f"at most {100 * corrected:.4f} % of the training pixels in any epoch, too few "
                "to change the student, so a student trained without it would be practically "
                "the same"
            )
            stages.count += 1
            stages.say(
                f"[bold cyan][{stages.count}/{total}][/] student without self-correction: "
                f"[yellow]skipped[/] ({ablation_note})"
            )
        elif not nc_done and budget is not None and elapsed + estimate > budget:
            ablation_note = (
                f"not trained: the first student took {stages.seconds('train'):.0f} s, so a "
                f"second one would end the demo after about {elapsed + estimate:.0f} s, over "
                f"its {budget:.0f} s budget (rerunning into the same folder with "
                "run_demo(..., settings=replace(DemoSettings.for_mode(False), "
                "time_budget_s=None)) trains it and reuses everything else)"
            )
            stages.count += 1
            stages.say(
                f"[bold cyan][{stages.count}/{total}][/] student without self-correction: "
                f"[yellow]skipped[/] ({ablation_note})"
            )
        else:
            config_nc = config.model_copy(update={"out": run_nc, "self_correction": False})
            if nc_done and _predictions_complete(pred_nc, run_nc, n_test):
                stages.reuse("ablation", "student without self-correction")
            else:
                with stages.run("ablation", "training the student without self-correction"):
                    _train_stage(config_nc)
                    _predict_stage(run_nc, test_images, pred_nc, device, progress)
            scores["student_no_correction"] = evaluate(
                masks=gt_root, pred=pred_nc, data_yaml=data_yaml, split="test", progress=False
            ).scores
    else:
        ablation_note = (
            "not trained in --quick mode" if quick else "not trained (ablation off in the settings)"
        )

    # 7. report
    result = DemoResult(
        out=out,
        report_html=out / REPORT_HTML,
        report_md=out / REPORT_MD,
        data_yaml=data_yaml,
        run_dir=run,
        backbone_init=init,
        backbone_mode=mode,
        backbone_note=note,
        teacher=teacher_info,
        scores=scores,
        evaluations_agree=agree,
        ablation_note=ablation_note,
        reused=stages.reused,
        settings=settings,
    )
    with stages.run("report", "writing the report"):
        state["scores"] = {k: _scores_dict(v) for k, v in scores.items()}
        state["evaluations_agree"] = agree
        result.timings = {k: float(v["seconds"]) for k, v in state["stages"].items()}
        build_demo_report(result, manifest, device=device, quick=quick, seed=seed)
    result.timings = {k: float(v["seconds"]) for k, v in state["stages"].items()}
    result.seconds = time.perf_counter() - started
    state["last_run_seconds"] = round(result.seconds, 2)
    stages.save()
    return result


def _manifest_teacher(pseudo: Path) -> dict[str, Any]:
    import json

    try:
        manifest = json.loads((pseudo / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoError(f"{pseudo / 'manifest.json'}: unreadable ({exc})") from exc
    teacher = dict(manifest.get("teacher", {}))
    kinds: dict[str, int] = {}
    for issue in manifest.get("label_issues", []):
        kind = str(issue.get("kind", "other"))
        kinds[kind] = kinds.get(kind, 0) + 1
    teacher["label_issues"] = kinds
    return teacher


def read_history(run: Path) -> list[dict[str, float]]:
    """``run/metrics.csv`` as numbers (empty cells become NaN)."""
    rows = []
    for row in _metrics_rows(run):
        parsed: dict[str, float] = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value) if value not in ("", None) else math.nan
            except ValueError:
                parsed[key] = math.nan
        rows.append(parsed)
    return rows
