"""``manifest.json`` of a pseudo-mask folder, rebuilt from the runs' part files.

Written whenever every image of the selected splits has a mask (or is recorded as skipped):
the last shard to finish writes it, and so does any later rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.yolo import load_data_yaml
from ..io import write_json_atomic
from .records import WorkItem, read_parts, teacher_identity, work_items

MANIFEST_NAME = "manifest.json"


@dataclass
class _Tally:
    """Counts over the latest record of every expected image."""

    per_split: dict[str, dict[str, Any]]
    cov_sum: np.ndarray
    cov_n: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    runs: set[str] = field(default_factory=set)
    # per image with boxes: its path and per-box records (boxscores.BoxRecord.to_json)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)


def _split_counts(names: Sequence[str]) -> dict[str, Any]:
    return {
        "images": 0,
        "with_boxes": 0,
        "boxes": 0,
        "encoder_passes": 0,
        "boxes_per_class": dict.fromkeys(names, 0),
        # boxes marked ignore (255) by b2p label --min-score
        "low_score_boxes": dict.fromkeys(names, 0),
        "skipped": 0,
        "label_issues": 0,
    }


def _tally(
    out: Path,
    expected: Sequence[WorkItem],
    latest: dict[str, dict[str, Any]],
    splits: Sequence[str],
    names: Sequence[str],
) -> _Tally | None:
    """Count the records of ``expected``; ``None`` when an image has no result yet."""
    tally = _Tally(
        {s: _split_counts(names) for s in splits}, np.zeros(len(names)), np.zeros(len(names))
    )
    for item in expected:
        rec = latest.get(item.key)
        if rec is None:
            return None
        counts = tally.per_split[item.split]
        if rec["type"] == "skip":
            counts["skipped"] += 1
            tally.skipped.append(
                {"split": item.split, "image": rec["image"], "reason": rec["reason"]}
            )
        else:
            if not (out / item.split / item.mask_name).is_file():
                return None
            counts["images"] += 1
            n_boxes = sum(rec["boxes_per_class"])
            counts["boxes"] += n_boxes
            counts["with_boxes"] += int(n_boxes > 0)
            # teacher calls; records of older versions (no crops) had one per image with boxes
            counts["encoder_passes"] += rec.get("passes", int(n_boxes > 0))
            for k, n in enumerate(rec["boxes_per_class"]):
                counts["boxes_per_class"][names[k]] += n
            tally.cov_sum += np.asarray(rec["coverage_sum"])
            tally.cov_n += np.asarray(rec["boxes_per_class"])
            boxes = rec.get("boxes") or []  # absent in records of older versions
            for box in boxes:
                counts["low_score_boxes"][names[box["class"]]] += int(box["ignored"])
            if boxes:
                tally.images[item.key] = {"image": rec["image"], "boxes": boxes}
        counts["label_issues"] += len(rec.get("issues", []))
        tally.issues.extend(rec.get("issues", []))
        tally.runs.add(rec["run"])
    return tally


def merge_manifest(
    out: str | Path, data_yaml: str | Path, splits: Sequence[str] | None = None
) -> Path | None:
    """Rebuild ``manifest.json`` from the part files when every image has a result.

    ``splits`` defaults to every split named by a part file. Returns the manifest path, or
    ``None`` when some images still have neither a mask nor a skip record (for example while
    other shards run). Safe to call from several processes at once: the content depends only
    on the files, and the write is atomic.
    """
    out = Path(out)
    ds = load_data_yaml(data_yaml)
    headers, latest = read_parts(out)
    if not headers:
        return None
    all_splits = list(dict.fromkeys([*(splits or []), *(s for h in headers for s in h["splits"])]))
    names = ds.names
    expected = work_items(ds, all_splits, None)
    tally = _tally(out, expected, latest, all_splits, names)
    if tally is None:
        return None
    corrected = [item.key for item in expected if latest[item.key].get("corrected")]
    live = [h for h in headers if h["run"] in tally.runs] or headers[-1:]
    live.sort(key=lambda h: h["t"])
    distinct = {teacher_identity(h["teacher"]): h["teacher"] for h in live}
    manifest: dict[str, Any] = {
        "format": "boxes2pixels-pseudo-masks",
        "format_version": 1,
        "boxes2pixels_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(Path(data_yaml).resolve()),
        "teacher": live[-1]["teacher"],
        "class_names": ["background", *names],
        "mask_encoding": "single-channel PNG; 0 background, k+1 YOLO class k, 255 ignore",
        "overlap": live[-1]["overlap"],
        # b2p label --crop (older runs: the whole photo); also under "teacher"
        "crop": live[-1]["teacher"].get("crop", {"mode": "off", "applied": False}),
        "splits": tally.per_split,
        "mean_box_coverage": {
            names[k]: (float(tally.cov_sum[k] / tally.cov_n[k]) if tally.cov_n[k] else None)
            for k in range(len(names))
        },
        "skipped": tally.skipped,
        "label_issues": tally.issues,
        "runs": [
            {"run": h["run"], "started": h["started"], "shard": h["shard"], "splits": h["splits"]}
            for h in live
        ],
        # images whose mask a person corrected (b2p label --corrections): never relabelled
        "human_corrected": corrected,
        # b2p label --min-score (None: every mask trusted); also under "teacher"
        "min_score": live[-1]["teacher"].get("min_score"),
        # per image with boxes, by <split>/<mask name>: the image and one record per box
        # (class, box, mask_area, box_coverage, predicted_iou, stability_score, score, ignored)
        "images": tally.images,
    }
    if len(distinct) > 1:
        manifest["mixed_teachers"] = list(distinct.values())
    path = out / MANIFEST_NAME
    write_json_atomic(path, manifest)
    return path
