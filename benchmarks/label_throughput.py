"""Throughput and memory of ``b2p label`` (``label_dataset``) with SAM teachers on CPU.

Generates its own images (textured background, bright elliptic "defects", 0-5 boxes each),
saves randomly initialised SAM checkpoints in the official layout, and measures:

* images/s of ``label_dataset`` with ``mobile-sam`` and ``sam`` (vit_b), next to the naive
  loop common in user scripts that runs the whole SAM predictor (image embedding + prompt)
  once per box;
* the cost of an image with 5 boxes relative to one with 1 box (one encoder pass per image);
* the cost of a box-free image (the teacher is never called);
* peak memory while labelling many images (Python/numpy allocations via tracemalloc, and the
  process's peak RSS).

Random weights give meaningless masks but the same compute as real ones. Example::

    python benchmarks/label_throughput.py --images 100 --with-boxes 30 --sam-images 6 --many 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from boxes2pixels.data.yolo import load_data_yaml
from boxes2pixels.io import read_image
from boxes2pixels.label import label_dataset
from boxes2pixels.teachers import load_teacher


def make_dataset(root: Path, n_images: int, n_with_boxes: int, size: tuple[int, int]) -> Path:
    """``n_images`` JPEGs of ``size`` (w, h); the first ``n_with_boxes`` get 1-5 boxes."""
    width, height = size
    rng = np.random.default_rng(0)
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    base = cv2.GaussianBlur(rng.integers(60, 200, (height, width, 3)).astype(np.uint8), (0, 0), 3)
    for i in range(n_images):
        image = np.roll(base, int(rng.integers(0, width)), axis=1)
        lines = []
        if i < n_with_boxes:
            for _ in range(1 + i % 5):
                cx, cy = rng.uniform(0.15, 0.85, size=2)
                bw, bh = rng.uniform(0.05, 0.25, size=2)
                centre = (int(cx * width), int(cy * height))
                axes = (max(1, int(bw * width / 2)), max(1, int(bh * height / 2)))
                cv2.ellipse(image, centre, axes, 0, 0, 360, (40, 40, 230), -1)
                lines.append(f"{int(rng.integers(0, 2))} {cx:.5f} {cy:.5f} {bw:.5f} {bh:.5f}")
        cv2.imwrite(str(root / "images" / "train" / f"{i:05d}.jpg"), image)
        if lines:
            (root / "labels" / "train" / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")
    yaml = root / "data.yaml"
    yaml.write_text("path: .\ntrain: images/train\nnames: [dirt, damage]\n")
    return yaml


def random_checkpoint(folder: Path, model_type: str, teacher: str = "sam") -> Path:
    """Random SAM-family weights saved like the official files (a plain state dict; SAM 2:
    ``{"model": state dict}``), built with each package's own builder."""
    if teacher == "sam2":
        from sam2.build_sam import build_sam2

        from boxes2pixels.teachers.sam2 import sam2_config

        path = folder / f"sam2.1_hiera_{model_type}.pt"
        if not path.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = build_sam2(sam2_config(model_type), None, device="cpu")
            torch.save({"model": model.state_dict()}, path)
        return path
    if teacher == "sam-hq":
        path = folder / f"sam_hq_{model_type}.pth"
    else:
        stem = "mobile_sam.pt" if model_type == "vit_t" else f"sam_{model_type}_random.pth"
        path = folder / stem
    if not path.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if teacher == "sam-hq":
                from segment_anything_hq import sam_model_registry
            elif model_type == "vit_t":
                from mobile_sam import sam_model_registry
            else:
                from segment_anything import sam_model_registry
            torch.save(sam_model_registry[model_type]().state_dict(), path)
    return path


def naive_loop(yaml: Path, teacher, out: Path) -> float:
    """The common user script: the full predictor (embedding + prompt) once per box."""
    ds = load_data_yaml(yaml)
    predictor = teacher.predictor
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for path in ds.images("train"):
        image = read_image(path)
        h, w = image.shape[:2]
        labels = ds.labels(path)
        mask = np.zeros((h, w), np.uint8)
        for cls, box in zip(labels.classes, labels.xyxy(w, h), strict=True):
            predictor.set_image(image)
            masks, _, _ = predictor.predict(box=box, multimask_output=False)
            mask[masks[0]] = cls + 1
        cv2.imwrite(str(out / f"{path.stem}.png"), mask)
    return time.perf_counter() - start


def per_image_cost(teacher, size: tuple[int, int], repeats: int) -> dict[str, float]:
    """Median seconds of ``teacher.segment`` on one image with 1 and with 5 boxes, and of the
    image encoder alone; 1-box and 5-box runs alternate so both see the same machine load."""
    width, height = size
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (height, width, 3)).astype(np.uint8)
    x0 = rng.uniform(0, width * 0.7, 5)
    y0 = rng.uniform(0, height * 0.7, 5)
    boxes = np.stack([x0, y0, x0 + width * 0.2, y0 + height * 0.2], 1).astype(np.float32)
    teacher.segment(image, boxes[:1])  # warm-up
    runs: dict[int, list[float]] = {0: [], 1: [], 5: []}
    for _ in range(repeats):
        for n in (1, 5, 0):
            t = time.perf_counter()
            if n:
                teacher.segment(image, boxes[:n])
            else:  # the teacher's own encoder step (SAM 2 keeps its features elsewhere)
                with torch.inference_mode():
                    teacher._encode(image)
                teacher._release()
            runs[n].append(time.perf_counter() - t)
    times = {
        "1_box": statistics.median(runs[1]),
        "5_box": statistics.median(runs[5]),
        "encoder": statistics.median(runs[0]),
    }
    times["ratio_5_vs_1"] = times["5_box"] / times["1_box"]
    times["decoder_per_box"] = (times["5_box"] - times["1_box"]) / 4
    return times


def memory_test(tmp: Path, n_images: int, n_with_boxes: int, size: tuple[int, int]) -> dict:
    """Label many images with the ``box`` teacher: time per box-free image and peak memory."""
    yaml = make_dataset(tmp / "ds-many", n_images, n_with_boxes, size)
    teacher = load_teacher("box")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = label_dataset(yaml, teacher, tmp / "out-many", splits=["train"], progress=False)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    label_dataset(yaml, teacher, tmp / "out-many-traced", splits=["train"], progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "images": n_images,
        "with_boxes": n_with_boxes,
        "ms_per_image": 1000 * summary.wall_time_s / n_images,
        "traced_peak_mb": peak / 2**20,
        "decoded_image_mb": size[0] * size[1] * 3 / 2**20,
        "peak_rss_growth_mb": rss_after - rss_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="images for the small models")
    parser.add_argument("--with-boxes", type=int, default=30, help="of those, with boxes")
    parser.add_argument("--sam-images", type=int, default=6, help="images for ViT-B/L/H models")
    parser.add_argument("--sam-with-boxes", type=int, default=2, help="of those, with boxes")
    parser.add_argument("--size", default="640x360", help="image size WxH")
    parser.add_argument("--many", type=int, default=2000, help="images for the memory test")
    parser.add_argument("--many-with-boxes", type=int, default=0, help="of those, with boxes")
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive loop")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the 1 vs 5 box test")
    parser.add_argument(
        "--teachers",
        default="mobile-sam,sam,sam-hq,sam2",
        help="teachers to measure, each NAME or NAME:MODEL_TYPE (e.g. sam-hq:vit_b)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    results: dict[str, object] = {
        "torch_threads": torch.get_num_threads(),
        "size": args.size,
        "cpu": next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln),
            "?",
        ),
    }
    with tempfile.TemporaryDirectory(prefix="b2p-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # first, before any model is loaded, so that the peak RSS growth means something
        results["many_images"] = memory_test(tmp, args.many, args.many_with_boxes, size)
        print("many_images", json.dumps(results["many_images"], indent=1), flush=True)
        small, big = (args.images, args.with_boxes), (args.sam_images, args.sam_with_boxes)
        # teacher[:model type] -> default model type; ViT-B/L/H models get the smaller set
        default_types = {"mobile-sam": "vit_t", "sam": "vit_b", "sam-hq": "vit_tiny"}
        default_types["sam2"] = "tiny"
        for spec in args.teachers.split(","):
            teacher_name, _, model_type = spec.partition(":")
            model_type = model_type or default_types[teacher_name]
            n_images, n_boxes = big if model_type in ("vit_b", "vit_l", "vit_h") else small
            name = f"{teacher_name}:{model_type}"
            yaml = make_dataset(tmp / f"ds-{spec}", n_images, n_boxes, size)
            ckpt = random_checkpoint(tmp, model_type, teacher_name)
            teacher = load_teacher(teacher_name, checkpoint=str(ckpt), device="cpu")
            summary = label_dataset(
                yaml, teacher, tmp / f"out-{name}", splits=["train"], progress=False
            )
            naive = float("nan")
            if not args.skip_naive:
                naive = naive_loop(yaml, teacher, tmp / f"naive-{name}")
            cost = per_image_cost(teacher, size, args.repeats)
            results[name] = {
                "images": n_images,
                "with_boxes": n_boxes,
                "boxes": summary.boxes,
                "label_images_per_s": summary.images_per_s,
                "label_wall_s": summary.wall_time_s,
                "naive_images_per_s": n_images / naive,
                "naive_wall_s": naive,
                "segment_1_box_s": cost["1_box"],
                "segment_5_box_s": cost["5_box"],
                "ratio_5_vs_1": cost["ratio_5_vs_1"],
                "encoder_s": cost["encoder"],
                "decoder_per_box_s": cost["decoder_per_box"],
            }
            print(name, json.dumps(results[name], indent=1), flush=True)
            del teacher

    print(f"\nCPU: {results['cpu']}, {results['torch_threads']} torch threads, {args.size}")
    print("| teacher | label images/s | encoder s | decoder s/box |\n|---|---|---|---|")
    for name, r in results.items():
        if isinstance(r, dict) and "label_images_per_s" in r:
            print(
                f"| {name} | {r['label_images_per_s']:.3f} | {r['encoder_s']:.2f} "
                f"| {r['decoder_per_box_s']:.3f} |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
