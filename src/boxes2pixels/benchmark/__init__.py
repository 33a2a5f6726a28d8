"""The benchmark suite: the student, its ablations and three baselines on one dataset.

Every run trains on the same pseudo-masks with the same recipe (loss, schedule,
augmentation, EMA; :class:`~boxes2pixels.distill.Distiller`), predicts the test split and is
scored against ground-truth masks. Runs:

====================  ==========================================================
``student``           Boxes2Pixels as in the paper
``student-no-sc``     without online self-correction
``student-no-binary`` without the binary head (fine loss only)
``student-no-detail`` without the CNN detail branch
``unet``              U-Net, ResNet34 encoder (smp)
``deeplabv3``         DeepLabV3, EfficientNet-B2 encoder (smp)
``segformer``         SegFormer-B2 (MiT-B2 encoder, smp)
====================  ==========================================================

Suites: ``final`` (paper Table 1: student and the three baselines), ``ablations`` (the
student and its three ablations), ``all``.

Layout of ``OUT``::

    OUT/runs/<run>/train/        the Distiller's run folder (best/, last.ckpt, metrics.csv)
    OUT/runs/<run>/pred/<split>/ predicted masks of the evaluated split
    OUT/runs/<run>/result.json   scores and run facts; its presence marks the run finished
    OUT/summary.csv, OUT/summary.md, OUT/panels/*.png

Resumable: a run with ``result.json`` is skipped; an interrupted run continues from its
``last.ckpt``.

Modules: :mod:`~boxes2pixels.benchmark.runs` (run names, suites, ``RunResult``),
:mod:`~boxes2pixels.benchmark.suite` (``run_benchmark``),
:mod:`~boxes2pixels.benchmark.summary` (summary files and panels).
"""

from .runs import RESULT_NAME, RUN_TITLES, SUITES, RunResult, parse_runs
from .suite import BenchmarkResult, run_benchmark
from .summary import PAPER_TABLE_1, summary_document, write_panels, write_summary

__all__ = [
    "PAPER_TABLE_1",
    "RESULT_NAME",
    "RUN_TITLES",
    "SUITES",
    "BenchmarkResult",
    "RunResult",
    "parse_runs",
    "run_benchmark",
    "summary_document",
    "write_panels",
    "write_summary",
]
