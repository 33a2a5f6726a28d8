"""What every runtime of an ``.onnx`` file written by ``b2p export`` shares.

:class:`ExportedModel` reads the model's class names, normalisation, input size and patch
multiple from the file's ``boxes2pixels`` metadata, so it predicts from the file alone with the
same preprocessing and the same results as ``Student.predict``. It meets the
:class:`~boxes2pixels.inference.SegmentationModel` contract; its runtimes are
:class:`~boxes2pixels.inference.onnx_model.OnnxStudent` (onnxruntime) and
:class:`~boxes2pixels.inference.openvino_model.OpenVinoStudent` (OpenVINO).

No image shape is refused. A dynamic export takes any multiple of its patch size. A static
export (``b2p export --static``) letterboxes every image to its own input size, whatever size
a caller asks for: the long side becomes the smaller side of the input, and an input smaller
than the graph's is padded at the bottom and right with black (normalised) pixels, its logits
cropped back, exactly as ``letterbox(..., square=True)`` would.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import Boxes2PixelsError, CheckpointError
from ..geometry import normalize_tensor
from .segmentation import predict_images

METADATA_KEY = "boxes2pixels"
"""Key of the JSON metadata entry that ``export_onnx`` writes into the file."""


class ExportedModel(ABC):
    """An exported model with ``Student.predict``'s interface; subclasses implement ``run``.

    Attributes:
        runtime: the runtime's name (``onnx``, ``openvino``).
        path: the ``.onnx`` file.
        num_classes, class_names, mean, std, multiple: from the file's metadata.
        imgsz: the long side images are letterboxed to by default (a static export: the
            smaller side of its input, the only size it takes).
        dynamic: height and width are dynamic (any multiple of ``multiple``).
        input_hw: a static export's input size (a dynamic one's: the size it was checked at).
        config: the whole metadata dict (``backbone_init`` says whether weights were random;
            ``preprocessing`` and ``postprocessing`` describe the whole pipeline).
        batch: the fixed batch of a static export (``None`` when the batch is dynamic).
    """

    runtime: ClassVar[str]

    def __init__(self, path: Path, raw_metadata: str | None, batch: int | None) -> None:
        if raw_metadata is None:
            raise CheckpointError(f"{path}: no boxes2pixels metadata (export it with `b2p export`)")
        self.path = path
        try:
            self.config: dict[str, Any] = json.loads(raw_metadata)
            self.num_classes = int(self.config["num_classes"])
            self.class_names = list(self.config["class_names"])
            self.mean = tuple(float(v) for v in self.config["mean"])
            self.std = tuple(float(v) for v in self.config["std"])
            self.multiple = int(self.config["multiple"])
            self.dynamic = bool(self.config["dynamic"])
            h, w = (int(v) for v in self.config["input_hw"])
            default = int(self.config["imgsz"])
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{path}: unreadable boxes2pixels metadata ({exc!r})") from exc
        self.input_hw = (h, w)
        self.imgsz = default if self.dynamic else min(h, w)
        self.backbone_init = self.config.get("backbone_init")
        self.batch = batch
        # what a black pixel normalises to: a static graph's padding, as the letterbox pads
        black = normalize_tensor(torch.zeros(1, 3, 1, 1), self.mean, self.std)
        self._pad_value = black.numpy().astype(np.float32)

    @property
    def patch_size(self) -> int:
        """Input sides must be multiples of this (the exported model's patch multiple)."""
        return self.multiple

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """The only input size of a static export; ``None`` for a dynamic one."""
        return None if self.dynamic else self.input_hw

    @property
    def random_backbone(self) -> bool:
        """True when the exported model's backbone was initialised randomly."""
        return self.backbone_init == "random"

    def letterbox_side(self, requested: int | None = None) -> int:
        """The long side this file letterboxes images to when ``requested`` is asked.

        A dynamic export honours the request (default: its ``imgsz``); a static export takes
        only its own size, so it ignores the request.
        """
        return int(requested or self.imgsz) if self.dynamic else self.imgsz

    def to(self, device: Any) -> ExportedModel:
        """Returns ``self``: the runtime runs where it was placed when the file was loaded."""
        return self

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a contiguous float32 array, checked against a static export's size."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_hw is not None and tuple(x.shape[2:]) != self.fixed_hw:
            h, w = self.fixed_hw
            raise Boxes2PixelsError(
                f"{self.path}: a static export takes {h}×{w} inputs only, got "
                f"{x.shape[2]}×{x.shape[3]}; predict() letterboxes images to it, or re-export "
                "without --static for any size"
            )
        return x

    @abstractmethod
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits for a normalised float32 batch B×3×H×W, by output name."""

    def _pad_to(self, arr: np.ndarray, fixed: tuple[int, int]) -> np.ndarray:
        """A static export's input: ``arr`` padded at the bottom and right with black pixels."""
        (fh, fw), (h, w) = fixed, arr.shape[2:]
        if (h, w) == (fh, fw):
            return arr
        if h > fh or w > fw:
            raise Boxes2PixelsError(
                f"{self.path}: a static export takes inputs up to {fh}×{fw}, got {h}×{w}; "
                f"use a tile size or imgsz of at most {min(fh, fw)}, or re-export without "
                "--static"
            )
        padded = np.empty((arr.shape[0], arr.shape[1], fh, fw), np.float32)
        padded[...] = self._pad_value
        padded[:, :, :h, :w] = arr
        return padded

    def __call__(
        self, x: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """``Student.forward``'s contract on a torch tensor (outputs on the CPU).

        The graph computes the heads it was exported with; ``heads`` selects among them. A
        static export's fixed batch is filled in chunks (the last one padded with zeros), and
        an input smaller than its fixed size is padded with black pixels at the bottom and
        right, the logits cropped back to the input's size.
        """
        arr = x.float().cpu().numpy()
        h, w = arr.shape[2:]
        if self.fixed_hw is not None:
            arr = self._pad_to(arr, self.fixed_hw)
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
        return {
            k: torch.from_numpy(np.ascontiguousarray(v[:, :, :h, :w]))
            for k, v in out.items()
            if heads is None or k in heads
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
        """Label maps (H×W ``uint8``, each at its image's size), like ``Student.predict``.

        ``imgsz`` is honoured by a dynamic export; a static one letterboxes to its own size
        (:meth:`letterbox_side`). ``device`` is accepted for compatibility: the runtime runs
        where it was placed at load time. ``precision`` is honoured by runtimes that have one
        (OpenVINO).
        """
        return predict_images(
            self,
            images,
            imgsz=self.letterbox_side(imgsz),
            batch_size=batch_size,
            precision=precision,
        )
