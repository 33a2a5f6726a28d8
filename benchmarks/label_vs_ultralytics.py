"""``b2p label`` next to Ultralytics' ``yolo_bbox2segment``: same MobileSAM checkpoint, same images.

Ultralytics is never a dependency of boxes2pixels: this script installs it on first use into a
folder of its own (``pip install --no-deps --target DIR ultralytics``) and runs the converter
in a subprocess that alone has DIR on its path. Each round runs, one after the other:

- Ultralytics as shipped (it sets torch to 1 thread on machines with few cores);
- Ultralytics with torch's threads put back to ``--threads``;
- ``b2p label`` at fp32 and at ``--precision auto`` (what it picks here).

Medians of ``--rounds`` rounds are printed as images/s and as ratios to Ultralytics with its
threads fixed, with the pixel agreement of ``auto``'s masks with fp32's (random weights:
the agreement of a real checkpoint is higher, its masks are less noisy). Example::

    python benchmarks/label_vs_ultralytics.py --images 40 --with-boxes 12 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from boxes2pixels.cpu import cpu_info
from boxes2pixels.io import read_mask
from boxes2pixels.label import label_dataset
from boxes2pixels.teachers import load_teacher

sys.path.insert(0, str(Path(__file__).parent))
from label_throughput import make_dataset, random_checkpoint

ULTRALYTICS_RUN = """
import sys, time, torch
from ultralytics.data.converter import yolo_bbox2segment
threads = int(sys.argv[3])
if threads:
    import ultralytics  # its import lowers torch's threads on small machines
    torch.set_num_threads(threads)
start = time.perf_counter()
yolo_bbox2segment(sys.argv[1], save_dir=sys.argv[2], sam_model=sys.argv[4], device="cpu")
print(time.perf_counter() - start)
"""


def ensure_ultralytics(folder: Path) -> Path:
    """Ultralytics installed into ``folder`` (not into this environment)."""
    if not (folder / "ultralytics").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(folder), "ultralytics"],
            check=True,
        )  # fmt: skip
    return folder


def run_ultralytics(folder: Path, images: Path, out: Path, ckpt: Path, threads: int) -> float:
    """Seconds of one ``yolo_bbox2segment`` call in a subprocess (``threads`` 0: as shipped)."""
    env = {**os.environ, "PYTHONPATH": str(folder), "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}
    result = subprocess.run(
        [sys.executable, "-c", ULTRALYTICS_RUN, str(images), str(out), str(threads), str(ckpt)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])


def run_b2p(yaml: Path, ckpt: Path, out: Path, precision: str) -> tuple[float, str]:
    """Seconds of loading the teacher and ``label_dataset`` (Ultralytics' time also includes
    loading its model), and the precision it ran at."""
    start = time.perf_counter()
    teacher = load_teacher("mobile-sam", checkpoint=str(ckpt), device="cpu", precision=precision)
    label_dataset(yaml, teacher, out, splits=["train"], overwrite=True, progress=False)
    return time.perf_counter() - start, teacher.precision


def agreement(a: Path, b: Path) -> float:
    """Mean pixel agreement of the masks of two output folders."""
    names = sorted(p.name for p in a.glob("*.png"))
    return float(np.mean([np.mean(read_mask(a / n) == read_mask(b / n)) for n in names]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--with-boxes", type=int, default=12)
    parser.add_argument("--size", default="640x360", help="image size WxH")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--ultralytics-dir", type=Path, default=Path(".bench/ultralytics"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = ensure_ultralytics(args.ultralytics_dir.absolute())
    size = tuple(int(v) for v in args.size.lower().split("x"))
    print(f"CPU: {cpu_info().describe()}; torch threads {args.threads}\n")
    with tempfile.TemporaryDirectory(prefix="b2p-vs-ul-") as tmp_name:
        tmp = Path(tmp_name)
        yaml = make_dataset(tmp / "ds", args.images, args.with_boxes, size)
        ckpt = random_checkpoint(tmp, "vit_t")  # named mobile_sam.pt, as Ultralytics expects
        times: dict[str, list[float]] = {}
        used = "fp32"
        for r in range(args.rounds):
            for name, threads in (
                ("ultralytics as shipped", 0),
                ("ultralytics, threads", args.threads),
            ):
                out = tmp / f"ul-{r}-{threads}"
                t = run_ultralytics(folder, tmp / "ds" / "images" / "train", out, ckpt, threads)
                times.setdefault(name, []).append(t)
            for precision in ("fp32", "auto"):
                t, ran = run_b2p(yaml, ckpt, tmp / f"b2p-{precision}", precision)
                used = ran if precision == "auto" else used
                times.setdefault(f"b2p label {precision}", []).append(t)
        agree = agreement(tmp / "b2p-fp32" / "train", tmp / "b2p-auto" / "train")
    ref = args.images / statistics.median(times["ultralytics, threads"])
    print("| tool | images/s | × Ultralytics (threads fixed) |\n|---|---|---|")
    for name, values in times.items():
        rate = args.images / statistics.median(values)
        shown = name.replace("auto", f"auto → {used}")
        print(f"| {shown} | {rate:.2f} | {rate / ref:.2f} |")
    print(f"\nmask pixel agreement, auto ({used}) vs fp32: {100 * agree:.2f} % (random weights)")


if __name__ == "__main__":
    main()
