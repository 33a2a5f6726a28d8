"""Distillation of pseudo-masks into the student.

Modules, one job each:

- :mod:`.losses`: asymmetric Dice, self-correcting cross-entropy, ``DistillationLoss``;
- :mod:`.ema`: ``ModelEMA``, the weight average used for validation and ``best/``;
- :mod:`.loop`: ``Distiller``, the epoch loop;
- :mod:`.loaders`: the training loader and the validation passes' loaders;
- :mod:`.state`: ``TrainState`` (the loop's counters, saved in ``last.ckpt``), ``FitResult``;
- :mod:`.checkpoint`: the run directory, ``last.ckpt`` save/load, RNG state, ``best/``;
- :mod:`.ddp`: process-group setup and the collectives under ``torchrun``;
- :mod:`.progress`: the progress display and TensorBoard scalars;
- :mod:`.training`: ``train(config)`` as ``b2p train`` runs it, and its builders.
"""

from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, resume_hint, run_dir_problem
from .ddp import DDPContext, launched_as_main
from .ema import ModelEMA
from .loop import Distiller
from .losses import (
    DistillationLoss,
    LossOutput,
    asymmetric_dice_loss,
    class_weights,
    self_correct_targets,
)
from .state import FitResult, TrainState
from .training import build_datasets, build_student, settings_file, train

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "DDPContext",
    "DistillationLoss",
    "Distiller",
    "FitResult",
    "LossOutput",
    "ModelEMA",
    "TrainState",
    "asymmetric_dice_loss",
    "build_datasets",
    "build_student",
    "class_weights",
    "launched_as_main",
    "resume_hint",
    "run_dir_problem",
    "self_correct_targets",
    "settings_file",
    "train",
]
