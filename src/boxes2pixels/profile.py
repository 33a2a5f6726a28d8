"""Efficiency profile: parameters, multiply-accumulates, latency and throughput side by side.

:func:`profile_models` builds (or takes) each model, counts its parameters, counts its
multiply-accumulates with :class:`torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2),
and times it: ``warmup`` untimed calls, then the median of ``repeats`` timed calls, all under
:func:`torch.inference_mode`. Latencies are given as a ratio to the student's in the same run.

The smp baselines need sides divisible by 32, so they run at the multiple of 32 nearest to
``imgsz`` (512 next to the student's 518); the row's ``input`` says so. ``student-onnx`` is the
student exported to ONNX and run by onnxruntime (fp32 only).
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import Boxes2PixelsError

DEFAULT_MODELS = ("student", "student-onnx", "unet", "deeplabv3", "segformer")
KNOWN_MODELS = ("student", "student-onnx", "unet", "deeplabv3", "segformer")
JSON_KEYS = (
    "name",
    "params_total",
    "params_trainable",
    "gmacs",
    "latency_ms",
    "images_per_s",
    "latency_ratio",
)

# Prediction computes only the fine head (the binary head is a training-time auxiliary).
INFERENCE_HEADS = ("fine",)


@dataclass
class ProfileRow:
    """One model's figures.

    Attributes:
        name: ``student``, ``student-onnx``, ``unet``, ``deeplabv3`` or ``segformer``.
        params_total: all parameters.
        params_trainable: parameters that training updates (``requires_grad``).
        gmacs: multiply-accumulates per image, in billions.
        latency_ms: median time of one batch, in milliseconds.
        images_per_s: ``batch / latency``.
        latency_ratio: ``latency_ms`` divided by the student's (``None`` without a student row).
        input_hw: the input height and width the model ran at.
        precision: ``fp32``, ``bf16`` or ``fp16`` (``fp32`` for onnxruntime).
        runtime: ``torch`` or ``onnxruntime``.
        note: what the reader should know (size adjusted, random weights, ...).
    """

    name: str
    params_total: int
    params_trainable: int
    gmacs: float
    latency_ms: float
    images_per_s: float
    latency_ratio: float | None
    input_hw: tuple[int, int]
    precision: str
    runtime: str = "torch"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The row as ``b2p profile --json`` writes it (exactly :data:`JSON_KEYS`)."""
        return {
            "name": self.name,
            "params_total": self.params_total,
            "params_trainable": self.params_trainable,
            "gmacs": round(self.gmacs, 3),
            "latency_ms": round(self.latency_ms, 3),
            "images_per_s": round(self.images_per_s, 3),
            "latency_ratio": None if self.latency_ratio is None else round(self.latency_ratio, 4),
        }


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def count_gmacs(model: nn.Module | Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
    """Multiply-accumulates per image (billions) of one forward pass on batch ``x``.

    Uses :class:`torch.utils.flop_counter.FlopCounterMode`, which counts matrix products,
    convolutions and attention; MACs are half its FLOPs. Element-wise work is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / 2 / x.shape[0] / 1e9


def precision_context(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager[Any]:
    """Autocast context for ``fp32`` (none), ``bf16`` or ``fp16`` on ``device``."""
    from .device import resolve_precision

    dtype = resolve_precision(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any], *, repeats: int, warmup: int, device: torch.device | None = None
) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; return each time in ms."""
    if repeats < 1:
        raise Boxes2PixelsError("repeats must be at least 1")
    device = device or torch.device("cpu")
    for _ in range(max(0, warmup)):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def parse_models(models: str | Sequence[str]) -> list[str]:
    """Model names from a comma-separated string or a sequence, checked against the known ones."""
    names = [m.strip().lower() for m in (models.split(",") if isinstance(models, str) else models)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in KNOWN_MODELS]
    if unknown:
        raise Boxes2PixelsError(
            f"unknown model(s) {', '.join(unknown)} (choose from {', '.join(KNOWN_MODELS)})"
        )
    if not names:
        raise Boxes2PixelsError("no model to profile")
    return list(dict.fromkeys(names))


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_student(num_classes: int = 3, imgsz: int = 518) -> nn.Module:
    """A student with randomly initialised weights (timing does not depend on the values)."""
    import warnings

    from .student.model import RandomBackboneWarning, Student

    with warnings.catch_warnings():  # random weights are deliberate here: only speed matters
        warnings.simplefilter("ignore", RandomBackboneWarning)
        return Student(num_classes=num_classes, backbone_init="random", imgsz=imgsz)


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class _Entry:
    """A model ready to time: its row (latency still empty), its call and its clean-up."""

    row: ProfileRow
    call: Callable[[], Any]
    cleanup: Callable[[], None] = lambda: None


def _torch_entry(
    name: str,
    model: nn.Module,
    hw: tuple[int, int],
    *,
    batch: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
    compile_model: bool,
    note: str,
) -> _Entry:
    total, trainable = count_params(model)
    model = model.eval().to(device)
    x = torch.randn(batch, 3, *hw, device=device)
    gmacs = count_gmacs(functools.partial(model, heads=INFERENCE_HEADS), x)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    runner: Callable[[torch.Tensor], Any] = torch.compile(model) if compile_model else model
    ctx = precision_context(precision, device)

    def call() -> None:
        with torch.inference_mode(), ctx:
            runner(x, heads=INFERENCE_HEADS)

    def cleanup() -> None:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)

    row = ProfileRow(
        name=name,
        params_total=total,
        params_trainable=trainable,
        gmacs=gmacs,
        latency_ms=float("nan"),
        images_per_s=float("nan"),
        latency_ratio=None,
        input_hw=hw,
        precision=precision,
        note=note,
    )
    return _Entry(row, call, cleanup)


def _onnx_entry(
    student: nn.Module, hw: tuple[int, int], *, batch: int, threads: int | None
) -> _Entry:
    import numpy as np

    from .export import OnnxStudent, export_onnx

    total, trainable = count_params(student)
    inference = functools.partial(student.eval().to("cpu"), heads=INFERENCE_HEADS)
    gmacs = count_gmacs(inference, torch.randn(batch, 3, *hw))
    tmp = tempfile.TemporaryDirectory(prefix="b2p-profile-")
    path = Path(tmp.name) / "student.onnx"
    try:
        export_onnx(student, path, imgsz=hw, batch=batch, verify=False)
        runner = OnnxStudent(path, threads=threads or torch.get_num_threads())
    except BaseException:
        tmp.cleanup()
        raise
    x = np.random.default_rng(0).standard_normal((batch, 3, *hw)).astype(np.float32)
    row = ProfileRow(
        name="student-onnx",
        params_total=total,
        params_trainable=trainable,
        gmacs=gmacs,
        latency_ms=float("nan"),
        images_per_s=float("nan"),
        latency_ratio=None,
        input_hw=hw,
        precision="fp32",
        runtime="onnxruntime",
        note=(
            "the student exported to ONNX (fine head only: what prediction uses), "
            "run by onnxruntime at fp32"
        ),
    )
    return _Entry(row, lambda: runner.run(x), tmp.cleanup)


def time_interleaved(
    calls: Sequence[Callable[[], Any]],
    *,
    repeats: int,
    warmup: int,
    device: torch.device | None = None,
) -> list[list[float]]:
    """Time several calls round-robin (each repeat calls every one once), in ms.

    Interleaving spreads changes of machine load evenly over the models, so their ratios
    stay meaningful on a busy machine.
    """
    if repeats < 1:
        raise Boxes2PixelsError("repeats must be at least 1")
    device = device or torch.device("cpu")
    for _ in range(max(0, warmup)):
        for fn in calls:
            fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for i, fn in enumerate(calls):
            start = time.perf_counter()
            fn()
            _sync(device)
            times[i].append((time.perf_counter() - start) * 1000.0)
    return times


def profile_models(
    models: str | Sequence[str] = DEFAULT_MODELS,
    imgsz: int = 518,
    batch: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    repeats: int = 10,
    *,
    warmup: int = 3,
    threads: int | None = None,
    channels_last: bool | None = None,
    compile_model: bool = False,
    student: nn.Module | str | Path | None = None,
    num_classes: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[ProfileRow]:
    """Profile models side by side at one precision.

    All models are built first, then timed round-robin (each repeat runs every model once),
    so a change of machine load affects them alike.

    Args:
        models: names among ``student``, ``student-onnx``, ``unet``, ``deeplabv3``,
            ``segformer`` (comma-separated string or sequence). ``student-onnx`` is skipped
            (with a progress message) when onnxruntime is missing or ``precision`` is not fp32,
            unless it is the only model asked for, which is an error.
        imgsz: the student's input side; baselines use the nearest multiple of 32.
        batch: images per call.
        device: ``cpu``, ``cuda``, ... or ``auto``.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :func:`device.resolve_precision`).
        repeats: timed calls per model; the median is reported.
        warmup: untimed calls per model before timing.
        threads: torch (and onnxruntime) CPU threads; ``None`` keeps torch's setting.
        channels_last: run convolutions in channels-last layout; default: on for bf16/fp16.
        compile_model: wrap the torch models in :func:`torch.compile` before timing.
        student: a ``Student`` (or a saved student folder) to profile instead of a randomly
            initialised default one.
        num_classes: output classes of the default student and the baselines.
        progress: called with a short message at each stage.

    Returns:
        One :class:`ProfileRow` per profiled model, in the order asked, with ratios to the
        student's latency filled in when ``student`` was profiled.
    """
    from .baselines import BASELINES, BaselineModel, nearest_multiple
    from .device import resolve_device, resolve_precision

    names = parse_models(models)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    precision_name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    if channels_last is None:
        channels_last = dtype is not None
    say = progress or (lambda _msg: None)
    if imgsz < 1:
        raise Boxes2PixelsError(f"imgsz must be positive (got {imgsz})")
    student_hw = (imgsz, imgsz)
    student_model: nn.Module | None = None
    student_note = ""
    if any(n.startswith("student") for n in names):
        if student is None:
            student_model = default_student(num_classes=num_classes, imgsz=imgsz)
            student_note = "random weights"
        elif isinstance(student, nn.Module):
            student_model = student
        else:
            from .predict import load_student

            student_model = load_student(student, "cpu")
        divisor = int(getattr(student_model, "patch_size", 14))
        if imgsz % divisor:
            raise Boxes2PixelsError(
                f"the student needs a multiple of its patch size {divisor} as imgsz (got {imgsz})"
            )

    entries: list[_Entry] = []
    try:
        with _threads(threads):
            for name in names:
                if name == "student-onnx":
                    if not _onnx_available() or precision_name != "fp32" or dev.type != "cpu":
                        why = (
                            "onnx/onnxruntime are not installed (pip install 'boxes2pixels[onnx]')"
                            if not _onnx_available()
                            else "onnxruntime is profiled at fp32 on the CPU only"
                        )
                        if names == ["student-onnx"]:
                            raise Boxes2PixelsError(f"cannot profile student-onnx: {why}")
                        say(f"skipping student-onnx: {why}")
                        continue
                    assert student_model is not None
                    say(f"exporting the student to ONNX at {imgsz}×{imgsz}")
                    entries.append(
                        _onnx_entry(student_model, student_hw, batch=batch, threads=threads)
                    )
                    continue
                if name == "student":
                    assert student_model is not None
                    model: nn.Module = student_model
                    hw = student_hw
                    note = student_note
                else:
                    side = nearest_multiple(imgsz, BASELINES[name].divisor)
                    hw = (side, side)
                    model = BaselineModel(name, num_classes=num_classes, encoder_init="random")
                    note = "random weights"
                    if side != imgsz:
                        note += f"; {side}×{side}: nearest multiple of 32 to {imgsz}"
                say(f"preparing {name} at {hw[0]}×{hw[1]} ({precision_name})")
                entries.append(
                    _torch_entry(
                        name,
                        model,
                        hw,
                        batch=batch,
                        device=dev,
                        precision=precision_name,
                        channels_last=channels_last,
                        compile_model=compile_model,
                        note=note,
                    )
                )
            say(
                f"timing {len(entries)} models round-robin: {warmup} warm-up and "
                f"{repeats} timed calls each"
            )
            times = time_interleaved(
                [e.call for e in entries], repeats=repeats, warmup=warmup, device=dev
            )
    finally:
        for entry in entries:
            entry.cleanup()
    rows = []
    for entry, samples in zip(entries, times, strict=True):
        row = entry.row
        row.latency_ms = statistics.median(samples)
        row.images_per_s = batch * 1000.0 / row.latency_ms
        rows.append(row)
    ref = next((r.latency_ms for r in rows if r.name == "student"), None)
    for row in rows:
        row.latency_ratio = None if ref is None else row.latency_ms / ref
    return rows


def format_table(rows: Sequence[ProfileRow], title: str | None = None) -> str:
    """The rows as a fixed-width text table (Markdown pipe syntax), ratios to the student."""
    header = (
        "| model | input | precision | runtime | params (M) | trainable (M) | GMACs "
        "| latency (ms) | images/s | × student |"
    )
    lines = [f"### {title}", ""] if title else []
    lines += [header, "|" + "---|" * 10]
    for r in rows:
        ratio = "—" if r.latency_ratio is None else f"{r.latency_ratio:.2f}"
        lines.append(
            f"| {r.name} | {r.input_hw[0]}×{r.input_hw[1]} | {r.precision} | {r.runtime} "
            f"| {r.params_total / 1e6:.2f} | {r.params_trainable / 1e6:.2f} | {r.gmacs:.2f} "
            f"| {r.latency_ms:.1f} | {r.images_per_s:.2f} | {ratio} |"
        )
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
