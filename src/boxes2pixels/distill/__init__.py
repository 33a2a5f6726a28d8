"""Distillation of pseudo-masks into the student: losses, EMA and the training loop."""

from .distiller import Distiller, FitResult, build_datasets, build_student, train
from .ema import ModelEMA
from .losses import (
    DistillationLoss,
    LossOutput,
    asymmetric_dice_loss,
    class_weights,
    self_correct_targets,
)

__all__ = [
    "DistillationLoss",
    "Distiller",
    "FitResult",
    "LossOutput",
    "ModelEMA",
    "asymmetric_dice_loss",
    "build_datasets",
    "build_student",
    "class_weights",
    "self_correct_targets",
    "train",
]
