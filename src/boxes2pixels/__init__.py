"""boxes2pixels: pixel-level defect segmentation learned from bounding boxes.

The public API, imported lazily so ``import boxes2pixels`` stays fast::

    from boxes2pixels import label_dataset, load_teacher      # boxes -> pseudo-masks
    from boxes2pixels import Student, Distiller, TrainConfig  # train the student
    from boxes2pixels import load_model, predict_files, evaluate  # use and score it
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # data
    "load_data_yaml": "boxes2pixels.data.yolo",
    "YoloDataset": "boxes2pixels.data.yolo",
    "generate_dataset": "boxes2pixels.data.synth",
    "PseudoMaskDataset": "boxes2pixels.data.dataset",
    # teachers and labeling
    "Teacher": "boxes2pixels.teachers",
    "available_teachers": "boxes2pixels.teachers",
    "load_teacher": "boxes2pixels.teachers",
    "label_dataset": "boxes2pixels.label",
    "LabelSummary": "boxes2pixels.label",
    # student and training
    "Student": "boxes2pixels.student",
    "TrainConfig": "boxes2pixels.config",
    "Distiller": "boxes2pixels.distill",
    "DistillationLoss": "boxes2pixels.distill",
    "train": "boxes2pixels.distill",
    # use and measure
    "predict_files": "boxes2pixels.predict",
    "load_student": "boxes2pixels.inference",
    "load_model": "boxes2pixels.inference",
    "SegmentationModel": "boxes2pixels.inference",
    "segment": "boxes2pixels.inference",
    "plan_inference": "boxes2pixels.inference",
    "evaluate": "boxes2pixels.evaluate",
    "EvaluationResult": "boxes2pixels.evaluate",
    "ConfusionMatrix": "boxes2pixels.metrics",
    "SegmentationScores": "boxes2pixels.metrics",
    "run_demo": "boxes2pixels.demo",
    "export_onnx": "boxes2pixels.export",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'boxes2pixels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
