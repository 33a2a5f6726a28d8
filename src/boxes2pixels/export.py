"""ONNX export of a trained model and prediction with onnxruntime (optional extra ``onnx``).

:func:`export_onnx` writes an ONNX file whose input is ``image`` (a normalised B×3×H×W
float32 batch, like ``Student.forward``) and whose outputs are the model's logits (``fine``,
and ``binary`` with ``heads="all"``). The model's class names, normalisation, input size and
patch multiple travel inside the file as metadata, so :class:`OnnxStudent` can predict from
the file alone with the same preprocessing and the same results as ``Student.predict``.
After writing, the export is checked: onnxruntime's outputs must match PyTorch's within
``atol`` on a random input.

A ``dynamic`` export accepts any batch size and any height and width that are multiples of
the model's patch size; a static export accepts exactly the size it was exported at (faster
to load, and what ``b2p profile`` times). ``Student.predict`` letterboxes each image to the
smallest multiple of 14 around its aspect ratio, so prediction on images of several shapes
needs a dynamic export; a static export predicts images whose letterboxed size equals its own.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import Boxes2PixelsError, CheckpointError

ONNX_INSTALL_HINT = "ONNX export needs onnx and onnxruntime: pip install 'boxes2pixels[onnx]'"
METADATA_KEY = "boxes2pixels"
DEFAULT_OPSET = 18
HEADS = ("fine", "all")


def _import_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise Boxes2PixelsError(ONNX_INSTALL_HINT) from exc
    return onnx, onnxruntime


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


def _model_divisor(model: nn.Module) -> int:
    return int(getattr(model, "divisor", None) or getattr(model, "patch_size", None) or 14)


def _model_metadata(
    model: nn.Module, hw: tuple[int, int], dynamic: bool, outputs: Sequence[str]
) -> dict[str, Any]:
    num_classes = int(model.num_classes)
    names = list(getattr(model, "class_names", None) or [])
    if len(names) != num_classes:
        names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]
    init = getattr(model, "backbone_init", None) or getattr(model, "encoder_init", None)
    return {
        "format": 1,
        "model": type(model).__name__,
        "num_classes": num_classes,
        "class_names": names,
        "mean": [float(v) for v in model.mean],
        "std": [float(v) for v in model.std],
        "imgsz": int(getattr(model, "imgsz", max(hw))),
        "multiple": _model_divisor(model),
        "input_hw": list(hw),
        "dynamic": dynamic,
        "outputs": list(outputs),
        "backbone_init": init,
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
    dynamic: bool = False,
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
        imgsz: side (or ``(h, w)``) of the example input; default the model's ``imgsz``.
            Must be a multiple of the model's patch size (14 for the student).
        dynamic: make batch, height and width dynamic axes.
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
    onnx, _ = _import_onnx()
    from .io import atomic_path

    if heads not in HEADS:
        raise Boxes2PixelsError(f"unknown heads '{heads}' (use {' or '.join(HEADS)})")
    if not isinstance(model, nn.Module):
        model = load_model(model)
    model = model.eval().float().to("cpu")
    hw = _as_hw(imgsz if imgsz is not None else int(model.imgsz))
    divisor = _model_divisor(model)
    if hw[0] % divisor or hw[1] % divisor:
        raise Boxes2PixelsError(
            f"export size {hw[0]}×{hw[1]} is not a multiple of the model's patch size {divisor}"
        )
    # torch.export specialises dimensions of size 1, so a dynamic batch needs an example of 2
    x = torch.randn(max(batch, 2) if dynamic else batch, 3, *hw)
    with torch.inference_mode():
        reference = model(x)
    outputs = ("fine",) if heads == "fine" else tuple(reference)
    wrapper = _Outputs(model, outputs).eval()
    dynamic_shapes = None
    if dynamic:
        dim = torch.export.Dim
        dynamic_shapes = {
            "x": {
                0: dim("batch", min=1, max=1024),
                2: dim.AUTO if divisor == 1 else divisor * dim("h_patches", min=1, max=4096),
                3: dim.AUTO if divisor == 1 else divisor * dim("w_patches", min=1, max=4096),
            }
        }
    path = Path(path)
    log = io.StringIO()
    with atomic_path(path) as tmp:
        try:
            with contextlib.redirect_stdout(log):  # the exporter prints its progress
                program = torch.onnx.export(
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
                f"{path}: ONNX export failed ({type(exc).__name__}: {exc})\n"
                + log.getvalue()[-2000:]
            ) from exc
        proto = program.model_proto
        meta = _model_metadata(model, hw, dynamic, outputs)
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = json.dumps(meta)
        onnx.save_model(proto, str(tmp))
        # checked before the file takes its name: a failed check leaves no file behind
        diff = _verify(tmp, path, model, x, reference, outputs, divisor, atol) if verify else None
    return ExportResult(path=path, input_hw=hw, dynamic=dynamic, outputs=outputs, max_abs_diff=diff)


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


def load_model(spec: str | Path) -> nn.Module:
    """A saved student or baseline from a model folder or a run folder (``best/`` is used).

    Raises:
        CheckpointError: the folder holds neither.
    """
    from .baselines import BaselineModel, read_baseline_config
    from .predict import load_student, resolve_model_dir

    path = Path(spec).expanduser()
    if path.exists():
        folder = resolve_model_dir(path)
        if read_baseline_config(folder) is not None:
            return BaselineModel.from_pretrained(folder)
    return load_student(spec, "cpu")


class OnnxStudent:
    """An exported model run by onnxruntime, with ``Student.predict``'s interface.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
        providers: onnxruntime execution providers (default: CUDA when available, then CPU).
        threads: intra-op threads for the CPU provider (default: onnxruntime's choice).

    Attributes:
        num_classes, class_names, mean, std, imgsz, multiple: from the file's metadata.
        config: the whole metadata dict (``backbone_init`` says whether weights were random).

    Raises:
        CheckpointError: the file is missing, not ONNX, or was not written by ``export_onnx``.
    """

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        _, ort = _import_onnx()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        chosen = (
            list(providers)
            if providers
            else [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        )
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: cannot load ONNX model ({exc})") from exc
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise CheckpointError(f"{path}: no boxes2pixels metadata (export it with `b2p export`)")
        self.path = path
        self.config: dict[str, Any] = json.loads(raw)
        self.num_classes = int(self.config["num_classes"])
        self.class_names = list(self.config["class_names"])
        self.mean = tuple(self.config["mean"])
        self.std = tuple(self.config["std"])
        self.imgsz = int(self.config["imgsz"])
        self.multiple = int(self.config["multiple"])
        self.dynamic = bool(self.config["dynamic"])
        self.input_hw = tuple(self.config["input_hw"])
        self.backbone_init = self.config.get("backbone_init")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None

    @property
    def random_backbone(self) -> bool:
        """True when the exported model's backbone was initialised randomly."""
        return self.backbone_init == "random"

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits for a normalised float32 batch B×3×H×W, by output name."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.dynamic and tuple(x.shape[2:]) != self.input_hw:
            raise Boxes2PixelsError(
                f"{self.path}: exported for {self.input_hw[0]}×{self.input_hw[1]} inputs, got "
                f"{x.shape[2]}×{x.shape[3]}; re-export with --dynamic or --imgsz"
            )
        values = self.session.run(None, {self._input_name: x})
        return dict(zip(self.output_names, values, strict=True))

    def __call__(
        self, x: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """``Student.forward``'s contract on a torch tensor (runs on the CPU).

        The graph computes the heads it was exported with; ``heads`` selects among them.
        """
        if self.batch is not None and x.shape[0] != self.batch:
            parts = [self.run(x[i : i + 1].float().cpu().numpy()) for i in range(x.shape[0])]
            names = [k for k in parts[0] if heads is None or k in heads]
            return {k: torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in names}
        out = self.run(x.float().cpu().numpy())
        return {k: torch.from_numpy(v) for k, v in out.items() if heads is None or k in heads}

    def predict(
        self,
        images: Any,
        *,
        imgsz: int | None = None,
        batch_size: int = 4,
        precision: str = "fp32",
        device: str | None = None,
    ) -> list[np.ndarray]:
        """Label maps (H×W ``uint8``, each at its image's size), like ``Student.predict``.

        ``precision`` and ``device`` are accepted for compatibility; onnxruntime runs the
        fp32 graph on the providers chosen at load time.
        """
        from .student.inference import predict_label_maps

        return predict_label_maps(self, images, imgsz=imgsz, batch_size=batch_size)


def load_onnx(path: str | Path, threads: int | None = None) -> OnnxStudent:
    """Open an ONNX file written by :func:`export_onnx` for prediction."""
    return OnnxStudent(path, threads=threads)
