"""The benchmark's runs: their names, suites and titles, and :class:`RunResult`, the record of
one finished run (``result.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Boxes2PixelsError

SUITES: dict[str, tuple[str, ...]] = {
    "final": ("student", "unet", "deeplabv3", "segformer"),
    "ablations": ("student", "student-no-sc", "student-no-binary", "student-no-detail"),
    "all": (
        "student",
        "student-no-sc",
        "student-no-binary",
        "student-no-detail",
        "unet",
        "deeplabv3",
        "segformer",
    ),
}
RUN_TITLES: dict[str, str] = {
    "student": "Boxes2Pixels",
    "student-no-sc": "Boxes2Pixels w/o self-correction",
    "student-no-binary": "Boxes2Pixels w/o binary head",
    "student-no-detail": "Boxes2Pixels w/o detail branch",
    "unet": "U-Net (ResNet34)",
    "deeplabv3": "DeepLabV3 (EfficientNet-B2)",
    "segformer": "SegFormer-B2",
}
STUDENT_OVERRIDES: dict[str, dict[str, Any]] = {
    "student": {},
    "student-no-sc": {"self_correction": False},
    "student-no-binary": {"binary_head": False},
    "student-no-detail": {"detail_branch": False},
}
"""``TrainConfig`` changes of each student run; runs not listed here are baselines."""
RESULT_NAME = "result.json"


def parse_runs(suite: str = "final", runs: str | Sequence[str] | None = None) -> list[str]:
    """Run names of a suite, or the explicit ``runs`` (comma-separated or a sequence)."""
    if runs:
        names = [r.strip().lower() for r in (runs.split(",") if isinstance(runs, str) else runs)]
        names = [n for n in names if n]
        unknown = [n for n in names if n not in RUN_TITLES]
        if unknown:
            raise Boxes2PixelsError(
                f"unknown run(s) {', '.join(unknown)} (choose from {', '.join(RUN_TITLES)})"
            )
        return list(dict.fromkeys(names))
    if suite not in SUITES:
        raise Boxes2PixelsError(f"unknown suite '{suite}' (choose from {', '.join(SUITES)})")
    return list(SUITES[suite])


def run_settings(config: Any, name: str, split: str, encoder_init: str) -> dict[str, Any]:
    """The settings that make two runs comparable (checked when a finished run is reused)."""
    keys = ("epochs", "imgsz", "batch", "seed", "lr", "self_correction", "augment")
    settings = {k: getattr(config, k) for k in keys}
    settings["split"] = split
    if name in STUDENT_OVERRIDES:
        settings["backbone"] = config.backbone
        settings["backbone_init"] = config.backbone_init
        settings["backbone_mode"] = config.backbone_mode
    else:
        settings["encoder_init"] = encoder_init
    settings.update(STUDENT_OVERRIDES.get(name, {}))
    return settings


@dataclass
class RunResult:
    """One finished run: its scores on the evaluated split and facts about it."""

    name: str
    title: str
    scores: dict[str, Any]
    params_total: int
    params_trainable: int
    epochs: int
    best_epoch: int | None
    train_seconds: float
    init: str
    pred_dir: Path
    model_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict (what ``result.json`` holds)."""
        return {
            "name": self.name,
            "title": self.title,
            "scores": self.scores,
            "params_total": self.params_total,
            "params_trainable": self.params_trainable,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "train_seconds": round(self.train_seconds, 2),
            "init": self.init,
            "pred_dir": str(self.pred_dir),
            "model_dir": str(self.model_dir),
            "settings": self.settings,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_json`."""
        return cls(
            name=data["name"],
            title=data["title"],
            scores=data["scores"],
            params_total=int(data["params_total"]),
            params_trainable=int(data["params_trainable"]),
            epochs=int(data["epochs"]),
            best_epoch=data.get("best_epoch"),
            train_seconds=float(data.get("train_seconds", 0.0)),
            init=str(data.get("init", "")),
            pred_dir=Path(data["pred_dir"]),
            model_dir=Path(data["model_dir"]),
            settings=dict(data.get("settings", {})),
        )
