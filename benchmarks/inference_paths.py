"""Which inference path is fastest on this machine while staying exact: student vs SegFormer-B2.

Both models are first fitted briefly on generated blade photos (random initialisation, a few
dozen steps on crops, so their argmax has real decision boundaries; random weights give
near-tied logits whose argmax agreement means nothing). Then every path is timed side by side
in one process (round-robin, so load changes hit all paths alike) and its label maps are
compared with fp32's on held-out photos:

- ``agree``: fraction of pixels whose label equals fp32's label (the issue's ≥ 99.5 % rule);
- ``defect IoU``: overlap of the pixels either path calls a defect (the strict view: most
  pixels are easy background).

Paths: fp32; fp32 with the math attention kernel; bf16 autocast + channels-last; bf16
weights (the whole model cast, no autocast); int8 dynamic quantisation of the linear layers
(``torch.ao.quantization.quantize_dynamic``; ``--torchao`` adds torchao's
``Int8DynamicActivationInt8WeightConfig``); ``--compile`` adds torch.compile of bf16; with
OpenVINO installed, the model exported to ONNX and run by OpenVINO at fp32 and at bf16;
``--int8-onnx`` adds the exported file quantised by onnxruntime's own tools (dynamic int8
MatMuls run by onnxruntime; static int8 QDQ MatMuls, calibrated on the fitting photos, run by
onnxruntime and, when installed, by OpenVINO, which runs QDQ graphs in int8).

``--clock cpu`` (default) times process CPU time at 1 thread: on a machine shared with other
jobs that counts the work done, not the waiting. ``--clock wall`` times wall-clock time at
``--threads``. The machine's limit is measured too: GFLOP/s of a 2048² matrix product at
fp32 and bf16, and the student's MACs divided by it. Example (docs/performance.md)::

    python benchmarks/inference_paths.py --steps 60 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from boxes2pixels.baselines import BaselineModel
from boxes2pixels.data.synth import SynthConfig, render_scene
from boxes2pixels.geometry import normalize
from boxes2pixels.inference.openvino_cache import openvino_available
from boxes2pixels.inference.precision import choose_precision, cpu_info
from boxes2pixels.measure import count_gmacs
from boxes2pixels.student import Student

HEADS = ("fine",)
Logits = Callable[[torch.Tensor], torch.Tensor]


def scenes(n: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` generated photos (N×side×side×3 uint8) and their label maps, every one defective."""
    rng = np.random.default_rng(seed)
    cfg = SynthConfig(defect_free_fraction=0.0, defect_scale=2.0, max_defects=4)
    drawn = [render_scene(rng, (side, side), cfg) for _ in range(n)]
    return np.stack([s.image for s in drawn]), np.stack([s.mask for s in drawn])


def fit(model: nn.Module, images: np.ndarray, masks: np.ndarray, steps: int, crop: int) -> None:
    """A short fit on random crops (weighted cross-entropy, AdamW, bf16 autocast if fast)."""
    rng = np.random.default_rng(0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=1e-2)
    weight = torch.tensor([0.4, 4.0, 4.0])
    fast = choose_precision(torch.device("cpu")).precision == "bf16"
    model.train()
    for _ in range(steps):
        idx = rng.integers(0, len(images), 4)
        y0, x0 = rng.integers(0, images.shape[1] - crop + 1, 2)
        x = normalize(images[idx, y0 : y0 + crop, x0 : x0 + crop], model.mean, model.std)
        t = torch.from_numpy(masks[idx, y0 : y0 + crop, x0 : x0 + crop]).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            logits = model(x, heads=HEADS)["fine"]
        loss = F.cross_entropy(logits.float(), t, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def openvino_paths(model: nn.Module, side: int, folder: Path) -> dict[str, Logits]:
    """``model`` exported to ONNX at side×side and run by OpenVINO at fp32 and bf16."""
    from boxes2pixels.export import export_onnx
    from boxes2pixels.inference.openvino_model import OpenVinoStudent

    path = folder / f"{type(model).__name__}.onnx"
    export_onnx(model, path, imgsz=side, verify=False)
    out = {}
    for precision in ("fp32", "bf16"):
        runner = OpenVinoStudent(path, precision=precision, threads=torch.get_num_threads())
        out[f"OpenVINO {precision} (exported ONNX)"] = lambda x, r=runner: torch.from_numpy(
            r.run(x.numpy())["fine"]
        )
    return out


def int8_onnx_paths(
    model: nn.Module, side: int, folder: Path, calibration: torch.Tensor
) -> dict[str, Logits]:
    """``model`` exported to ONNX and quantised to int8 by onnxruntime's quantisation tools:
    dynamic (MatMul weights int8, activations quantised per call) and static QDQ (MatMul
    weights per channel, activations calibrated on ``calibration``)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from boxes2pixels.export import export_onnx
    from boxes2pixels.inference.onnx_model import OnnxStudent

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.items = iter(
                [{name: calibration[i : i + 1].numpy()} for i in range(len(calibration))]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    name = type(model).__name__  # every file named per model: OpenVINO caches by path
    exported = folder / f"{name}-int8-source.onnx"
    export_onnx(model, exported, imgsz=side, verify=False)
    source_model = onnx.load(str(exported))
    meta = {p.key: p.value for p in source_model.metadata_props}
    input_name = source_model.graph.input[0].name
    source = folder / f"{name}-prepared.onnx"  # shapes inferred, graph folded (ORT's advice)
    quant_pre_process(exported, source)
    files = {"dynamic": folder / f"{name}-dynamic.onnx", "static": folder / f"{name}-static.onnx"}
    quantize_dynamic(source, files["dynamic"], op_types_to_quantize=["MatMul"],
                     weight_type=QuantType.QInt8)  # fmt: skip
    quantize_static(source, files["static"], Reader(input_name), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)  # fmt: skip
    for path in files.values():  # the quantisers drop the file's boxes2pixels metadata
        quantised = onnx.load(str(path))
        onnx.helper.set_model_props(quantised, meta)
        onnx.save(quantised, str(path))
    threads = torch.get_num_threads()
    out: dict[str, Logits] = {}
    for kind, path in files.items():
        ort_model = OnnxStudent(path, threads=threads)
        out[f"onnxruntime int8 {kind} MatMuls"] = lambda x, r=ort_model: torch.from_numpy(
            r.run(x.numpy())["fine"]
        )
    if openvino_available():
        from boxes2pixels.inference.openvino_model import OpenVinoStudent

        for precision in ("fp32", "bf16"):
            ov = OpenVinoStudent(files["static"], precision=precision, threads=threads)
            out[f"OpenVINO int8 static MatMuls, rest {precision}"] = lambda x, r=ov: (
                torch.from_numpy(r.run(x.numpy())["fine"])
            )
    return out


def paths(model: nn.Module, torchao: bool, compiled: bool) -> dict[str, Logits]:
    """Every PyTorch inference path of ``model``: name → call returning fp32 fine logits."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run(m: nn.Module, dtype: torch.dtype | None, cl: bool, math: bool = False) -> Logits:
        m = m.to(memory_format=torch.channels_last) if cl else m
        cast = next(m.parameters()).dtype

        def call(x: torch.Tensor) -> torch.Tensor:
            x = x.to(cast)
            x = x.contiguous(memory_format=torch.channels_last) if cl else x
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None),
                sdpa_kernel(SDPBackend.MATH) if math else contextlib.nullcontext(),
            ):
                return m(x, heads=HEADS)["fine"].float()

        return call

    out = {
        "fp32": run(model, None, False),
        "fp32, math attention": run(model, None, False, math=True),
        "bf16 autocast + channels-last": run(copy.deepcopy(model), torch.bfloat16, True),
        "bf16 weights (no autocast)": run(copy.deepcopy(model).bfloat16(), None, True),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, torch.qint8)
    out["int8 dynamic linears (torch.ao)"] = run(q, None, False)
    if torchao:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        m = copy.deepcopy(model)
        quantize_(m, Int8DynamicActivationInt8WeightConfig())
        out["int8 dynamic linears (torchao)"] = run(m, None, False)
    if compiled:
        m = copy.deepcopy(model)
        m.forward = torch.compile(m.forward)
        out["bf16 autocast + torch.compile"] = run(m, torch.bfloat16, True)
    return out


def timed(calls: dict[str, Logits], x: torch.Tensor, repeats: int, clock: str) -> dict[str, float]:
    """Median ms of each call, round-robin after one warm-up round."""
    tick = time.process_time if clock == "cpu" else time.perf_counter
    for fn in calls.values():
        fn(x)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = tick()
            fn(x)
            times[name].append((tick() - start) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def agreement(calls: dict[str, Logits], x: torch.Tensor) -> dict[str, tuple[float, float]]:
    """(pixel agreement, defect IoU) of each path's labels with fp32's on the batch ``x``."""
    ref = torch.cat([calls["fp32"](x[i : i + 1]).argmax(1) for i in range(len(x))])
    out = {}
    for name, fn in calls.items():
        pred = torch.cat([fn(x[i : i + 1]).argmax(1) for i in range(len(x))])
        either = (pred > 0) | (ref > 0)
        same = (pred == ref) & either
        out[name] = (
            float((pred == ref).float().mean()),
            float(same.sum() / either.sum()) if either.any() else 1.0,
        )
    return out


def machine_limit(clock: str) -> dict[str, float]:
    """GFLOP/s of a 2048² matrix product at fp32 and bf16 (same clock and threads)."""
    a = torch.randn(2048, 2048)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = a.to(dtype)
        ms = timed({name: lambda x, m=m: m @ m}, a, 5, clock)[name]
        out[name] = 2 * 2048**3 / (ms / 1000) / 1e9
    return out


def table(name: str, ms: dict[str, float], agree: dict[str, tuple[float, float]]) -> str:
    """A Markdown table of one model's paths."""
    base = ms["fp32"]
    lines = [f"### {name}", "", "| path | ms | × fp32 speed | agree | defect IoU |"]
    lines.append("|---|---|---|---|---|")
    for path, value in ms.items():
        a, iou = agree[path]
        lines.append(f"| {path} | {value:.1f} | {base / value:.2f} | {100 * a:.2f} % | {iou:.3f} |")
    return "\n".join(lines)


def fastest_exact(ms: dict[str, float], agree: dict[str, tuple[float, float]]) -> str:
    """The fastest path with ≥ 99.5 % pixel agreement with fp32."""
    return min((p for p in ms if agree[p][0] >= 0.995), key=ms.__getitem__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=518)
    parser.add_argument("--steps", type=int, default=60, help="fitting steps per model")
    parser.add_argument(
        "--crop", type=int, default=224, help="fitting crop side (a multiple of 224)"
    )
    parser.add_argument("--photos", type=int, default=24, help="generated photos to fit on")
    parser.add_argument("--held-out", type=int, default=4, help="photos for the agreement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="wall clock only")
    parser.add_argument("--torchao", action="store_true", help="also torchao int8")
    parser.add_argument("--compile", action="store_true", help="also torch.compile")
    parser.add_argument(
        "--int8-onnx", action="store_true", help="also onnxruntime-quantised int8 ONNX files"
    )
    parser.add_argument(
        "--models",
        default="student,segformer",
        type=lambda v: [m.strip() for m in v.split(",")],
        help="comma-separated: student, segformer",
    )
    args = parser.parse_args()
    torch.set_num_threads(1 if args.clock == "cpu" else args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    info = cpu_info()
    print(f"CPU: {info.describe()}\nauto picks: {choose_precision(torch.device('cpu'))}")
    print(f"clock: {args.clock}, {torch.get_num_threads()} thread(s), median of {args.repeats}\n")
    images, masks = scenes(args.photos, args.imgsz, seed=0)
    test_images, _ = scenes(args.held_out, args.imgsz, seed=1)
    limit = machine_limit(args.clock)
    folder = Path(tempfile.mkdtemp(prefix="b2p-paths-"))
    os.environ["B2P_CACHE_DIR"] = str(folder)  # OpenVINO's compiled models: not the user's cache
    if not openvino_available():
        print("OpenVINO is not installed (pip install 'boxes2pixels[openvino]'): no OpenVINO rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build = {
            "student": lambda: Student(num_classes=3, backbone_init="random", backbone_mode="full"),
            "segformer": lambda: BaselineModel("segformer", num_classes=3, encoder_init="random"),
        }
        unknown = sorted(set(args.models) - set(build))
        if unknown:
            parser.error(f"unknown --models {', '.join(unknown)} (use student, segformer)")
        models: dict[str, Any] = {name: build[name]() for name in args.models}
    side = {"student": args.imgsz, "segformer": args.imgsz // 32 * 32}
    best: dict[str, float] = {}
    for name, model in models.items():
        start = time.perf_counter()
        fit(model, images, masks, args.steps, max(224, args.crop // 224 * 224))
        fitted = time.perf_counter() - start
        s = side[name]
        test = normalize(test_images[:, :s, :s], model.mean, model.std)
        calls = paths(model, args.torchao, args.compile)
        if openvino_available():
            calls.update(openvino_paths(model, s, folder))
        if args.int8_onnx:
            calib = normalize(images[:8, :s, :s], model.mean, model.std)
            calls.update(int8_onnx_paths(model, s, folder, calib))
        ms = timed(calls, test[:1], args.repeats, args.clock)
        agree = agreement(calls, test)
        print(table(f"{name} at {s}×{s} (fitted {args.steps} steps in {fitted:.0f} s)", ms, agree))
        pick = fastest_exact(ms, agree)
        best[name] = ms[pick]
        print(f"\nfastest exact path: {pick}, {ms[pick]:.1f} ms\n")
        if name == "student":
            gmacs = count_gmacs(lambda t, m=model: m(t, heads=HEADS), test[:1])
            for prec, gflops in limit.items():
                floor = 2 * gmacs / gflops * 1000
                print(
                    f"- {prec} limit: {gflops:.0f} GFLOP/s → {floor:.0f} ms for {gmacs:.1f} GMACs"
                )
            print()
    shutil.rmtree(folder)
    if len(best) == 2:
        ratio = best["student"] / best["segformer"]
        print(f"student / SegFormer-B2, fastest exact paths: {ratio:.2f}")


if __name__ == "__main__":
    main()
