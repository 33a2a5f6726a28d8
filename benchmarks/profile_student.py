"""Where the student's inference time goes, and what each optimisation buys.

Run from the repository root (random weights; timing does not depend on their values)::

    python benchmarks/profile_student.py                  # 518×518, batch 1, fp32 and bf16
    python benchmarks/profile_student.py --threads 2 --repeats 10 --compile

It prints three tables:

1. a per-stage breakdown of one forward pass (backbone, laterals, fusion, PixelShuffle
   stages, detail branch, mixer, each head, the final resizes);
2. cumulative optimisation steps, each with its latency, its speed-up over the student as
   built, its ratio to SegFormer-B2 (512×512, same precision) and the largest change of
   the fine logits it causes (0 up to rounding = an exact reformulation);
3. the same steps under bf16 autocast with channels-last.

Already in ``boxes2pixels.student`` (measured by the first two rows): prediction computes
only the fine head (``forward(x, heads=("fine",))``; the binary head is a training-time
auxiliary), and each head applies its 1×1 classifier before the last bilinear ×2 upsample
(the two commute exactly; the upsample then runs on C channels instead of 32).
Steps measured here on a copy, not adopted:

- ``BatchNorm folded``: eval-mode BN merged into the preceding convolution (exact).
- ``channels-last``, ``torch.compile``, ``onnxruntime``: runtime choices, no model change.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def make_student(imgsz: int) -> nn.Module:
    """The paper's student with random weights."""
    from boxes2pixels.student import Student

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Student(num_classes=3, backbone_init="random", imgsz=imgsz).eval()


def randomise_batchnorm(model: nn.Module) -> None:
    """Non-trivial BN statistics, so folding them is a real test of exactness."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)


# ---------------------------------------------------------------- model rewrites (copies)
def fine_head_only(model: nn.Module) -> nn.Module:
    """A copy whose decoder computes only the fine head."""
    model = copy.deepcopy(model)
    model.decoder.binary_head = None
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy with every eval-mode BatchNorm2d folded into the convolution before it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            for i in range(len(children) - 1):
                conv, bn = children[i], children[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
        # PixelShuffleUp: conv → PixelShuffle(2) → BN; BN channel c reads conv channels 4c..4c+3
        if all(hasattr(module, a) for a in ("conv", "shuffle", "bn")) and isinstance(
            module.bn, nn.BatchNorm2d
        ):
            conv, bn = module.conv, module.bn
            r2 = module.shuffle.upscale_factor**2
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            fused = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                bias=True,
            )
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale.repeat_interleave(r2)[:, None, None, None])
                base = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
                fused.bias.copy_(base * scale.repeat_interleave(r2) + shift.repeat_interleave(r2))
            module.conv = fused
            module.bn = nn.Identity()
    return model


# ---------------------------------------------------------------------------- breakdown
def breakdown(
    model: nn.Module, x: torch.Tensor, repeats: int, warmup: int, ctx: Callable[[], Any]
) -> list[tuple[str, float]]:
    """Median time of each stage of the student's forward pass (its decoder re-enacted)."""
    from boxes2pixels.student.decoder import detail_grid

    dec = model.decoder
    h, w = x.shape[-2:]
    stages: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        stages.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        return out

    def once() -> None:
        with torch.inference_mode(), ctx():
            feats = timed("backbone (ViT, 8 blocks)", lambda: model.backbone(x))
            lat = timed(
                "laterals 1×1", lambda: [m(f) for m, f in zip(dec.laterals, feats, strict=True)]
            )

            def fuse() -> torch.Tensor:
                y = lat[-1]
                for i in range(len(lat) - 2, -1, -1):
                    y = dec.fusion[i](y + lat[i])
                return y

            y = timed("fusion blocks", fuse)
            s = timed("PixelShuffle ×3", lambda: dec.upsample(y))
            s = timed(
                "resize to H/4",
                lambda: F.interpolate(
                    s, size=detail_grid(h, w), mode="bilinear", align_corners=False
                ),
            )
            d = timed("detail branch", lambda: dec.detail(x))
            m = timed("mixer", lambda: dec.mixer(torch.cat([s, d], 1)))
            f = timed("fine head", lambda: dec.fine_head(m))
            timed(
                "fine resize to input",
                lambda: F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False),
            )
            if dec.binary_head is not None:
                b = timed("binary head", lambda: dec.binary_head(m))
                timed(
                    "binary resize to input",
                    lambda: F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False),
                )

    for _ in range(warmup):
        once()
    stages.clear()
    for _ in range(repeats):
        once()
    return [(k, statistics.median(v)) for k, v in stages.items()]


# -------------------------------------------------------------------------------- steps
def row(name: str, ms: float, first: float, seg_ms: float, diff: float) -> str:
    """One Markdown row of the steps table."""
    return f"| {name} | {ms:.1f} | {first / ms:.2f}× | {ms / seg_ms:.2f} | {diff:.1e} |"


def interleaved(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, float]:
    """Median ms of each call, timed round-robin so that load drift hits all of them alike."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def torch_call(
    model: Any, inp: torch.Tensor, precision: str, channels_last: bool
) -> Callable[[], Any]:
    """A no-argument call of ``model`` under inference mode and the precision's autocast."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inp = inp.contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def call() -> Any:
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            return model(inp)

    return call


def fine_of(out: Any) -> torch.Tensor:
    """The fine logits of a call's result (torch dict or onnxruntime dict)."""
    value = out["fine"]
    return torch.as_tensor(value).float()


def run_steps(args: argparse.Namespace) -> None:
    """Print the stage breakdown and the optimisation steps for each precision."""
    from boxes2pixels.baselines import BaselineModel, nearest_multiple

    torch.manual_seed(0)
    imgsz = args.imgsz
    student = make_student(imgsz)
    randomise_batchnorm(student)
    x = torch.randn(args.batch, 3, imgsz, imgsz)
    with torch.inference_mode():
        reference = student(x)["fine"]

    side = nearest_multiple(imgsz, 32)
    segformer = BaselineModel("segformer", num_classes=3, encoder_init="random").eval()
    xs = torch.randn(args.batch, 3, side, side)

    fast = fold_batchnorm(fine_head_only(student))
    steps: list[tuple[str, Any, bool]] = [
        ("training forward (both heads)", student, False),
        ("prediction path (fine head only)", fine_head_only(student), False),
        ("+ BatchNorm folded", fast, False),
        ("+ channels-last", fast, True),
    ]
    print(
        f"student {imgsz}×{imgsz}, batch {args.batch}, {torch.get_num_threads()} threads; "
        f"SegFormer-B2 at {side}×{side}; median of {args.repeats} round-robin calls after "
        f"{args.warmup} warm-up\n"
    )

    print("## Where the time goes (fp32, as built)\n")
    print("| stage | ms |\n|---|---|")
    parts = breakdown(
        student, x, args.repeats, args.warmup, lambda: torch.autocast("cpu", enabled=False)
    )
    for name, ms in parts:
        print(f"| {name} | {ms:.1f} |")
    print(f"| **sum** | {sum(ms for _, ms in parts):.1f} |\n")

    onnx_runner = seg_runner = None
    tmp = tempfile.TemporaryDirectory()
    if "fp32" in args.precisions and not args.no_onnx:
        from boxes2pixels.export import export_onnx
        from boxes2pixels.inference.onnx_model import OnnxStudent

        path = Path(tmp.name) / "student.onnx"
        export_onnx(fast, path, imgsz=imgsz, batch=args.batch, verify=False)
        onnx_runner = OnnxStudent(path, threads=torch.get_num_threads())
        seg_path = Path(tmp.name) / "segformer.onnx"
        export_onnx(segformer, seg_path, imgsz=side, batch=args.batch, verify=False)
        seg_runner = OnnxStudent(seg_path, threads=torch.get_num_threads())

    for precision in args.precisions:
        half = precision != "fp32"
        calls: dict[str, Callable[[], Any]] = {
            "SegFormer-B2": torch_call(copy.deepcopy(segformer), xs, precision, half)
        }
        for name, model, cl in steps:
            if half and name == "+ channels-last":
                continue
            calls[name] = torch_call(copy.deepcopy(model), x, precision, cl or half)
        if args.compile:
            calls["+ torch.compile"] = torch_call(
                torch.compile(copy.deepcopy(fast)), x, precision, True
            )
        if precision == "fp32" and onnx_runner is not None:
            calls["onnxruntime (same model)"] = functools.partial(onnx_runner.run, x.numpy())
            calls["SegFormer-B2 onnxruntime"] = functools.partial(seg_runner.run, xs.numpy())
        ms = interleaved(calls, args.repeats, args.warmup)
        seg_ms = ms.pop("SegFormer-B2")
        seg_ort_ms = ms.pop("SegFormer-B2 onnxruntime", None)
        layout = " with autocast and channels-last" if half else ""
        print(f"## {precision}{layout}: SegFormer-B2 {seg_ms:.1f} ms\n")
        print("| step | latency (ms) | speed-up | student / SegFormer | max abs Δ fine logits |")
        print("|---|---|---|---|---|")
        first = next(iter(ms.values()))
        for name, value in ms.items():
            diff = float((fine_of(calls[name]()) - reference).abs().max())
            print(row(name, value, first, seg_ms, diff))
        if seg_ort_ms is not None:
            ort_ms = ms["onnxruntime (same model)"]
            print(
                f"\nSegFormer-B2 in onnxruntime: {seg_ort_ms:.1f} ms; student / SegFormer "
                f"with both in onnxruntime: {ort_ms / seg_ort_ms:.2f}"
            )
        print()
    tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=518)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime step")
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    run_steps(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
