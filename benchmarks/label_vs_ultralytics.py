"""``b2p label`` next to Ultralytics' ``yolo_bbox2segment``: same MobileSAM checkpoint, same images.

Ultralytics is never a dependency of boxes2pixels: this script installs it on first use into a
folder of its own (``pip install --no-deps --target DIR ultralytics``) and runs the converter
in a subprocess that alone has DIR on its path. Each round runs, one after the other:

- Ultralytics as shipped (it sets torch to 1 thread on machines with few cores);
- Ultralytics with torch's threads put back to ``--threads``;
- ``b2p label`` at fp32 in PyTorch (the old default), with ``--runtime torch`` (PyTorch at
  ``--precision auto``), and at its defaults (``auto`` precision and encoder runtime: OpenVINO
  when installed).

With OpenVINO, the encoder's one-time conversion and compile (kept in the cache, as for a
user's second run) happen before the rounds and are printed on their own. Medians of
``--rounds`` rounds are printed as images/s and as ratios to Ultralytics with its threads
fixed, with the pixel agreement of each run's masks with fp32's (random weights: the
agreement of a real checkpoint is higher, its masks are less noisy). Example::

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

from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.inference.precision import cpu_info
from boxes2pixels.label import label_dataset
from boxes2pixels.teachers import load_teacher

sys.path.insert(0, str(Path(__file__).parent))
from label_throughput import make_dataset, random_checkpoint

B2P_RUNS = (
    ("b2p label --precision fp32 --runtime torch", "fp32", "torch"),
    ("b2p label --runtime torch", "auto", "torch"),
    ("b2p label (defaults)", "auto", "auto"),
)
"""``b2p label`` runs: name, precision, encoder runtime (the first is the agreement reference)."""

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


def run_b2p(yaml: Path, ckpt: Path, out: Path, precision: str, runtime: str) -> tuple[float, str]:
    """Seconds of loading the teacher and ``label_dataset`` (Ultralytics' time also includes
    loading its model), and what ran (precision, runtime)."""
    start = time.perf_counter()
    teacher = load_teacher(
        "mobile-sam", checkpoint=str(ckpt), device="cpu", precision=precision, runtime=runtime
    )
    label_dataset(yaml, teacher, out, splits=["train"], overwrite=True, progress=False)
    return time.perf_counter() - start, f"{teacher.precision}, {teacher.runtime}"


def one_time_setup(ckpt: Path) -> float | None:
    """Seconds to convert and compile the encoder for OpenVINO into the (cold) cache, as a
    user's first ``b2p label`` does; None when the defaults do not use OpenVINO."""
    start = time.perf_counter()
    teacher = load_teacher("mobile-sam", checkpoint=str(ckpt), device="cpu")
    return time.perf_counter() - start if teacher.runtime == "openvino" else None


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
        os.environ["B2P_CACHE_DIR"] = str(tmp / "cache")  # a cold cache, filled once below
        setup = one_time_setup(ckpt)
        times: dict[str, list[float]] = {}
        ran: dict[str, str] = {}
        for r in range(args.rounds):
            for name, threads in (
                ("ultralytics as shipped", 0),
                ("ultralytics, threads", args.threads),
            ):
                out = tmp / f"ul-{r}-{threads}"
                t = run_ultralytics(folder, tmp / "ds" / "images" / "train", out, ckpt, threads)
                times.setdefault(name, []).append(t)
            for name, precision, runtime in B2P_RUNS:
                t, ran[name] = run_b2p(yaml, ckpt, tmp / name, precision, runtime)
                times.setdefault(name, []).append(t)
        agree = {
            name: agreement(tmp / B2P_RUNS[0][0] / "train", tmp / name / "train")
            for name, _, _ in B2P_RUNS
        }
    ref = args.images / statistics.median(times["ultralytics, threads"])
    print("| tool | ran | images/s | × Ultralytics (threads fixed) | masks = fp32's |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        rate = args.images / statistics.median(values)
        same = f"{100 * agree[name]:.2f} %" if name in agree else ""
        print(
            f"| {name} | {ran.get(name, 'fp32, torch')} | {rate:.2f} | {rate / ref:.2f} | {same} |"
        )
    if setup is not None:
        print(
            f"- once per checkpoint: OpenVINO conversion and compile of the encoder {setup:.1f} s"
        )
    print("\n(mask agreement with random weights: a real checkpoint's masks are less noisy)")


if __name__ == "__main__":
    main()
