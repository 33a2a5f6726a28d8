"""The one place that decides how a model segments images: whole or tiled, and in which
precision.

:func:`plan_inference` turns what a caller asks (``tile``, ``tile_size``, ``imgsz``,
``precision``) and what the model is (its runtime, the crop size it was trained on, the fixed
input of a static export) into an :class:`InferencePlan`: what will run, recorded as such.
:func:`segment` runs a plan. ``predict``, ``evaluate``, ``review``, the training validation,
``Student.predict`` and the benchmark all segment through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import Boxes2PixelsError
from .batched import model_device, predict_label_maps
from .contract import crop_size_of, model_runtime
from .precision import choose_precision, precision_dtype, resolve_device
from .tiled import predict_tiled

DEFAULT_OVERLAP = 0.25
"""Fraction of a tile shared with its neighbours."""

GPU_BATCH, CPU_BATCH = 16, 4
"""Images (whole) or windows (tiled) per forward pass when none is asked: on a GPU small
batches leave it idle (NVIDIA H200, student 518²: bf16 autocast is slower than fp32 at batch
1 and twice as fast at 16, docs/performance.md); on a CPU the batch changes little."""


@dataclass(frozen=True)
class InferencePlan:
    """How a model segments images; recorded in ``b2p_predict.json`` as what ran.

    Attributes:
        runtime: ``torch``, ``onnx`` (onnxruntime) or ``openvino``.
        device: where the model runs (``cpu``, ``cuda:0``, ...).
        precision: the precision that runs (``fp32``, ``bf16``, ``fp16``), never ``auto``.
        precision_reason: why: ``asked``, or what ``auto`` detected.
        tiled: windows at native resolution (else the whole image letterboxed).
        tile_size: window side (a multiple of the model's patch size) when ``tiled``.
        tile_overlap: fraction of a window shared with its neighbours when ``tiled``.
        imgsz: long side of the letterboxed image when not ``tiled``.
        why_tiled: ``asked``, or ``trained on N px windows`` for a crop-trained model.
        notes: what was asked and does not run as asked (a tile size without tiling, a
            size rounded to the patch size or fixed by a static export), one line each.
        batch_size: images (whole) or windows (tiled) per forward pass.
    """

    runtime: str
    device: str
    precision: str
    precision_reason: str
    tiled: bool
    tile_size: int | None
    tile_overlap: float | None
    imgsz: int | None
    why_tiled: str | None = None
    notes: list[str] = field(default_factory=list)
    batch_size: int = CPU_BATCH

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values."""
        return asdict(self)

    def describe(self) -> str:
        """One line for people: runtime, device, precision and why, whole or tiled and why."""
        if self.tiled:
            how = f"tiled, {self.tile_size} px windows ({self.why_tiled})"
        else:
            how = f"whole images letterboxed to {self.imgsz} px"
        return (
            f"{self.runtime} on {self.device}, {self.precision} ({self.precision_reason}), "
            f"{how}, batch {self.batch_size}"
        )


@dataclass
class Segmentation:
    """The result of :func:`segment`.

    Attributes:
        labels: one H×W ``uint8`` label map per image, at the image's own size.
        confidence: with ``confidence=True``, one H×W ``float32`` map per image: the softmax
            probability of the winning class.
        windows: forward windows run (images when whole, tiles when tiled).
    """

    labels: list[np.ndarray]
    confidence: list[np.ndarray] | None = None
    windows: int = 0
    plan: InferencePlan | None = field(default=None, repr=False)


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def _fixed_side(model: Any) -> int | None:
    """The largest square a static export takes (from its file's metadata), or ``None`` when
    the model takes any size."""
    fixed = getattr(model, "fixed_hw", None)
    return min(int(v) for v in fixed) if fixed else None


def _batch(value: Any) -> int | None:
    """An asked batch size, checked: a whole number of at least 1 (``None``: not asked)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Boxes2PixelsError(f"batch size must be a whole number of at least 1, got {value!r}")
    return value


def _precision(model: Any, runtime: str, precision: str) -> tuple[str, str]:
    """``(precision that runs, why)`` for a runtime."""
    name = precision.lower()
    if name not in ("auto", "fp32", "bf16", "fp16"):
        raise Boxes2PixelsError(f"unknown precision '{precision}' (use auto, fp32, bf16 or fp16)")
    if runtime == "onnx":
        if name in ("bf16", "fp16"):
            raise Boxes2PixelsError(
                f"precision {name}: onnxruntime runs the exported file in fp32 only; use "
                "--precision fp32 or auto, or --runtime openvino (or torch with the model folder)"
            )
        return "fp32", "onnxruntime runs fp32"
    if name != "auto":
        return name, "asked"
    import torch

    device = torch.device("cpu") if runtime == "openvino" else model_device(model)
    choice = choose_precision(device)
    return choice.precision, f"auto: {choice.reason}"


def plan_inference(
    model: Any,
    *,
    tile: bool = False,
    tile_size: int | None = None,
    tile_overlap: float | None = None,
    imgsz: int | None = None,
    precision: str = "auto",
    batch_size: int | None = None,
) -> InferencePlan:
    """Decide how ``model`` segments images (see the module docstring).

    Rules: a model trained on native-resolution windows (``b2p train --crop-size``) is always
    tiled, by default with windows of its crop size. A static export takes one input size:
    its windows (tiled) or its letterbox (whole) are that size, whatever was asked.
    ``auto`` precision is :func:`~boxes2pixels.inference.precision.choose_precision`'s pick
    for the device (OpenVINO: the CPU); onnxruntime runs fp32 only. ``tile_overlap``
    ``None`` is :data:`DEFAULT_OVERLAP`; ``batch_size`` ``None`` is :data:`GPU_BATCH` on a
    CUDA device, else :data:`CPU_BATCH`. What was asked and does not run as asked is said in
    the plan's ``notes``.

    Raises:
        Boxes2PixelsError: an unknown precision, a reduced precision asked of onnxruntime, a
            tile overlap outside ``[0, 0.9]``, or a size below 1.
    """
    runtime = model_runtime(model)
    name, reason = _precision(model, runtime, precision)
    device = "cpu" if runtime == "openvino" else str(model_device(model))
    if runtime == "onnx":
        device = "cuda" if "CUDAExecutionProvider" in model.session.get_providers() else "cpu"
    batch = _batch(batch_size) or (GPU_BATCH if device.startswith("cuda") else CPU_BATCH)
    for label, value in (("tile size", tile_size), ("imgsz", imgsz)):
        if value is not None and int(value) < 1:
            raise Boxes2PixelsError(f"{label} must be at least 1, got {value}")
    crop, fixed = crop_size_of(model), _fixed_side(model)
    multiple = int(model.patch_size)
    overlap = DEFAULT_OVERLAP if tile_overlap is None else float(tile_overlap)
    notes: list[str] = []
    if tile or crop:
        if not 0.0 <= overlap <= 0.9:
            raise Boxes2PixelsError(f"tile overlap must be between 0 and 0.9, got {overlap}")
        side = tile_size or crop or imgsz or int(model.imgsz)
        side = _round_up(min(side, fixed) if fixed else side, multiple)  # static: no larger
        if tile_size is not None and side != tile_size:
            why = f"the static export's {fixed} px" if fixed and tile_size > fixed else (
                f"a multiple of the patch size {multiple}")  # fmt: skip
            notes.append(f"tile size {tile_size} runs as {side} px ({why})")
        return InferencePlan(
            runtime, device, name, reason, True, side, overlap, None,
            "asked" if tile else f"trained on {crop} px windows", notes, batch,
        )  # fmt: skip
    if tile_size is not None or tile_overlap is not None:
        notes.append("a tile size or overlap applies only to tiled inference (--tile): not used")
    side = model.letterbox_side(imgsz) if fixed else int(imgsz or model.imgsz)
    if fixed and imgsz is not None and side != imgsz:
        notes.append(f"imgsz {imgsz} runs as {side} px (the static export's input size)")
    return InferencePlan(
        runtime, device, name, reason, False, None, None, side, notes=notes, batch_size=batch
    )


def segment(
    model: Any,
    images: np.ndarray | Sequence[np.ndarray],
    plan: InferencePlan | None = None,
    *,
    batch_size: int | None = None,
    confidence: bool = False,
    callback: Callable[[int, int], None] | None = None,
    **asked: Any,
) -> Segmentation:
    """Segment RGB images (H×W×3 ``uint8``) with ``model`` as ``plan`` says.

    Args:
        model: a :class:`~boxes2pixels.inference.SegmentationModel` on its device.
        images: one image or a sequence of images of any sizes.
        plan: from :func:`plan_inference`; without one, ``asked`` (its keyword arguments:
            ``tile``, ``tile_size``, ``tile_overlap``, ``imgsz``, ``precision``) makes one.
        batch_size: images (whole) or windows (tiled) per forward pass; ``None``: the plan's.
        confidence: also return the winning class's softmax probability per pixel.
        callback: tiled only: ``callback(windows_done, windows_total)`` per image's batches.

    Returns:
        A :class:`Segmentation` (label maps at each image's own size, the plan that ran).
    """
    plan = plan or plan_inference(model, batch_size=batch_size, **asked)
    if batch_size is not None and batch_size != plan.batch_size:
        plan = replace(plan, batch_size=_batch(batch_size))
    if isinstance(images, np.ndarray):
        images = [images] if images.ndim == 3 else list(images)
    dtype = precision_dtype(plan.precision) if plan.runtime == "torch" else None
    with _runtime_precision(model, plan):
        return _segment(model, images, plan, dtype, confidence, callback)


@contextmanager
def _runtime_precision(model: Any, plan: InferencePlan) -> Iterator[None]:
    """OpenVINO runs the plan's precision for the call (its own default is restored)."""
    if plan.runtime != "openvino":
        yield
        return
    before, model.precision = model.precision, plan.precision
    try:
        yield
    finally:
        model.precision = before


def _segment(
    model: Any,
    images: Sequence[np.ndarray],
    plan: InferencePlan,
    dtype: Any,
    confidence: bool,
    callback: Callable[[int, int], None] | None,
) -> Segmentation:
    """Run ``plan`` over ``images``: each tiled, or all letterboxed whole in batches."""
    result = Segmentation([], [] if confidence else None, plan=plan)
    if plan.tiled:
        for image in images:
            labels, conf, windows = predict_tiled(
                model, image, tile_size=int(plan.tile_size or 0),
                overlap=float(plan.tile_overlap or 0.0), batch_size=plan.batch_size, dtype=dtype,
                confidence=confidence, callback=callback,
            )  # fmt: skip
            result.labels.append(labels)
            result.windows += windows
            if result.confidence is not None and conf is not None:
                result.confidence.append(conf)
        return result
    labels, confs = predict_label_maps(
        model, images, imgsz=int(plan.imgsz or model.imgsz), batch_size=plan.batch_size,
        dtype=dtype, confidence=confidence,
    )  # fmt: skip
    result.labels, result.windows = labels, len(labels)
    if result.confidence is not None:
        result.confidence = confs
    return result


def predict_images(
    model: Any,
    images: np.ndarray | Sequence[np.ndarray],
    *,
    imgsz: int | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    device: Any = None,
) -> list[np.ndarray]:
    """``model.predict``'s body for every model kind: label maps through :func:`segment`
    (whole and letterboxed to ``imgsz``, or tiled for a model trained on windows), after
    moving a torch model to ``device`` when one is given."""
    import torch

    if device is not None and isinstance(model, torch.nn.Module):
        model.to(resolve_device(device))
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if len(images) == 0:
        return []
    return segment(model, images, batch_size=batch_size, imgsz=imgsz, precision=precision).labels
