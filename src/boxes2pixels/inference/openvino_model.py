"""Running an ONNX file written by ``b2p export`` with OpenVINO (optional extra ``openvino``).

OpenVINO reads the ``.onnx`` file directly (no conversion step) and, on CPUs with bf16 matrix
instructions, runs it in bf16: on the AMX Xeon of ``docs/performance.md`` the student runs
about 1.4× faster than PyTorch's fastest exact path (4.1× its fp32). The model is read once
for its metadata and compiled from the file (see
:func:`~boxes2pixels.inference.openvino_cache.compile_cached` for the cache).
:class:`OpenVinoStudent` is an :class:`~boxes2pixels.inference.exported.ExportedModel`: same
preprocessing, same label maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .exported import METADATA_KEY, ExportedModel
from .openvino_cache import (
    check_openvino_device,
    compile_cached,
    import_openvino,
    release_at_exit,
    resolve_openvino_precision,
    sha256_file,
)


class OpenVinoStudent(ExportedModel):
    """An exported model run by OpenVINO on the CPU, with ``Student.predict``'s interface.

    Args:
        path: an ``.onnx`` file written by ``export_onnx``.
        precision: OpenVINO's inference precision for calls: ``fp32`` (default, as
            ``Student``), ``bf16``, ``fp16`` or ``auto`` (bf16 on CPUs with bf16 matrix
            instructions, else fp32). ``predict(precision=...)`` compiles (once) for another.
        threads: inference threads (default: OpenVINO's choice, all cores).

    Raises:
        CheckpointError: the file is missing, not ONNX, or was not written by ``export_onnx``.
        Boxes2PixelsError: OpenVINO is not installed, or the precision is unknown.
    """

    runtime = "openvino"

    def __init__(
        self, path: str | Path, precision: str = "fp32", threads: int | None = None
    ) -> None:
        ov = import_openvino()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file not found")
        self._core = ov.Core()
        try:
            model = self._core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises its own exception types
            raise CheckpointError(f"{path}: cannot load ONNX model ({exc})") from exc
        key = ["framework", METADATA_KEY]
        raw = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None
        shape = model.inputs[0].get_partial_shape()[0]
        super().__init__(path, raw, None if shape.is_dynamic else shape.get_length())
        self.threads = threads
        self.output_names = [o.get_any_name() for o in model.outputs]
        self._compiled: dict[str, Any] = {}
        self.precision = resolve_openvino_precision(precision)
        release_at_exit(self)

    def release(self) -> None:
        """Drop the compiled models (compiled again when next used)."""
        self._compiled.clear()

    def _compile(self, precision: str) -> Any:
        """The model compiled for ``precision`` (cached)."""
        if precision not in self._compiled:
            # from the file: with the cache, OpenVINO then loads the compiled blob directly
            self._compiled[precision] = compile_cached(
                self._core, self.path, precision, self.threads, sha256_file(self.path)
            )
        return self._compiled[precision]

    def run(self, x: np.ndarray, precision: str | None = None) -> dict[str, np.ndarray]:
        """Raw fp32 logits for a normalised float32 batch B×3×H×W, by output name, at
        ``precision`` (default: the one chosen at load)."""
        compiled = self._compile(resolve_openvino_precision(precision or self.precision))
        # copied in and out: a shared input stays bound to the request after the call
        values = compiled(self.check_input(x), share_inputs=False, share_outputs=False)
        return {
            name: np.asarray(values[i], dtype=np.float32)
            for i, name in enumerate(self.output_names)
        }

    def predict(
        self,
        images: Any,
        *,
        imgsz: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        device: str | torch.device | None = None,
    ) -> list[np.ndarray]:
        """Label maps like ``Student.predict``; ``precision`` is OpenVINO's inference precision
        (``auto`` as in :func:`resolve_openvino_precision`); ``device`` must be ``auto``/``cpu``."""
        check_openvino_device(device)
        return super().predict(images, imgsz=imgsz, batch_size=batch_size, precision=precision)
