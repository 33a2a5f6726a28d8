"""``run_demo``: the whole Boxes2Pixels method on generated blade data, with a report.

One call runs every stage on an embedded default, each stage reading the files the previous
one wrote (the same files the ``b2p`` commands use):

1. ``data/``: a synthetic blade dataset with exact ground truth (``b2p synth``);
2. ``pseudo_masks/``: the teacher's masks for the train, val and test splits (``b2p label``);
3. ``runs/student/``: the student distilled from the pseudo-masks (``b2p train``);
4. ``predictions/test/``: the student's test predictions (``b2p predict``);
5. scores of the teacher's test pseudo-masks and of the student against the ground truth
   (``b2p evaluate``), the student scored both from its prediction files and by running the
   model, and checked to agree;
6. in the default mode, when the student's self-correction relabelled at least 0.01 % of the
   training pixels in some epoch and the time budget allows: the same student trained
   without self-correction (the paper's ablation) in ``runs/student_no_correction/`` and
   ``predictions_no_correction/test/``;
7. ``report.html`` (self-contained) and ``report.md`` (see :mod:`boxes2pixels.demo.report`).

A rerun into the same folder skips every stage whose outputs exist (an interrupted training
run is resumed from its checkpoint), so ``b2p demo`` can be stopped and continued. Once the
demo has finished, the training checkpoints are deleted (``keep_checkpoint=True`` keeps
them); a rerun of a finished demo needs none. ``demo.json`` records the settings, the
stages' times and the scores.

Modules: :mod:`~boxes2pixels.demo.settings` (modes and result),
:mod:`~boxes2pixels.demo.backbone` (pretrained or random backbone),
:mod:`~boxes2pixels.demo.layout` (the folder and ``demo.json``),
:mod:`~boxes2pixels.demo.stages` (the stages and their resume rules),
:mod:`~boxes2pixels.demo.panels` and :mod:`~boxes2pixels.demo.report` (the report),
:mod:`~boxes2pixels.demo.run` (``run_demo``).
"""

from ..errors import DemoError, WeightsUnavailableError
from .backbone import BACKBONE_INITS, pretrained_backbone_available, resolve_backbone_init
from .layout import DemoLayout, read_history
from .report import ROW_LABELS, build_demo_report
from .run import run_demo
from .settings import DemoResult, DemoSettings
from .stages import MIN_CORRECTED_SHARE

__all__ = [
    "BACKBONE_INITS",
    "MIN_CORRECTED_SHARE",
    "ROW_LABELS",
    "DemoError",
    "DemoLayout",
    "DemoResult",
    "DemoSettings",
    "WeightsUnavailableError",
    "build_demo_report",
    "pretrained_backbone_available",
    "read_history",
    "resolve_backbone_init",
    "run_demo",
]
