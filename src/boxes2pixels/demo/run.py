"""``run_demo``: the stages in order, then the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import DemoError
from .backbone import check_backbone_init
from .layout import REPORT_HTML, REPORT_MD, DemoLayout, fingerprint, prepare_out
from .report import build_demo_report
from .settings import DemoResult, DemoSettings
from .stages import (
    DemoContext,
    StageLog,
    ablation_stage,
    backbone_stage,
    data_stage,
    drop_checkpoints,
    evaluate_stage,
    label_stage,
    predict_stage,
    train_config,
    train_stage,
)


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
    keep_checkpoint: bool = False,
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
        keep_checkpoint: keep the training runs' ``last.ckpt`` (about half of the folder),
            which only resuming an interrupted run needs; by default it is deleted once the
            demo has finished.

    Returns:
        A :class:`DemoResult` with the scores and the report paths.

    Raises:
        DemoError: ``out`` holds other files or a demo with other settings (without
            ``overwrite``), or the options contradict each other.
        WeightsUnavailableError: ``backbone_init="pretrained"`` and no weights can be had.
    """
    started = time.perf_counter()
    settings = settings or DemoSettings.for_mode(quick)
    if settings.imgsz % 14:
        raise DemoError(f"imgsz must be a multiple of 14, got {settings.imgsz}")
    teacher_name = teacher or ("mobile-sam" if checkpoint else "grabcut")
    check_backbone_init(backbone_init)
    layout = DemoLayout(Path(out))
    state = prepare_out(
        layout.out, fingerprint(settings, seed, teacher_name, checkpoint, backbone_init), overwrite
    )
    log = StageLog(layout, state, progress, total=7 if settings.ablation else 6)
    ctx = DemoContext(layout, settings, log, seed, device, progress, quick)
    result, manifest = _run_stages(ctx, backbone_init, teacher_name, checkpoint, started)
    _report_stage(ctx, result, manifest)
    result.seconds = time.perf_counter() - started
    state["last_run_seconds"] = round(result.seconds, 2)
    log.save()
    if not keep_checkpoint:
        drop_checkpoints(layout, log)
    return result


def _run_stages(
    ctx: DemoContext, backbone_init: str, teacher: str, checkpoint: str | None, started: float
) -> tuple[DemoResult, dict[str, Any]]:
    """Every stage but the report; the result (without timings) and the dataset manifest."""
    init, mode, note = backbone_stage(ctx, backbone_init)
    manifest = data_stage(ctx)
    teacher_info = label_stage(ctx, teacher, checkpoint)
    config = train_config(ctx, init, mode)
    train_stage(ctx, config)
    predict_stage(ctx)
    scores, agree = evaluate_stage(ctx)
    ablation_note, scores_nc = ablation_stage(ctx, config, time.perf_counter() - started)
    if scores_nc is not None:
        scores["student_no_correction"] = scores_nc
    result = DemoResult(
        out=ctx.layout.out,
        report_html=ctx.layout.out / REPORT_HTML,
        report_md=ctx.layout.out / REPORT_MD,
        data_yaml=ctx.layout.data_yaml,
        run_dir=ctx.layout.run,
        backbone_init=init,
        backbone_mode=mode,
        backbone_note=note,
        teacher=teacher_info,
        scores=scores,
        evaluations_agree=agree,
        ablation_note=ablation_note,
        reused=ctx.log.reused,
        settings=ctx.settings,
    )
    return result, manifest


def _report_stage(ctx: DemoContext, result: DemoResult, manifest: dict[str, Any]) -> None:
    """Record the scores in ``demo.json`` and write the report."""
    state = ctx.log.state
    with ctx.log.run("report", "writing the report"):
        state["scores"] = {k: v.to_dict() for k, v in result.scores.items()}
        state["evaluations_agree"] = result.evaluations_agree
        result.timings = {k: float(v["seconds"]) for k, v in state["stages"].items()}
        build_demo_report(result, manifest, device=ctx.device, quick=ctx.quick, seed=ctx.seed)
    result.timings = {k: float(v["seconds"]) for k, v in state["stages"].items()}
