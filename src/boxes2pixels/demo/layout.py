"""The demo folder: names of its files and sub-folders, and its state file ``demo.json``.

Layout of ``OUT`` (every stage reads the files the previous one wrote, the same files the
``b2p`` commands use)::

    data/                            b2p synth: data.yaml, images/, labels/, gt_masks/
    pseudo_masks/                    b2p label: train/, val/, test/, manifest.json
    runs/student/                    b2p train: best/, metrics.csv, config.yaml (last.ckpt)
    runs/student_no_correction/      the ablation, when trained
    predictions/test/                b2p predict
    predictions_no_correction/test/  the ablation's predictions, when trained
    report.html  report.md  report_files/
    demo.json                        settings, backbone decision, stage times, scores
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import DemoError
from ..io import remove_outputs, write_json_atomic
from .settings import DemoSettings

DEMO_FORMAT = "boxes2pixels-demo/1"
STATE_NAME = "demo.json"
DATA_DIR = "data"
PSEUDO_DIR = "pseudo_masks"
RUN_DIR = "runs/student"
RUN_DIR_NO_CORRECTION = "runs/student_no_correction"
PRED_DIR = "predictions"
PRED_DIR_NO_CORRECTION = "predictions_no_correction"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FILES = "report_files"
SPLITS = ("train", "val", "test")
# What the demo writes into OUT (and removes first with ``overwrite``); other files are kept.
OUTPUTS = (
    DATA_DIR,
    PSEUDO_DIR,
    "runs",
    PRED_DIR,
    PRED_DIR_NO_CORRECTION,
    REPORT_FILES,
    REPORT_HTML,
    REPORT_MD,
    STATE_NAME,
)


@dataclass(frozen=True)
class DemoLayout:
    """The paths of one demo folder ``out``."""

    out: Path

    @property
    def data(self) -> Path:
        """The generated dataset."""
        return self.out / DATA_DIR

    @property
    def data_yaml(self) -> Path:
        """The generated dataset's ``data.yaml``."""
        return self.data / "data.yaml"

    @property
    def gt_masks(self) -> Path:
        """Exact ground-truth masks, one folder per split."""
        return self.data / "gt_masks"

    @property
    def test_images(self) -> Path:
        """The test split's images."""
        return self.data / "images" / "test"

    @property
    def pseudo(self) -> Path:
        """The teacher's pseudo-masks, one folder per split."""
        return self.out / PSEUDO_DIR

    @property
    def run(self) -> Path:
        """The student's training run."""
        return self.out / RUN_DIR

    @property
    def run_no_correction(self) -> Path:
        """The training run of the student without self-correction."""
        return self.out / RUN_DIR_NO_CORRECTION

    @property
    def pred(self) -> Path:
        """The student's test predictions."""
        return self.out / PRED_DIR / "test"

    @property
    def pred_no_correction(self) -> Path:
        """The test predictions of the student without self-correction."""
        return self.out / PRED_DIR_NO_CORRECTION / "test"

    @property
    def state(self) -> Path:
        """``demo.json``."""
        return self.out / STATE_NAME


# --------------------------------------------------------------------------------------------
# demo.json


def json_safe(value: Any) -> Any:
    """``value`` with tuples turned into lists (as JSON reads it back)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def fingerprint(
    settings: DemoSettings,
    seed: int,
    teacher: str,
    checkpoint: str | None,
    backbone_init: str,
) -> dict[str, Any]:
    """What a rerun into the same folder must keep for the folder's files to be reused."""
    # settings that change no file but the report's are left out, so a rerun may change them
    kept = {k: v for k, v in asdict(settings).items() if k not in ("time_budget_s", "panels")}
    return {
        "settings": json_safe(kept),
        "seed": int(seed),
        "teacher": teacher,
        "checkpoint": checkpoint,
        "backbone_init": backbone_init,
    }


def read_state(out: Path) -> dict[str, Any] | None:
    """``out/demo.json``, or ``None`` when there is none.

    Raises:
        DemoError: the file is unreadable or not a demo state.
    """
    path = out / STATE_NAME
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoError(f"{path}: unreadable demo state ({exc}); rerun with --overwrite") from exc
    if not isinstance(state, dict) or state.get("format") != DEMO_FORMAT:
        raise DemoError(f"{path}: not a b2p demo state file; rerun with --overwrite")
    return state


def save_state(out: Path, state: dict[str, Any]) -> None:
    """Write ``out/demo.json`` atomically."""
    write_json_atomic(out / STATE_NAME, state)


def prepare_out(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Check (or clean) the demo folder; return the state to continue from.

    Raises:
        DemoError: ``out`` is a file, holds other files (without ``overwrite``), or holds a
            demo with other settings (without ``overwrite``).
    """
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out}: exists and is not a folder")
    if overwrite and out.is_dir():
        remove_outputs(out, OUTPUTS)
    state = read_state(out) if out.is_dir() else None
    fresh = {"format": DEMO_FORMAT, "fingerprint": fingerprint, "stages": {}}
    if state is None:
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise DemoError(
                f"{out}: folder is not empty and holds no b2p demo ({STATE_NAME} missing); "
                "choose another --out, or pass --overwrite to replace the demo's files there"
            )
        state = fresh
    elif state.get("fingerprint") != fingerprint and not state.get("stages"):
        # no stage finished under the old settings: nothing to keep
        state = fresh
    elif state.get("fingerprint") != fingerprint:
        raise DemoError(
            f"{out}: holds a demo run with other settings (mode, seed, teacher, checkpoint or "
            "backbone init); use another --out or pass --overwrite to start again"
        )
    out.mkdir(parents=True, exist_ok=True)
    save_state(out, state)
    return state


# --------------------------------------------------------------------------------------------
# files the stages wrote


def metrics_rows(run: Path) -> list[dict[str, str]]:
    """The rows of ``run/metrics.csv`` as text (none when the file is missing)."""
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_history(run: Path) -> list[dict[str, float]]:
    """``run/metrics.csv`` as numbers (empty cells become NaN)."""
    rows = []
    for row in metrics_rows(run):
        parsed: dict[str, float] = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value) if value not in ("", None) else math.nan
            except ValueError:
                parsed[key] = math.nan
        rows.append(parsed)
    return rows


def read_teacher(pseudo: Path) -> dict[str, Any]:
    """The teacher's description from ``pseudo/manifest.json``, with the label-file issues
    counted by kind under ``label_issues``.

    Raises:
        DemoError: the manifest is unreadable.
    """
    try:
        manifest = json.loads((pseudo / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoError(f"{pseudo / 'manifest.json'}: unreadable ({exc})") from exc
    teacher = dict(manifest.get("teacher", {}))
    kinds: dict[str, int] = {}
    for issue in manifest.get("label_issues", []):
        kind = str(issue.get("kind", "other"))
        kinds[kind] = kinds.get(kind, 0) + 1
    teacher["label_issues"] = kinds
    return teacher
