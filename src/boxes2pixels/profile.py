"""Efficiency profile: parameters, multiply-accumulates, latency and throughput side by side.

:func:`profile_models` builds (or takes) each model, counts its parameters, counts its
multiply-accumulates with :class:`torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2),
and times it: ``warmup`` untimed calls, then the median of ``repeats`` timed calls, all under
:func:`torch.inference_mode`. Latencies are given as a ratio to the student's in the same run.

The smp baselines need sides divisible by 32, so they run at the multiple of 32 nearest to
``imgsz`` (512 next to the student's 518); the row's ``input`` says so. ``student-onnx`` is the
student exported to ONNX and run by onnxruntime (fp32 only); ``student-openvino`` the same file
run by OpenVINO on the CPU at the profiled precision (fp32 or bf16).
"""

from __future__ import annotations

import functools
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import Boxes2PixelsError
from .measure import count_gmacs, count_params, precision_context, time_interleaved, torch_threads

DEFAULT_MODELS = ("student", "student-onnx", "student-openvino", "unet", "deeplabv3", "segformer")
KNOWN_MODELS = DEFAULT_MODELS
EXPORTED = {"student-onnx": "onnxruntime", "student-openvino": "openvino"}
"""The exported-file rows and their runtimes."""
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
        name: ``student``, ``student-onnx``, ``student-openvino``, ``unet``, ``deeplabv3`` or
            ``segformer``.
        params_total: all parameters.
        params_trainable: parameters that training updates (``requires_grad``).
        gmacs: multiply-accumulates per image, in billions.
        latency_ms: median time of one batch, in milliseconds.
        images_per_s: ``batch / latency``.
        latency_ratio: ``latency_ms`` divided by the student's (``None`` without a student row).
        input_hw: the input height and width the model ran at.
        precision: ``fp32``, ``bf16`` or ``fp16`` (``fp32`` for onnxruntime).
        runtime: ``torch``, ``onnxruntime`` or ``openvino``.
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


def _exported_entry(
    name: str,
    student: nn.Module,
    hw: tuple[int, int],
    *,
    batch: int,
    threads: int | None,
    precision: str,
) -> _Entry:
    """``student-onnx`` or ``student-openvino``: the student exported to a temporary ONNX file
    (fine head only: what prediction uses) and run by that runtime."""
    import numpy as np

    from .export import export_onnx
    from .inference.onnx_model import OnnxStudent
    from .inference.openvino_model import OpenVinoStudent

    total, trainable = count_params(student)
    inference = functools.partial(student.eval().to("cpu"), heads=INFERENCE_HEADS)
    gmacs = count_gmacs(inference, torch.randn(batch, 3, *hw))
    tmp = tempfile.TemporaryDirectory(prefix="b2p-profile-")
    path = Path(tmp.name) / "student.onnx"
    threads = threads or torch.get_num_threads()
    runner: OnnxStudent | OpenVinoStudent
    try:
        export_onnx(student, path, imgsz=hw, batch=batch, verify=False)
        if name == "student-onnx":
            runner = OnnxStudent(path, threads=threads)
        else:
            runner = OpenVinoStudent(path, precision=precision, threads=threads)
    except BaseException:
        tmp.cleanup()
        raise
    x = np.random.default_rng(0).standard_normal((batch, 3, *hw)).astype(np.float32)
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
        runtime=EXPORTED[name],
        note=(
            "the student exported to ONNX (fine head only: what prediction uses), "
            f"run by {EXPORTED[name]} at {precision}"
        ),
    )
    return _Entry(row, lambda: runner.run(x), tmp.cleanup)


def _profile_student(
    student: nn.Module | str | Path | None, num_classes: int, imgsz: int
) -> tuple[nn.Module, str]:
    """The student to profile and its note: the one given (or loaded), else random weights."""
    if student is None:
        model, note = default_student(num_classes=num_classes, imgsz=imgsz), "random weights"
    elif isinstance(student, nn.Module):
        model, note = student, ""
    else:
        from .inference import load_student

        model, note = load_student(student, "cpu"), ""
    divisor = int(model.patch_size)
    if imgsz % divisor:
        raise Boxes2PixelsError(
            f"the student needs a multiple of its patch size {divisor} as imgsz (got {imgsz})"
        )
    return model, note


def _exported_skip_reason(name: str, precision: str, device: torch.device) -> str | None:
    """Why ``name`` (an exported-file row) cannot be profiled with these settings, or ``None``."""
    from .inference.openvino_cache import openvino_available

    if not _onnx_available():
        return "onnx/onnxruntime are not installed (pip install 'boxes2pixels[onnx]')"
    if name == "student-onnx" and (precision != "fp32" or device.type != "cpu"):
        return "onnxruntime is profiled at fp32 on the CPU only"
    if name == "student-openvino":
        if not openvino_available():
            return "OpenVINO is not installed (pip install 'boxes2pixels[openvino]')"
        if precision not in ("fp32", "bf16") or device.type != "cpu":
            return "OpenVINO is profiled at fp32 and bf16 on the CPU only"
    return None


def _baseline(name: str, imgsz: int, num_classes: int) -> tuple[nn.Module, tuple[int, int], str]:
    """A random-weight baseline, its input size (a multiple of 32 near ``imgsz``), its note."""
    from .baselines import BASELINES, BaselineModel, nearest_multiple

    side = nearest_multiple(imgsz, BASELINES[name].divisor)
    note = "random weights"
    if side != imgsz:
        note += f"; {side}×{side}: nearest multiple of 32 to {imgsz}"
    model = BaselineModel(name, num_classes=num_classes, encoder_init="random")
    return model, (side, side), note


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
        models: names among ``student``, ``student-onnx``, ``student-openvino``, ``unet``,
            ``deeplabv3``, ``segformer`` (comma-separated string or sequence). An exported-file
            row is skipped (with a progress message) when its runtime is missing or cannot run
            ``precision`` on ``device``, unless it is the only model asked for (an error).
        imgsz: the student's input side; baselines use the nearest multiple of 32.
        batch: images per call.
        device: ``cpu``, ``cuda``, ... or ``auto``.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``
            (see :func:`boxes2pixels.inference.resolve_precision`).
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
    from .inference.precision import resolve_device, resolve_precision

    names = parse_models(models)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    prec = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    say = progress or (lambda _msg: None)
    if imgsz < 1:
        raise Boxes2PixelsError(f"imgsz must be positive (got {imgsz})")
    student_model, note = (
        _profile_student(student, num_classes, imgsz)
        if any(n.startswith("student") for n in names)
        else (None, "")
    )
    torch_options = {
        "batch": batch,
        "device": dev,
        "precision": prec,
        "channels_last": dtype is not None if channels_last is None else channels_last,
        "compile_model": compile_model,
    }
    entries: list[_Entry] = []
    try:
        with torch_threads(threads):
            for name in names:
                if name in EXPORTED:
                    entry = _exported_or_skip(
                        name, names, student_model, imgsz, batch, prec, dev, threads, say
                    )
                else:
                    model, hw, row_note = (
                        (student_model, (imgsz, imgsz), note)
                        if name == "student"
                        else _baseline(name, imgsz, num_classes)
                    )
                    say(f"preparing {name} at {hw[0]}×{hw[1]} ({prec})")
                    entry = _torch_entry(name, model, hw, note=row_note, **torch_options)
                if entry is not None:
                    entries.append(entry)
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
    return _finish_rows(entries, times, batch)


def _exported_or_skip(
    name: str,
    names: list[str],
    student: nn.Module | None,
    imgsz: int,
    batch: int,
    precision: str,
    device: torch.device,
    threads: int | None,
    say: Callable[[str], None],
) -> _Entry | None:
    """The ``name`` entry (an exported-file row), or ``None`` (with a message) when it cannot
    run here.

    Raises:
        Boxes2PixelsError: it cannot run here and it is the only model asked for.
    """
    why = _exported_skip_reason(name, precision, device)
    if why is not None:
        if names == [name]:
            raise Boxes2PixelsError(f"cannot profile {name}: {why}")
        say(f"skipping {name}: {why}")
        return None
    assert student is not None
    say(f"exporting the student to ONNX at {imgsz}×{imgsz} for {EXPORTED[name]}")
    return _exported_entry(
        name, student, (imgsz, imgsz), batch=batch, threads=threads, precision=precision
    )


def _finish_rows(entries: list[_Entry], times: list[list[float]], batch: int) -> list[ProfileRow]:
    """The entries' rows with median latency, throughput and ratio to the student filled in."""
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


def default_precisions() -> str:
    """``b2p profile``'s default: ``fp32,bf16`` on CPUs with bf16 matrix instructions, else
    ``fp32``."""
    from .inference.precision import cpu_info

    return "fp32,bf16" if cpu_info().bf16_matrix else "fp32"


def profile_precisions(
    models: str | Sequence[str] = DEFAULT_MODELS,
    precisions: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> Iterator[tuple[str, list[ProfileRow]]]:
    """:func:`profile_models` once per precision, yielding ``(precision, rows)`` as each ends.

    Args:
        models: as for :func:`profile_models`.
        precisions: comma-separated string or sequence (default :func:`default_precisions`).
        **kwargs: the other arguments of :func:`profile_models`.
    """
    if precisions is None:
        precisions = default_precisions()
    if isinstance(precisions, str):
        precisions = precisions.split(",")
    for prec in [p.strip() for p in precisions if p.strip()]:
        yield prec, profile_models(models, precision=prec, **kwargs)


def latency_ratio(rows: Sequence[ProfileRow], name: str, reference: str) -> float | None:
    """Latency of row ``name`` over that of row ``reference``; ``None`` when one is missing."""
    by_name = {r.name: r for r in rows}
    if name not in by_name or reference not in by_name:
        return None
    return by_name[name].latency_ms / by_name[reference].latency_ms


def profile_json(tables: Sequence[tuple[str, Sequence[ProfileRow]]]) -> list[dict[str, Any]]:
    """The ``b2p profile --json`` document: every row's :meth:`ProfileRow.to_json`; rows after
    the first precision's are named ``NAME@PRECISION``."""
    items = []
    for i, (prec, rows) in enumerate(tables):
        for row in rows:
            item = row.to_json()
            if i > 0:
                item["name"] = f"{row.name}@{prec}"
            items.append(item)
    return items


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
