"""ONNX export of a trained model, checked against PyTorch (optional extra ``onnx``).

:func:`export_onnx` writes an ONNX file whose input is ``image`` (a normalised B×3×H×W
float32 batch, like ``Student.forward``) and whose outputs are the model's logits (``fine``,
and ``binary`` with ``heads="all"``). The model's class names, normalisation, sizes and the
complete pre- and post-processing travel inside the file as JSON metadata (key
``boxes2pixels``, see :func:`pipeline_metadata`), so
:class:`~boxes2pixels.inference.onnx_model.OnnxStudent` (what ``load_model`` returns for the
file), or a client with nothing but onnxruntime and numpy (``examples/onnx_client.py``),
predicts from the file alone with the same results as ``Student.predict``. After writing, the
export is checked: onnxruntime's outputs must match PyTorch's within ``atol`` on a random
input.

By default the export is dynamic: any batch size and any height and width that are multiples
of the model's patch size, so images of every shape are letterboxed to their own aspect ratio,
as ``Student.predict`` does. A static export (``dynamic=False``, ``b2p export --static``, for
accelerators that need fixed shapes) takes exactly its own size: the runtime letterboxes every
image to it (see :class:`~boxes2pixels.inference.exported.ExportedModel`). On the 2-core CPU of
``docs/benchmark-profile-export.md`` both run equally fast in onnxruntime; the dynamic export
takes about twice as long to write.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import Boxes2PixelsError
from .inference import load_model, resolve_model_dir
from .inference.exported import METADATA_KEY
from .inference.onnx_model import OnnxStudent, import_onnx
from .io import atomic_path

DEFAULT_OPSET = 18
HEADS = ("fine", "all")
FORMATS = ("onnx",)


class _Outputs(nn.Module):
    """Turns a model's dict of logits into a tuple in a fixed order (what ONNX needs)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x, heads=self.names)
        return tuple(out[n] for n in self.names)


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ONNX file.
        input_hw: the (height, width) of the example input used for export and checking.
        dynamic: batch, height and width are dynamic axes.
        outputs: output names, in order.
        max_abs_diff: largest |onnxruntime − PyTorch| over the outputs on a random input
            (``None`` when not verified).
    """

    path: Path
    input_hw: tuple[int, int]
    dynamic: bool
    outputs: tuple[str, ...]
    max_abs_diff: float | None


METADATA_FORMAT = 2
"""Version of the metadata layout (2: with ``input``, ``preprocessing``, ``postprocessing``)."""


def pipeline_metadata(
    imgsz: int,
    multiple: int,
    mean: Sequence[float],
    std: Sequence[float],
    fixed_hw: tuple[int, int] | None,
) -> dict[str, Any]:
    """The ``preprocessing`` and ``postprocessing`` entries of an exported file's metadata.

    They spell out, rule by rule, what :func:`~boxes2pixels.geometry.letterbox`,
    :func:`~boxes2pixels.geometry.normalize` and
    :func:`~boxes2pixels.geometry.unletterbox_logits` do, so that a client without
    boxes2pixels reproduces ``b2p predict`` bit for bit (``examples/onnx_client.py``).

    Args:
        imgsz: the long side images are resized to.
        multiple: the patch multiple a dynamic export pads to.
        mean, std: per-channel normalisation of [0, 1] RGB values.
        fixed_hw: a static export's input size (the pad target), ``None`` when dynamic.
    """
    pad: dict[str, Any] = {
        "where": "bottom and right",
        "value": 0,
        "value_note": "uint8 black, before scaling and normalisation",
    }
    if fixed_hw is None:
        pad["to_multiple"] = multiple
        pad["rule"] = f"padded_h = ceil(content_h / {multiple}) * {multiple}, same for width"
    else:
        pad["to_size"] = list(fixed_hw)
        pad["rule"] = f"padded to exactly {fixed_hw[0]}×{fixed_hw[1]} (the static input)"
    preprocessing = {
        "decode": (
            "RGB uint8 H×W×3 with Pillow: EXIF orientation applied (ImageOps.exif_transpose); "
            "RGBA, LA, PA and P with transparency composited over white; 16-bit greys (I;16) "
            "scaled by 255/65535 and 32-bit (I, F) by 255/max, rounded half up; everything "
            "else Image.convert('RGB')"
        ),
        "channel_order": "RGB",
        "resize": {
            "long_side": imgsz,
            "content_size": (
                "s = long_side / max(H, W); content_h = max(1, round(H * s)), "
                "content_w = max(1, round(W * s)), in float64 with round half to even "
                "(Python's round)"
            ),
            "skip": "no resize when (content_h, content_w) == (H, W)",
            "interpolation": (
                "OpenCV cv2.resize on the uint8 image, dsize=(content_w, content_h): "
                "INTER_AREA when content_h < H (shrinking), else INTER_LINEAR"
            ),
        },
        "pad": pad,
        "scale": "x = float32(pixel) / float32(255)",
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "normalize": "x = (x - float32(mean[c])) / float32(std[c]), per RGB channel c",
        "layout": "NCHW float32, input 'image'",
    }
    postprocessing = {
        "output": "fine: N×C×padded_h×padded_w float32 logits (C = num_classes)",
        "crop": "logits[:, :, :content_h, :content_w] (the top-left content)",
        "upsample": {
            "to": "the decoded image's (H, W); skipped when the content already is H×W",
            "method": (
                "bilinear, half-pixel centres (align_corners=False), no antialiasing, "
                "separable: first along the width, then along the height"
            ),
            "taps": (
                "for an axis of n_in -> n_out: s = max(0, (i + 0.5) * n_in / n_out - 0.5) in "
                "float64; i0 = min(floor(s), n_in - 1); i1 = min(i0 + 1, n_in - 1); "
                "f = s - i0; w0 = float32(1 - f); w1 = float32(f)"
            ),
            "arithmetic": (
                "float32, no fused multiply-add: c = x[..., j0] * v0 + x[..., j1] * v1 "
                "(width taps), then out = c[..., i0, :] * w0 + c[..., i1, :] * w1 (height taps)"
            ),
        },
        "label": "argmax over the class axis (the first class on ties), as uint8",
        "classes": "label k is class_names[k]; 0 is background",
        "mask_file": "8-bit single-channel PNG of the labels, the image's size",
    }
    return {"preprocessing": preprocessing, "postprocessing": postprocessing}


def _model_metadata(
    model: nn.Module,
    hw: tuple[int, int],
    imgsz: int,
    dynamic: bool,
    batch: int,
    outputs: Sequence[str],
) -> dict[str, Any]:
    num_classes = int(model.num_classes)
    names = list(getattr(model, "class_names", None) or [])
    if len(names) != num_classes:
        names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]
    init = getattr(model, "backbone_init", None) or getattr(model, "encoder_init", None)
    multiple = int(model.patch_size)
    mean, std = [float(v) for v in model.mean], [float(v) for v in model.std]
    side = f"a multiple of {multiple}"
    shape = ["batch", 3, f"height, {side}", f"width, {side}"] if dynamic else [batch, 3, *hw]
    return {
        "format": METADATA_FORMAT,
        "model": type(model).__name__,
        "num_classes": num_classes,
        "class_names": names,
        "mean": mean,
        "std": std,
        "imgsz": imgsz,
        "multiple": multiple,
        "input_hw": list(hw),
        "dynamic": dynamic,
        "input": {"name": "image", "shape": shape},
        "outputs": list(outputs),
        "backbone_init": init,
        **pipeline_metadata(imgsz, multiple, mean, std, None if dynamic else hw),
    }


def _as_hw(imgsz: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return (imgsz, imgsz)
    h, w = (int(v) for v in imgsz)
    return (h, w)


def export_onnx(
    model: nn.Module | str | Path,
    path: str | Path,
    imgsz: int | Sequence[int] | None = None,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    *,
    heads: str = "fine",
    batch: int = 1,
    verify: bool = True,
    atol: float = 1e-3,
) -> ExportResult:
    """Export a student (or a baseline) to ONNX and check it against PyTorch.

    Uses torch's ``torch.export``-based exporter (it needs ``onnxscript``, part of the
    ``onnx`` extra). The file is written atomically.

    Args:
        model: a ``Student`` / ``BaselineModel``, or a saved model folder or run folder.
        path: the ``.onnx`` file to write.
        imgsz: the long side the file letterboxes images to (default: the model's
            ``imgsz``), and the side of the example input; a static export's input is
            ``imgsz``×``imgsz`` (with ``(h, w)``: h×w, letterboxed to the long side
            ``min(h, w)``). Must be a multiple of the model's patch size (14 for the student).
        dynamic: make batch, height and width dynamic axes (the default); ``False`` gives a
            fixed-size graph, to which every image is letterboxed.
        opset: ONNX opset version (18 suits onnxruntime ≥ 1.16).
        heads: ``fine`` (only the logits prediction uses, so the binary head is left out of
            the graph and costs nothing) or ``all`` (``fine`` and ``binary``).
        batch: batch size of the example input (the fixed batch of a static export).
        verify: compare onnxruntime's outputs with PyTorch's on a random input.
        atol: largest absolute difference accepted by the check.

    Returns:
        An :class:`ExportResult`.

    Raises:
        Boxes2PixelsError: onnx/onnxruntime are missing, the size is not a multiple of the
            patch size, or the check fails (the message gives the difference).
    """
    onnx, _ = import_onnx()
    if heads not in HEADS:
        raise Boxes2PixelsError(f"unknown heads '{heads}' (use {' or '.join(HEADS)})")
    if not isinstance(model, nn.Module):
        model = load_model(model, runtime="torch", device="cpu")
    model = model.eval().float().to("cpu")
    hw = _as_hw(imgsz if imgsz is not None else int(model.imgsz))
    divisor = int(model.patch_size)
    if hw[0] % divisor or hw[1] % divisor:
        raise Boxes2PixelsError(
            f"export size {hw[0]}×{hw[1]} is not a multiple of the model's patch size {divisor}"
        )
    # torch.export specialises dimensions of size 1, so a dynamic batch needs an example of 2
    x = torch.randn(max(batch, 2) if dynamic else batch, 3, *hw)
    with torch.inference_mode():
        reference = model(x)
    outputs = ("fine",) if heads == "fine" else tuple(reference)
    dynamic_shapes = _dynamic_shapes(divisor) if dynamic else None
    path = Path(path)
    with atomic_path(path) as tmp:
        program = _run_exporter(
            _Outputs(model, outputs).eval(), x, outputs, dynamic_shapes, opset, path
        )
        proto = program.model_proto
        side = max(hw) if dynamic else min(hw)
        meta = _model_metadata(model, hw, side, dynamic, batch, outputs)
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = json.dumps(meta)
        onnx.save_model(proto, str(tmp))
        # checked before the file takes its name: a failed check leaves no file behind
        diff = _verify(tmp, path, model, x, reference, outputs, divisor, atol) if verify else None
    return ExportResult(path=path, input_hw=hw, dynamic=dynamic, outputs=outputs, max_abs_diff=diff)


def _dynamic_shapes(divisor: int) -> dict[str, Any]:
    """Dynamic batch, and height and width in whole multiples of ``divisor``."""
    dim = torch.export.Dim
    return {
        "x": {
            0: dim("batch", min=1, max=1024),
            2: dim.AUTO if divisor == 1 else divisor * dim("h_patches", min=1, max=4096),
            3: dim.AUTO if divisor == 1 else divisor * dim("w_patches", min=1, max=4096),
        }
    }


def _run_exporter(
    wrapper: nn.Module,
    x: torch.Tensor,
    outputs: Sequence[str],
    dynamic_shapes: dict[str, Any] | None,
    opset: int,
    path: Path,
) -> Any:
    """torch's ``torch.export``-based ONNX exporter, quiet; its log ends any error message."""
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # the exporter prints its progress
            return torch.onnx.export(
                wrapper,
                (x,),
                dynamo=True,
                opset_version=opset,
                input_names=["image"],
                output_names=list(outputs),
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                verbose=False,
            )
    except ImportError as exc:
        raise Boxes2PixelsError(
            f"ONNX export needs onnxscript ({exc}): pip install 'boxes2pixels[onnx]'"
        ) from exc
    except Exception as exc:  # the exporter raises many types; keep its log
        raise Boxes2PixelsError(
            f"{path}: ONNX export failed ({type(exc).__name__}: {exc})\n" + log.getvalue()[-2000:]
        ) from exc


def _verify(
    tmp: Path,
    path: Path,
    model: nn.Module,
    x: torch.Tensor,
    reference: dict[str, torch.Tensor],
    outputs: Sequence[str],
    divisor: int,
    atol: float,
) -> float:
    """Largest |onnxruntime − PyTorch| of the file ``tmp`` (reported as ``path``)."""
    runner = OnnxStudent(tmp)
    checks = [(x, reference)]
    if runner.dynamic:  # a second batch size and shape catches sizes baked into the graph
        h, w = x.shape[-2:]
        x2 = torch.randn(x.shape[0] + 1, 3, h + divisor, w + 2 * divisor)
        with torch.inference_mode():
            checks.append((x2, model(x2)))
    diff = 0.0
    for inp, ref in checks:
        got = runner.run(inp.numpy())
        for name in outputs:
            if got[name].shape != tuple(ref[name].shape):
                raise Boxes2PixelsError(
                    f"{path}: onnxruntime output '{name}' has shape {got[name].shape}, "
                    f"PyTorch {tuple(ref[name].shape)}"
                )
            diff = max(diff, float(np.abs(got[name] - ref[name].float().numpy()).max()))
    if not diff <= atol:
        raise Boxes2PixelsError(
            f"{path}: onnxruntime outputs differ from PyTorch by {diff:.2e} (> {atol:g}); "
            "no file written"
        )
    return diff


def export_model(
    model: str | Path,
    out: str | Path | None = None,
    *,
    format: str = "onnx",
    imgsz: int | Sequence[int] | None = None,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    heads: str = "fine",
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """What ``b2p export`` does: export a saved model (or run's ``best/``) in ``format``.

    Args:
        model: a run folder (its ``best/`` model is used) or a saved student or baseline folder.
        out: the file to write (default: ``MODEL_FOLDER/model.onnx``).
        format: export format; only ``onnx``.
        imgsz, dynamic, opset, heads: as for :func:`export_onnx`.
        progress: called with a short message before the export starts.

    Raises:
        Boxes2PixelsError: unknown format, ``out`` a folder or not an ``.onnx`` file, or
            any error of :func:`export_onnx`.
        CheckpointError: ``model`` is not a model folder.
    """
    if format.lower() not in FORMATS:
        raise Boxes2PixelsError(
            f"unknown export format '{format}' (supported: {', '.join(FORMATS)})"
        )
    folder = resolve_model_dir(Path(model))
    target = Path(out) if out is not None else folder / "model.onnx"
    if target.is_dir():
        raise Boxes2PixelsError(
            f"{target}: --out is a folder; name the .onnx file to write (e.g. "
            f"{target / 'model.onnx'})"
        )
    if target.suffix.lower() != ".onnx":
        # b2p predict and load_model recognise an exported model by its suffix
        raise Boxes2PixelsError(
            f"{target}: the exported file must end in .onnx (b2p predict and load_model "
            f"recognise an exported model by it), e.g. {target.with_suffix('.onnx')}"
        )
    loaded = load_model(folder, runtime="torch", device="cpu")
    if progress is not None:
        progress(f"exporting {folder} to {target} ...")
    return export_onnx(loaded, target, imgsz=imgsz, dynamic=dynamic, opset=opset, heads=heads)
