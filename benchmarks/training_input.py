"""Does the loader keep up with the model? Windows per second per loader worker for
``b2p train --crop-size N`` on full-resolution photos, against the model's own step time.

Generated blade photos of ``--size`` (default 5280×2970, the users' drone photos) are written
as JPEG (as drones write them, the generator's quality) and as PNG, with their masks, into a
temporary YOLO dataset. Then, in this one process (one process = one loader worker):

- **loader paths** (``PseudoMaskDataset`` items with flips and colour jitter, as training
  draws them): today's path (each window decodes its photo and mask), several windows per
  decode (``--windows-per-image K``), and the decoded-image cache (``--cache disk``, warm
  page cache; ``--cache ram``); plus what building the cache costs per photo (sha256 of the
  sources, decode, write, full read-back check) and the sha256 of one photo alone;
- **model**: one training step of the student at the same window size and batch
  (``Distiller._step``: forward, loss, backward, AdamW; random weights, BitFit, ``--precision
  auto``) on this CPU; the paper's H100 figure (6.2 ms per 518² forward) as the GPU
  reference, with a training step taken as 3× a forward (an assumption, not a measurement);
- **validation of one photo**: every window tiled (``--val-windows 0``) against the fixed
  sample of ``--val-windows`` windows (both through ``plan_inference``/``segment``).

Example (the figures in docs/performance.md)::

    python benchmarks/training_input.py --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from boxes2pixels.config import TrainConfig
from boxes2pixels.data.cache import DecodedCache, file_sha256
from boxes2pixels.data.crops import WindowSampler
from boxes2pixels.data.dataset import PseudoMaskDataset, ValidationWindows
from boxes2pixels.data.labelmaps import write_mask
from boxes2pixels.data.synth import SynthConfig, render_scene
from boxes2pixels.data.transforms import JointTransform
from boxes2pixels.distill import Distiller
from boxes2pixels.distill.loop import _tiled_labels
from boxes2pixels.inference.precision import cpu_info
from boxes2pixels.student import Student

H100_FORWARD_MS = 6.2  # the paper: Boxes2Pixels at 518², one H100
TRAIN_STEP_OVER_FORWARD = 3.0  # forward + backward ≈ 3 forwards (assumption)


def write_dataset(root: Path, photos: int, size: tuple[int, int], fmt: str) -> Path:
    cfg = SynthConfig(defect_free_fraction=0.0, defect_scale=2.0, max_defects=6)
    (root / "images" / "train").mkdir(parents=True)
    for i in range(photos):
        scene = render_scene(np.random.default_rng(100 + i), size, cfg)
        if fmt == "jpg":
            (root / "images" / "train" / f"p{i}.jpg").write_bytes(scene.jpeg_bytes())
        else:
            from PIL import Image

            Image.fromarray(scene.image).save(root / "images" / "train" / f"p{i}.png")
        write_mask(root / "masks" / "train" / f"p{i}.png", scene.mask)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [dirt, damage]\n")
    return root


def rate(ds: PseudoMaskDataset, items: int) -> float:
    """Windows per second of ``items`` items (cycling over the photos and epochs)."""
    ds[0]  # first touch (imports, page cache) not timed
    windows = 0
    started = time.perf_counter()
    for n in range(items):
        ds.set_epoch(n // len(ds))
        images, _ = ds[n % len(ds)]
        windows += images.shape[0] if images.dim() == 4 else 1
    return windows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="5280x2970", help="photo size WxH")
    parser.add_argument("--photos", type=int, default=2)
    parser.add_argument("--crop", type=int, default=518, help="window size (--crop-size)")
    parser.add_argument("--batch", type=int, default=4, help="windows per training step")
    parser.add_argument("--k", type=int, default=4, help="--windows-per-image")
    parser.add_argument("--val-windows", type=int, default=8)
    parser.add_argument("--items", type=int, default=6, help="timed items of the slow paths")
    parser.add_argument("--cached-items", type=int, default=200)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps")
    parser.add_argument("--no-full-val", action="store_true", help="skip the tiled photo")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"CPU: {cpu_info().describe()}; {os.cpu_count()} cores; {args.threads} thread(s)")
    print(f"photos {w}×{h}, windows {args.crop}², batch {args.batch}\n")
    rows: list[tuple[str, float]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("jpg", "png"):
            root = write_dataset(Path(tmp) / fmt, args.photos, (w, h), fmt)
            photo = next((root / "images" / "train").iterdir())
            mb = photo.stat().st_size / 1e6
            t = time.perf_counter()
            file_sha256(photo)
            hash_ms = (time.perf_counter() - t) * 1000
            notes.append(
                f"{fmt.upper()} photo {mb:.2f} MB: sha256 {hash_ms:.1f} ms "
                f"({mb / hash_ms * 1000:.0f} MB/s)"
            )

            def dataset(
                cache: DecodedCache | None = None, k: int = 1, root: Path = root
            ) -> PseudoMaskDataset:
                return PseudoMaskDataset(
                    root / "data.yaml", root / "masks", "train", transform=JointTransform(),
                    window=WindowSampler(args.crop), windows_per_image=k, cache=cache,
                )  # fmt: skip

            name = fmt.upper()
            rows.append((f"{name}, today (one window per decode)", rate(dataset(), args.items)))
            rows.append(
                (f"{name}, --windows-per-image {args.k}", rate(dataset(k=args.k), args.items))
            )
            cache = DecodedCache("disk", Path(tmp) / f"cache-{fmt}")
            cached = dataset(cache)
            t = time.perf_counter()
            cached.prepare_cache()
            build = (time.perf_counter() - t) / args.photos
            notes.append(
                f"{fmt.upper()}: building the disk cache {build:.2f} s per photo (sha256 of "
                "photo and mask, decode, write, full read-back check)"
            )
            rows.append(
                (f"{name}, --cache disk (warm page cache)", rate(cached, args.cached_items))
            )
            ram = dataset(DecodedCache("ram"))
            ram.prepare_cache()
            rows.append((f"{name}, --cache ram", rate(ram, args.cached_items)))

        # the model's training step at the same window size and batch
        cfg = TrainConfig(
            crop_size=args.crop, imgsz=args.crop, batch=args.batch, device="cpu",
            backbone_init="random", progress=False, workers=0, val_windows=args.val_windows,
        )  # fmt: skip
        student = Student(num_classes=3, backbone_init="random", imgsz=args.crop)
        distiller = Distiller(student, cfg)
        parts = distiller._build_parts(cached)
        images = torch.randint(0, 255, (args.batch, 3, args.crop, args.crop), dtype=torch.uint8)
        masks = torch.randint(0, 3, (args.batch, args.crop, args.crop), dtype=torch.uint8)
        distiller._step(parts, images, masks, False)  # warm-up
        t = time.perf_counter()
        for _ in range(args.steps):
            distiller._step(parts, images, masks, False)
        step_s = (time.perf_counter() - t) / args.steps
        model_rate = args.batch / step_s
        gpu_rate = 1000 / (H100_FORWARD_MS * TRAIN_STEP_OVER_FORWARD)

        # validation of one photo: tiled in full against the fixed sample
        model = parts.ema.module.eval()
        sample = ValidationWindows(cached, args.crop, args.val_windows, seed=0)
        with torch.no_grad():  # first call (kernel selection) not timed
            _tiled_labels(model, sample[0][0][:1], cfg)
        t = time.perf_counter()
        with torch.no_grad():
            win_images, _ = sample[0]
            _tiled_labels(model, win_images, cfg)
        sample_s = time.perf_counter() - t
        full_s = math.nan
        if not args.no_full_val:
            image, _, _ = cached.source(0)
            t = time.perf_counter()
            with torch.no_grad():
                _tiled_labels(model, torch.from_numpy(np.array(image)).permute(2, 0, 1)[None], cfg)
            full_s = time.perf_counter() - t

    today = rows[0][1]
    print(
        "| loader path (one worker) | windows/s | × today (JPEG) | workers to feed CPU step "
        "| workers to feed H100 step (est.) |"
    )
    print("|---|---|---|---|---|")
    for label, r in rows:
        print(
            f"| {label} | {r:.2f} | {r / today:.1f} | {math.ceil(model_rate / r)} | "
            f"{math.ceil(gpu_rate / r)} |"
        )
    print(
        f"\nmodel: training step of {args.batch} windows of {args.crop}² on this CPU "
        f"{step_s:.2f} s = {model_rate:.2f} windows/s; H100 reference {H100_FORWARD_MS} ms per "
        f"forward (the paper), step ≈ {TRAIN_STEP_OVER_FORWARD:g}× forward ≈ {gpu_rate:.0f} "
        "windows/s"
    )
    for note in notes:
        print(note)
    print(
        f"validation of one {w}×{h} photo: tiled in full {full_s:.1f} s; "
        f"{args.val_windows} sampled windows {sample_s:.2f} s"
    )


if __name__ == "__main__":
    main()
