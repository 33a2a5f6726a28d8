"""Running an ONNX file written by ``b2p export`` with onnxruntime (optional extra ``onnx``).

:class:`OnnxStudent` reads the model's class names, normalisation, input size and patch
multiple from the file's metadata, so it predicts from the file alone with the same
preprocessing and the same results as ``Student.predict``. It meets the
:class:`~boxes2pixels.models.SegmentationModel` contract; :func:`~boxes2pixels.models.load_model`
returns one for an ``.onnx`` file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import Boxes2PixelsError, CheckpointError
from .student.inference import predict_label_maps

ONNX_INSTALL_HINT = "ONNX export needs onnx and onnxruntime: pip install 'boxes2pixels[onnx]'"
METADATA_KEY = "boxes2pixels"
"""Key of the JSON metadata entry that ``export_onnx`` writes into the file."""

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


class OnnxStudent:
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
    def patch_size(self) -> int:
        """Input sides must be multiples of this (the exported model's patch multiple)."""
        return self.multiple

    @property
    def random_backbone(self) -> bool:
        """True when the exported model's backbone was initialised randomly."""
        return self.backbone_init == "random"

    def to(self, device: Any) -> OnnxStudent:
        """Returns ``self``: onnxruntime runs on the providers chosen when the file was loaded."""
        return self

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
        """``Student.forward``'s contract on a torch tensor (outputs on the CPU).

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
        device: str | torch.device | None = None,
    ) -> list[np.ndarray]:
        """Label maps (H×W ``uint8``, each at its image's size), like ``Student.predict``.

        ``precision`` and ``device`` are accepted for compatibility; onnxruntime runs the
        fp32 graph on the providers chosen at load time.
        """
        return predict_label_maps(self, images, imgsz=imgsz, batch_size=batch_size)
