"""What a demo is asked to do (:class:`DemoSettings`, one per mode) and what it produced
(:class:`DemoResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and training settings of one demo mode (chosen for a 2-core CPU).

    Attributes:
        train: training images generated.
        val: validation images (the student is validated on their pseudo-masks).
        test: test images (scored against the ground truth).
        size: ``(width, height)`` of the generated images.
        defect_scale: ``SynthConfig.defect_scale``: larger defects stay visible at ``imgsz``.
        defect_free_fraction: share of images without any defect.
        unboxed_fraction: ``SynthConfig.unboxed_fraction``: defects left without a box.
        imgsz: student input size (multiple of 14).
        epochs: training epochs of each student.
        batch: images per training step.
        lr: AdamW learning rate.
        ema_decay: decay of the weights' moving average used for validation and inference.
        correction_warmup: epochs trained before self-correction starts.
        panels: test images shown as qualitative panels in the report.
        ablation: also train a student without self-correction, when the first student's
            self-correction relabelled at least ``MIN_CORRECTED_SHARE`` of the pixels in some
            epoch (otherwise both come out practically the same) and the time budget allows.
        time_budget_s: the ablation is skipped when the run would end later than this many
            seconds after the demo started (its duration is estimated from the first
            student's); ``None`` always trains it.
    """

    train: int
    val: int
    test: int
    size: tuple[int, int]
    defect_scale: float
    defect_free_fraction: float
    unboxed_fraction: float
    imgsz: int
    epochs: int
    batch: int
    lr: float
    ema_decay: float
    correction_warmup: int
    panels: int
    ablation: bool
    time_budget_s: float | None

    @classmethod
    def for_mode(cls, quick: bool) -> DemoSettings:
        """The settings of ``b2p demo`` (``quick=False``) or ``b2p demo --quick``."""
        if quick:
            return cls(
                train=24,
                val=4,
                test=8,
                size=(224, 168),
                defect_scale=2.5,
                defect_free_fraction=0.35,
                unboxed_fraction=0.25,
                imgsz=112,
                epochs=3,
                batch=4,
                lr=1e-3,
                ema_decay=0.9,
                correction_warmup=1,
                panels=3,
                ablation=False,
                time_budget_s=None,
            )
        return cls(
            train=96,
            val=16,
            test=24,
            size=(224, 168),
            defect_scale=2.5,
            defect_free_fraction=0.35,
            unboxed_fraction=0.25,
            imgsz=112,
            epochs=20,
            batch=4,
            lr=1e-3,
            ema_decay=0.99,
            correction_warmup=3,
            panels=5,
            ablation=True,
            time_budget_s=600.0,
        )

    def synth_config(self) -> Any:
        """The ``SynthConfig`` of the generated scenes."""
        from ..data.synth import SynthConfig

        return SynthConfig(
            defect_free_fraction=self.defect_free_fraction,
            unboxed_fraction=self.unboxed_fraction,
            defect_scale=self.defect_scale,
        )


@dataclass
class DemoResult:
    """What ``run_demo`` produced.

    Attributes:
        out: the demo folder.
        report_html: ``out/report.html`` (self-contained).
        report_md: ``out/report.md`` (pictures in ``out/report_files/``).
        data_yaml: the generated dataset's ``data.yaml``.
        run_dir: the student's training run (``run_dir/best`` is the model).
        backbone_init: the backbone initialisation actually used: ``pretrained`` or ``random``.
        backbone_mode: ``bitfit`` (pretrained) or ``full`` (random weights).
        backbone_note: why that initialisation was used.
        teacher: the teacher's description (name, options, checkpoint, sha256).
        scores: test scores against the ground truth: ``teacher``, ``student`` and, when
            trained, ``student_no_correction`` (``SegmentationScores``).
        evaluations_agree: scoring the prediction files and running the model gave the same
            confusion matrix.
        ablation_note: why the student without self-correction was not trained (or ``None``).
        timings: seconds per stage (stages reused from an earlier run keep their time).
        reused: stages skipped because their outputs existed.
        seconds: wall time of this call.
        settings: the mode's settings.
    """

    out: Path
    report_html: Path
    report_md: Path
    data_yaml: Path
    run_dir: Path
    backbone_init: str
    backbone_mode: str
    backbone_note: str
    teacher: dict[str, Any]
    scores: dict[str, Any]
    evaluations_agree: bool
    ablation_note: str | None
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: DemoSettings | None = None

    @property
    def random_backbone(self) -> bool:
        """True when the student's backbone started from random weights."""
        return self.backbone_init == "random"
