"""Boxes → pseudo-mask PNGs with a teacher (``b2p label``).

Output layout (``out``)::

    <out>/<split>/<sub>/<stem>.png   label maps: 0 background, k+1 YOLO class k
    <out>/manifest.json              teacher, options, checkpoint sha256, counts, skipped, issues
    <out>/preview/*.png              optional side-by-side previews
    <out>/.parts/*.jsonl             per-run records (merged into manifest.json)

Every PNG is written atomically, so an interrupted run leaves only complete files; a rerun
skips images whose PNG exists and is recorded in a part file (a PNG without its record,
after a power loss or with ``.parts/`` deleted, is labelled again). Each run appends one
JSON line per image to its own part file *before* writing the PNG; ``manifest.json`` is
rebuilt from all part files whenever every image of the selected splits has a mask (or is
recorded as skipped), so parallel shards need no locks: the last one to finish writes it,
and so does any later rerun.

Modules: :mod:`.image` labels one image (teacher call, overlap policy, coverage);
:mod:`.boxscores` keeps its per-box records and teacher scores (``--min-score``);
:mod:`.pipeline` loops over a dataset (``label_dataset``); :mod:`.records` keeps the run's
books (work items, shards, part files); :mod:`.manifest` merges them; :mod:`.loader` decodes
images ahead; :mod:`.summary` and :mod:`.preview` show the result.
"""

from __future__ import annotations

from .crops import CROP_MODES, Crop, CropPolicy, plan_crops
from .image import OVERLAP_POLICIES, LabeledImage, box_coverage, combine_masks, label_image
from .manifest import MANIFEST_NAME, merge_manifest
from .pipeline import label_dataset
from .records import PARTS_DIR, WorkItem, parse_shard, shard_of
from .summary import LabelSummary, SkippedImage, SplitCounts, summary_report

__all__ = [
    "CROP_MODES",
    "MANIFEST_NAME",
    "OVERLAP_POLICIES",
    "PARTS_DIR",
    "Crop",
    "CropPolicy",
    "LabelSummary",
    "LabeledImage",
    "SkippedImage",
    "SplitCounts",
    "WorkItem",
    "box_coverage",
    "combine_masks",
    "label_dataset",
    "label_image",
    "merge_manifest",
    "parse_shard",
    "plan_crops",
    "shard_of",
    "summary_report",
]
