"""What every runtime of an ``.onnx`` file written by ``b2p export`` shares.

:class:`ExportedModel` reads the model's class names, normalisation, input size and patch
multiple from the file's ``boxes2pixels`` metadata, so it predicts from the file alone with the
same preprocessing and the same results as ``Student.predict``. It meets the
:class:`~boxes2pixels.models.SegmentationModel` contract; its runtimes are
:class:`~boxes2pixels.onnx_runtime.OnnxStudent` (onnxruntime) and
:class:`~boxes2pixels.openvino_runtime.OpenVinoStudent` (OpenVINO).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import Boxes2PixelsError, CheckpointError
from .inference.segmentation import predict_images

METADATA_KEY = "boxes2pixels"
"""Key of the JSON metadata entry that ``export_onnx`` writes into the file."""


class ExportedModel(ABC):
    """An exported model with ``Student.predict``'s interface; subclasses implement ``run``.

    Attributes:
        runtime: the runtime's name (``onnx``, ``openvino``).
        path: the ``.onnx`` file.
        num_classes, class_names, mean, std, imgsz, multiple: from the file's metadata.
        config: the whole metadata dict (``backbone_init`` says whether weights were random).
        batch: the fixed batch of a static export (``None`` when the batch is dynamic).
    """

    runtime: ClassVar[str]

    def __init__(self, path: Path, raw_metadata: str | None, batch: int | None) -> None:
        if raw_metadata is None:
            raise CheckpointError(f"{path}: no boxes2pixels metadata (export it with `b2p export`)")
        self.path = path
        self.config: dict[str, Any] = json.loads(raw_metadata)
        self.num_classes = int(self.config["num_classes"])
        self.class_names = list(self.config["class_names"])
        self.mean = tuple(self.config["mean"])
        self.std = tuple(self.config["std"])
        self.imgsz = int(self.config["imgsz"])
        self.multiple = int(self.config["multiple"])
        self.dynamic = bool(self.config["dynamic"])
        self.input_hw = tuple(self.config["input_hw"])
        self.backbone_init = self.config.get("backbone_init")
        self.batch = batch

    @property
    def patch_size(self) -> int:
        """Input sides must be multiples of this (the exported model's patch multiple)."""
        return self.multiple

    @property
    def random_backbone(self) -> bool:
        """True when the exported model's backbone was initialised randomly."""
        return self.backbone_init == "random"

    def to(self, device: Any) -> ExportedModel:
        """Returns ``self``: the runtime runs where it was placed when the file was loaded."""
        return self

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a contiguous float32 array, checked against a static export's size."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.dynamic and tuple(x.shape[2:]) != self.input_hw:
            raise Boxes2PixelsError(
                f"{self.path}: exported for {self.input_hw[0]}×{self.input_hw[1]} inputs, got "
                f"{x.shape[2]}×{x.shape[3]}; re-export with --dynamic or --imgsz"
            )
        return x

    @abstractmethod
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits for a normalised float32 batch B×3×H×W, by output name."""

    def __call__(
        self, x: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """``Student.forward``'s contract on a torch tensor (outputs on the CPU).

        The graph computes the heads it was exported with; ``heads`` selects among them. A
        static export's fixed batch is filled in chunks (the last one padded with zeros).
        """
        arr = x.float().cpu().numpy()
        if self.batch is None or len(arr) == self.batch:
            out = self.run(arr)
        else:
            parts = []
            for start in range(0, len(arr), self.batch):
                chunk = arr[start : start + self.batch]
                pad = np.zeros((self.batch - len(chunk), *chunk.shape[1:]), np.float32)
                parts.append(
                    {k: v[: len(chunk)] for k, v in self.run(np.concatenate([chunk, pad])).items()}
                )
            out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
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

        ``device`` is accepted for compatibility: the runtime runs where it was placed at
        load time. ``precision`` is honoured by runtimes that have one (OpenVINO).
        """
        return predict_images(self, images, imgsz=imgsz, batch_size=batch_size, precision=precision)
