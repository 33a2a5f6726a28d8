"""Can thin defects survive your labelling and training settings? A resolution benchmark.

For a dataset with ground-truth (or pseudo-) masks, the ground truth is passed through the
grid each stage looks through (area average onto the grid, threshold at half coverage, back
up to full size) and the recall of *thin* defect pixels (defect pixels that a 3×3 opening
removes) is measured. That recall is a ceiling: no teacher or student working through that
grid can do better, whatever its weights. Two tables are printed:

1. the fixed columns, per photo size: the share of thin pixels among defect pixels, SAM's
   256-cell mask grid over the whole photo, SAM's 1024-px input, the paper's student at
   518 px (whole photo letterboxed), and crops at native resolution;
2. the settings you pass: a teacher of input size ``--teacher-input`` (mask grid a quarter
   of it, as SAM's) with ``--crop`` (crops planned from the dataset's boxes exactly as
   ``b2p label`` plans them; pixels outside every crop go through the whole-photo grid)
   and a student with ``--imgsz`` or ``--crop-size`` (crop training predicts tiled at native
   resolution, so its grid is the photo's own).

Examples::

    # generated photos (no dataset needed)
    python benchmarks/resolution.py --generate 2640x1485 --images 12
    # your dataset and settings
    python benchmarks/resolution.py data.yaml --masks gt_masks --split val \\
        --teacher-input 1024 --crop auto --crop-size 518
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.data.synth import SynthConfig, generate_dataset
from boxes2pixels.data.yolo import load_data_yaml
from boxes2pixels.label.crops import CropPolicy, plan_crops

IGNORE = 255
SAM_INPUT = 1024
SAM_GRID = 256
PAPER_IMGSZ = 518


def thin_pixels(defects: np.ndarray) -> np.ndarray:
    """Defect pixels (bool H×W in, bool out) that a 3×3 opening removes."""
    opened = cv2.morphologyEx(defects.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return defects & (opened == 0)


def round_trip(defects: np.ndarray, long_side: int) -> np.ndarray:
    """``defects`` (bool H×W) seen through a grid of ``long_side`` cells on the long side:
    area average, at least half covered, back up (nearest). Finer than the pixels: as is."""
    h, w = defects.shape
    if long_side >= max(h, w):
        return defects
    s = long_side / max(h, w)
    cells = (max(1, round(w * s)), max(1, round(h * s)))
    coverage = cv2.resize(defects.astype(np.float32), cells, interpolation=cv2.INTER_AREA)
    return cv2.resize(coverage, (w, h), interpolation=cv2.INTER_NEAREST) >= 0.5


def teacher_view(
    defects: np.ndarray, boxes: np.ndarray, grid: int, policy: CropPolicy
) -> np.ndarray:
    """``defects`` as a teacher with a ``grid``-cell mask grid sees them under ``policy``:
    inside each planned crop through the crop's own grid, elsewhere the whole photo's."""
    h, w = defects.shape
    out = round_trip(defects, grid)
    if policy.mode == "off" or len(boxes) == 0:
        return out
    for crop in plan_crops(boxes, w, h, policy):
        window = defects[crop.y0 : crop.y1, crop.x0 : crop.x1]
        out[crop.y0 : crop.y1, crop.x0 : crop.x1] = round_trip(window, grid)
    return out


@dataclass
class Tally:
    """Thin-pixel hits per column, summed over the images of one photo size."""

    images: int = 0
    defect: int = 0
    thin: int = 0
    hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, thin: np.ndarray, columns: dict[str, np.ndarray]) -> None:
        """Count one image's thin pixels and, per column, those that survive its grid."""
        self.thin += int(thin.sum())
        for name, seen in columns.items():
            self.hits[name] += int((thin & seen).sum())

    def recall(self, name: str) -> str:
        """Thin-pixel recall of a column, as a percentage."""
        return f"{100 * self.hits[name] / self.thin:.1f} %" if self.thin else "-"


def samples(
    data_yaml: Path, masks: Path, split: str, limit: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(defects, boxes)`` of up to ``limit`` images: bool defect mask and pixel boxes."""
    ds = load_data_yaml(data_yaml)
    folder = masks / split if (masks / split).is_dir() else masks
    for image in ds.images(split)[:limit]:
        mask_file = folder / ds.mask_name(image, split)
        if not mask_file.is_file():
            continue
        mask = read_mask(mask_file)
        h, w = mask.shape
        yield (mask > 0) & (mask != IGNORE), ds.labels(image).xyxy(w, h)


def measure(args: argparse.Namespace, data_yaml: Path, masks: Path) -> dict[tuple[int, int], Tally]:
    """Tallies per photo size ``(w, h)`` over the chosen images."""
    teacher_grid = args.teacher_input // 4
    policy = CropPolicy(
        "off" if args.crop == "off" else "on", context=args.crop_context, min_size=args.crop_min
    )
    student_grid = None if args.crop_size else args.imgsz
    tallies: dict[tuple[int, int], Tally] = defaultdict(Tally)
    for defects, boxes in samples(data_yaml, masks, args.split, args.limit):
        h, w = defects.shape
        tally = tallies[(w, h)]
        tally.images += 1
        tally.defect += int(defects.sum())
        columns = {
            "sam_grid": round_trip(defects, SAM_GRID),
            "sam_input": round_trip(defects, SAM_INPUT),
            "paper_student": round_trip(defects, PAPER_IMGSZ),
            "native": defects,
            "your_teacher": teacher_view(defects, boxes, teacher_grid, policy),
            "your_student": defects if student_grid is None else round_trip(defects, student_grid),
        }
        tally.add(thin_pixels(defects), columns)
    return tallies


def print_tables(tallies: dict[tuple[int, int], Tally], args: argparse.Namespace) -> None:
    """The issue's table and the table of the given settings."""
    console = Console()
    fixed = Table(title="thin-defect pixel recall ceiling (ground truth through each grid)")
    for column in ("photo size", "images", "thin share", "SAM mask grid", "SAM input (1024)",
                   "student 518", "crops at native res."):  # fmt: skip
        fixed.add_column(column, justify="right")
    yours = Table(title="your settings")
    crop = f"--crop {args.crop}" + (
        "" if args.crop == "off" else f" (context {args.crop_context}, min {args.crop_min} px)"
    )
    student = f"--crop-size {args.crop_size} (tiled)" if args.crop_size else f"--imgsz {args.imgsz}"
    for column in ("photo size", f"teacher {args.teacher_input} px, {crop}", f"student {student}"):
        yours.add_column(column, justify="right")
    for (w, h), t in sorted(tallies.items()):
        share = f"{100 * t.thin / t.defect:.1f} %" if t.defect else "-"
        cells = [t.recall(c) for c in ("sam_grid", "sam_input", "paper_student", "native")]
        fixed.add_row(f"{w}×{h}", str(t.images), share, *cells)
        yours.add_row(f"{w}×{h}", t.recall("your_teacher"), t.recall("your_student"))
    console.print(fixed)
    console.print(yours)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data_yaml", nargs="?", type=Path, help="the dataset's data.yaml")
    p.add_argument("--masks", type=Path, help="ground-truth (or pseudo-) mask folder")
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, default=200, help="images to read at most")
    p.add_argument("--generate", metavar="WxH", help="measure generated photos of this size")
    p.add_argument("--images", type=int, default=12, help="generated photos (with defects)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-input", type=int, default=SAM_INPUT)
    p.add_argument("--crop", choices=("auto", "on", "off"), default="auto",
                   help="auto, on: crops (auto: every teacher with an input size)")  # fmt: skip
    p.add_argument("--crop-context", type=float, default=CropPolicy().context)
    p.add_argument("--crop-min", type=int, default=CropPolicy().min_size)
    p.add_argument("--imgsz", type=int, default=PAPER_IMGSZ)
    p.add_argument("--crop-size", type=int, default=0)
    args = p.parse_args(argv)
    if args.generate is None and (args.data_yaml is None or args.masks is None):
        p.error("give DATA_YAML --masks GT_DIR, or --generate WxH")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (on generated photos with ``--generate``)."""
    args = parse_args(argv)
    if args.generate is None:
        print_tables(measure(args, args.data_yaml, args.masks), args)
        return
    w, h = (int(v) for v in args.generate.lower().split("x"))
    cfg = SynthConfig(defect_free_fraction=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        yaml = generate_dataset(Path(tmp) / "ds", train=args.images, val=0, test=0,
                                size=(w, h), seed=args.seed, config=cfg, progress=True)  # fmt: skip
        args.split = "train"
        print_tables(measure(args, yaml, yaml.parent / "gt_masks"), args)


if __name__ == "__main__":
    main()
