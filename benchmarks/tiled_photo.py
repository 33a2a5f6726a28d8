"""Seconds per full-resolution drone photo (5280×2970), tiled as ``b2p predict --tile`` runs it.

A student is fitted briefly on generated blade photos (as in ``inference_paths.py``, so its
argmax has real decision boundaries), then one generated photo of ``--size`` is segmented
tiled with :func:`boxes2pixels.inference.segment` (518-px windows, overlap 0.25: 112 windows
at 5280×2970) by each path, one after the other:

- PyTorch fp32 (``b2p predict``'s default before ``--precision auto``);
- PyTorch with ``--precision auto`` (what it picks on this CPU);
- OpenVINO (``--runtime openvino``, the student exported to ONNX at the tile size) at fp32
  and with ``auto``, when OpenVINO is installed and ``--device`` is the CPU;
- PyTorch ``auto`` on the whole photo letterboxed (``b2p predict`` without ``--tile``), for
  the cost of a label map at full size.

``forward s`` is the model alone on the same number of windows (random input on the device,
synchronised, logits left there): what a photo costs beyond it is cutting the windows,
blending their logits and the argmax.

Each path runs one window first (``first call``: OpenVINO compiles the model then, or reads
it from its compiled-model cache, see ``compile_config``), then the timed photo. Each path's
label map is compared with fp32's (pixel agreement). Example::

    python benchmarks/tiled_photo.py --threads 2
    python benchmarks/tiled_photo.py --device cuda --batch 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from boxes2pixels.data.synth import SynthConfig, render_scene
from boxes2pixels.export import export_onnx
from boxes2pixels.inference import segment
from boxes2pixels.inference.openvino_cache import openvino_available
from boxes2pixels.inference.openvino_model import OpenVinoStudent
from boxes2pixels.inference.precision import (
    autocast,
    choose_precision,
    machine_summary,
    precision_dtype,
)
from boxes2pixels.inference.tiled import tile_starts
from boxes2pixels.student import Student

sys.path.insert(0, str(Path(__file__).parent))
from inference_paths import fit, scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="5280x2970", help="photo size WxH")
    parser.add_argument("--tile", type=int, default=518)
    parser.add_argument("--batch", type=int, default=4, help="tiles per forward pass")
    parser.add_argument("--steps", type=int, default=60, help="fitting steps")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    w, h = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    auto = choose_precision(device).precision
    print("\n".join(machine_summary(device)), f"\n{args.threads} CPU thread(s)\n")
    student = Student(num_classes=3, backbone_init="random", backbone_mode="full")
    images, masks = scenes(24, args.tile, seed=0)
    fit(student, images, masks, args.steps, 224)
    student.to(device)
    cfg = SynthConfig(defect_free_fraction=0.0, defect_scale=2.0, max_defects=6)
    photo = render_scene(np.random.default_rng(7), (w, h), cfg).image

    def tiled(model: object, precision: str, image: np.ndarray, tile: bool = True) -> np.ndarray:
        return segment(
            model, image, batch_size=args.batch, tile=tile, tile_size=args.tile if tile else None,
            precision=precision,
        ).labels[0]  # fmt: skip

    def forward_only(model: object, precision: str, windows: int) -> float:
        x = torch.randn(args.batch, 3, args.tile, args.tile, device=device)
        dtype = precision_dtype(precision)
        start = time.perf_counter()
        with torch.inference_mode(), autocast(device, dtype):
            for done in range(0, windows, args.batch):
                model(x[: windows - done], heads=("fine",))["fine"].float()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    runs: dict[str, tuple[object, str]] = {
        "PyTorch fp32": (student, "fp32"),
        f"PyTorch auto ({auto})": (student, auto),
    }
    windows = len(tile_starts(h, args.tile, round(args.tile * 0.75))) * len(
        tile_starts(w, args.tile, round(args.tile * 0.75))
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["B2P_CACHE_DIR"] = tmp  # a cold compiled-model cache: first calls compile
        if openvino_available() and device.type == "cpu":
            path = Path(tmp) / "student.onnx"
            export_onnx(student, path, imgsz=args.tile, verify=False)
            for precision in ("fp32", auto):
                ov = OpenVinoStudent(path, precision=precision, threads=args.threads)
                runs[f"OpenVINO {precision}"] = (ov, precision)
        labels, seconds, first, forward = {}, {}, {}, {}
        for name, (model, precision) in runs.items():
            start = time.perf_counter()
            tiled(model, precision, photo[: args.tile, : args.tile])
            first[name] = time.perf_counter() - start
            start = time.perf_counter()
            labels[name] = tiled(model, precision, photo)
            seconds[name] = time.perf_counter() - start
            if name.startswith("PyTorch"):
                forward[name] = forward_only(model, precision, windows)
        whole = f"PyTorch auto ({auto}), whole photo"
        tiled(student, auto, photo, tile=False)  # warm-up at the letterbox size
        start = time.perf_counter()
        labels[whole] = tiled(student, auto, photo, tile=False)
        seconds[whole] = time.perf_counter() - start
    ref = labels["PyTorch fp32"]
    head = f"| path ({w}×{h}, {args.tile}-px tiles) | first call s | s per photo | forward s"
    print(f"{head} | × fp32 speed | agree |\n|---|---|---|---|---|---|")
    for name, s in seconds.items():
        agree = "-" if name == whole else f"{100 * float((labels[name] == ref).mean()):.2f} %"
        fwd = f"{forward[name]:.2f}" if name in forward else "-"
        speed = seconds["PyTorch fp32"] / s
        once = f"{first[name]:.1f}" if name in first else "-"
        print(f"| {name} | {once} | {s:.2f} | {fwd} | {speed:.2f} | {agree} |")


if __name__ == "__main__":
    main()
