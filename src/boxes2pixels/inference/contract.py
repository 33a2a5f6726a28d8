"""What every segmentation model offers: the :class:`SegmentationModel` contract and the few
facts the inference layer reads from any model (its runtime, its training crop size, a random
backbone). Nothing here imports a model class, so models can depend on it.

``Student``, ``BaselineModel`` and the runtimes of exported files, ``OnnxStudent``
(onnxruntime) and ``OpenVinoStudent`` (OpenVINO), all meet the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch


@runtime_checkable
class SegmentationModel(Protocol):
    """What every model offers to prediction, evaluation, export, profiling and benchmarks.

    Attributes:
        class_names: names of the label values ``0..num_classes-1``, background first.
        num_classes: classes of the fine head, background included.
        mean: normalisation mean (RGB, 0..1 scale) of the model's input.
        std: normalisation std of the model's input.
        imgsz: default long side of the letterboxed input used by ``predict``.
    """

    class_names: list[str]
    num_classes: int
    mean: Sequence[float]
    std: Sequence[float]
    imgsz: int

    @property
    def patch_size(self) -> int:
        """Input divisor: the sides given to ``__call__`` must be multiples of it."""
        ...

    @property
    def random_backbone(self) -> bool:
        """True when the backbone (or encoder) started from random weights (tests, demos)."""
        ...

    def __call__(
        self, x: torch.Tensor, heads: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits by head name (at least ``"fine"``: B×C×H×W) for a normalised B×3×H×W batch."""
        ...

    def predict(
        self,
        images: Any,
        *,
        imgsz: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        device: str | torch.device | None = None,
    ) -> list[np.ndarray]:
        """One H×W ``uint8`` label map per RGB image, each at its image's own size."""
        ...

    def to(self, device: Any) -> Any:
        """Move the model to ``device`` (torch models) and return it."""
        ...


def backbone_is_random(model: Any) -> bool:
    """True when the model's backbone was initialised randomly (tests, the offline demo)."""
    return bool(getattr(model, "random_backbone", False))


def crop_size_of(model: Any) -> int:
    """The window side a model was trained on at native resolution (``b2p train
    --crop-size``), 0 for a model trained on whole resized images. A model with a crop size
    is run tiled at the image's own resolution by ``predict_files`` and ``evaluate``."""
    return int(getattr(model, "crop_size", 0) or 0)


def model_runtime(model: Any) -> str:
    """``onnx`` (onnxruntime) or ``openvino`` for an exported model (its ``runtime``),
    ``torch`` otherwise."""
    return str(getattr(model, "runtime", "torch"))
