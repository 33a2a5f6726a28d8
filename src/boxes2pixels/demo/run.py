"""``run_demo``: the stages in order, then the report."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
            (minutes on an idle 2-core CPU, longer on a busy one; see :func:`cpu_threads`).
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
    threads = cpu_threads(device)
    if threads is not None:
        load, cores = threads[1], os.cpu_count() or 1
        log.say(
            "",
            f"the CPU is busy (load {load:.1f} on {cores} cores): PyTorch runs on "
            f"{threads[0]} thread(s) instead of {_torch_threads()} (threads that wait on each "
            "other on a busy CPU make training many times slower)",
        )
        log.state["torch_threads"] = threads[0]
    with _torch_threads_set(threads[0] if threads is not None else None):
        result, manifest = _run_stages(ctx, backbone_init, teacher_name, checkpoint, started)
    _report_stage(ctx, result, manifest)
    result.seconds = time.perf_counter() - started
    state["last_run_seconds"] = round(result.seconds, 2)
    log.save()
    if not keep_checkpoint:
        drop_checkpoints(layout, log)
    return result


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def cpu_threads(device: str) -> tuple[int, float] | None:
    """``(threads, load)`` when the demo should run PyTorch on fewer threads than it would,
    else None.

    On a CPU busy with other work (1-minute load average), PyTorch's OpenMP threads wait on
    each other at every operation, and a 2-core machine then trains many times slower on two
    threads than on one (the default demo took 25 minutes there). The demo takes the cores
    the load leaves free, at least one. Only for CPU training (``cpu``, or ``auto`` without
    CUDA or MPS).
    """
    import torch

    if device not in ("cpu", "auto"):
        return None
    if device == "auto" and (torch.cuda.is_available() or torch.backends.mps.is_available()):
        return None
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # Windows
        return None
    current = _torch_threads()
    cores = os.cpu_count() or 1
    free = max(1, int(cores - load + 0.5))
    if current > 1 and free < current:
        return free, load
    return None


@contextmanager
def _torch_threads_set(threads: int | None) -> Iterator[None]:
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
