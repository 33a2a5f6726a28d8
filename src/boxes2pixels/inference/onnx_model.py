"""Running an ONNX file written by ``b2p export`` with onnxruntime (optional extra ``onnx``).

:class:`OnnxStudent` is an :class:`~boxes2pixels.inference.exported.ExportedModel`: it
predicts from the file alone, with the same preprocessing and results as ``Student.predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import Boxes2PixelsError, CheckpointError
from .exported import METADATA_KEY, ExportedModel

ONNX_INSTALL_HINT = "ONNX export needs onnx and onnxruntime: pip install 'boxes2pixels[onnx]'"

_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def import_onnx() -> tuple[Any, Any]:
    """The ``onnx`` and ``onnxruntime`` modules, or an error saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise Boxes2PixelsError(ONNX_INSTALL_HINT) from exc
    return onnx, onnxruntime


def providers_for(device: str | torch.device | None, available: Sequence[str]) -> list[str]:
    """onnxruntime execution providers for a device name.

    ``auto`` (or ``None``): CUDA when available, then CPU; ``cpu``: the CPU only; ``cuda``
    or ``cuda:N``: CUDA then CPU, an error when onnxruntime has no CUDA provider here.
    """
    name = str(device or "auto").lower()
    if name == "auto":
        return [p for p in (_CUDA, _CPU) if p in available]
    if name == "cpu":
        return [_CPU]
    if name.startswith("cuda"):
        if _CUDA not in available:
            raise Boxes2PixelsError(
                f"device '{name}' requested but this onnxruntime has no CUDA provider "
                "(install onnxruntime-gpu, or use --device cpu)"
            )
        return [_CUDA, _CPU]
    raise Boxes2PixelsError(
        f"device '{name}' is not available to onnxruntime (use auto, cpu, cuda)"
    )


class OnnxStudent(ExportedModel):
    """An exported model run by onnxruntime, with ``Student.predict``'s interface.

    Args:
        path: an ``.onnx`` file written by ``export_onnx``.
        providers: onnxruntime execution providers (default: CUDA when available, then CPU).
        threads: intra-op threads for the CPU provider (default: onnxruntime's choice).

    Attributes:
        num_classes, class_names, mean, std, imgsz, multiple: from the file's metadata.
        config: the whole metadata dict (``backbone_init`` says whether weights were random).

    Raises:
        CheckpointError: the file is missing, not ONNX, or was not written by ``export_onnx``.
    """

    runtime = "onnx"

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        _, ort = import_onnx()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        chosen = list(providers or providers_for("auto", ort.get_available_providers()))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: cannot load ONNX model ({exc})") from exc
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        shape = self.session.get_inputs()[0].shape
        super().__init__(path, raw, shape[0] if isinstance(shape[0], int) else None)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits for a normalised float32 batch B×3×H×W, by output name."""
        values = self.session.run(None, {self._input_name: self.check_input(x)})
        return dict(zip(self.output_names, values, strict=True))
