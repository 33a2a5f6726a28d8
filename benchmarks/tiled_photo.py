"""Seconds per full-resolution drone photo (5280×2970), tiled as ``b2p predict --tile`` runs it.

A student is fitted briefly on generated blade photos (as in ``inference_paths.py``, so its
argmax has real decision boundaries), then one generated photo of ``--size`` is segmented
tiled with :func:`boxes2pixels.inference.segment` (518-px windows, overlap 0.25: 112 windows
at 5280×2970) by each path, one after the other:

- PyTorch fp32 (``b2p predict``'s default before ``--precision auto``);
- PyTorch with ``--precision auto`` (what it picks on this CPU);
- OpenVINO (``--runtime openvino``, the student exported to ONNX at the tile size) at fp32
  and with ``auto``, when OpenVINO is installed.

Each path runs one window first (``first call``: OpenVINO compiles the model then, or reads
it from its compiled-model cache, see ``compile_config``), then the timed photo. Each path's
label map is compared with fp32's (pixel agreement). Example::

    python benchmarks/tiled_photo.py --threads 2
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
from boxes2pixels.inference.precision import choose_precision, cpu_info
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    w, h = (int(v) for v in args.size.lower().split("x"))
    auto = choose_precision(torch.device("cpu")).precision
    print(f"CPU: {cpu_info().describe()}; {args.threads} thread(s); auto picks {auto}\n")
    student = Student(num_classes=3, backbone_init="random", backbone_mode="full")
    images, masks = scenes(24, args.tile, seed=0)
    fit(student, images, masks, args.steps, 224)
    cfg = SynthConfig(defect_free_fraction=0.0, defect_scale=2.0, max_defects=6)
    photo = render_scene(np.random.default_rng(7), (w, h), cfg).image

    def tiled(model: object, precision: str, image: np.ndarray) -> np.ndarray:
        return segment(
            model, image, batch_size=args.batch, tile=True, tile_size=args.tile,
            precision=precision,
        ).labels[0]  # fmt: skip

    runs: dict[str, tuple[object, str]] = {
        "PyTorch fp32": (student, "fp32"),
        f"PyTorch auto ({auto})": (student, auto),
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["B2P_CACHE_DIR"] = tmp  # a cold compiled-model cache: first calls compile
        if openvino_available():
            path = Path(tmp) / "student.onnx"
            export_onnx(student, path, imgsz=args.tile, verify=False)
            for precision in ("fp32", auto):
                ov = OpenVinoStudent(path, precision=precision, threads=args.threads)
                runs[f"OpenVINO {precision}"] = (ov, precision)
        labels, seconds, first = {}, {}, {}
        for name, (model, precision) in runs.items():
            start = time.perf_counter()
            tiled(model, precision, photo[: args.tile, : args.tile])
            first[name] = time.perf_counter() - start
            start = time.perf_counter()
            labels[name] = tiled(model, precision, photo)
            seconds[name] = time.perf_counter() - start
    ref = labels["PyTorch fp32"]
    head = f"| path ({w}×{h}, {args.tile}-px tiles) | first call s | s per photo | × fp32 speed"
    print(f"{head} | agree |\n|---|---|---|---|---|")
    for name, s in seconds.items():
        agree = float((labels[name] == ref).mean())
        speed = seconds["PyTorch fp32"] / s
        print(f"| {name} | {first[name]:.1f} | {s:.1f} | {speed:.2f} | {100 * agree:.2f} % |")


if __name__ == "__main__":
    main()
