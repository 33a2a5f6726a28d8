"""How well the review queue finds the worst pseudo-masks, without and with a trained model.

A generated dataset (exact ground truth) gets imitation-SAM pseudo-masks
(:func:`boxes2pixels.label.imitation.imitate_teacher`: per box the true mask, thin parts
dropped, the box filled, or nothing). A student is trained on those pseudo-masks as
``b2p train`` would (random backbone, full fine-tuning: no pretrained weights are needed),
then the train split is ranked by ``review_split`` without the model and with it. For each K
the script prints the mean true IoU of the top-K images against the dataset's mean, and the
share of the K worst pseudo-masks found in the top K against a random K. Example::

    python benchmarks/review_ranking.py --epochs 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from boxes2pixels.config import TrainConfig
from boxes2pixels.data.synth import SynthConfig, generate_dataset
from boxes2pixels.distill import train
from boxes2pixels.label.imitation import imitate_teacher
from boxes2pixels.review import DoubtSettings, ReviewQueue, review_split


def figures(queue: ReviewQueue, ious: dict[str, float], k: int) -> tuple[float, float, float]:
    """Mean IoU of the top k boxed images, of all boxed images, and the share of the k worst
    pseudo-masks found in the top k."""
    ranked = [r.key for r in queue.images if r.key in ious]
    values = np.array([ious[key] for key in ranked])
    worst = set(sorted(ious, key=ious.__getitem__)[:k])
    return float(values[:k].mean()), float(values.mean()), len(worst & set(ranked[:k])) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=150, help="generated training images")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=112)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, nargs="+", default=[10, 20])
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth = SynthConfig(defect_scale=2.5, defect_free_fraction=0.2)
        generate_dataset(
            root / "ds", train=args.train, val=16, test=0, size=(224, 168), seed=args.seed,
            config=synth,
        )  # fmt: skip
        ious = imitate_teacher(root / "ds", root / "masks", "train", seed=args.seed)
        imitate_teacher(root / "ds", root / "masks", "val", seed=args.seed + 1)
        start = time.perf_counter()
        result = train(
            TrainConfig(
                data=root / "ds" / "data.yaml", masks=root / "masks", out=root / "run",
                epochs=args.epochs, imgsz=args.imgsz, batch=4, workers=0, lr=1e-3,
                ema_decay=0.99, correction_warmup=2, patience=0, progress=False,
                backbone_init="random", backbone_mode="full", seed=args.seed,
            )
        )  # fmt: skip
        print(
            f"trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s; best "
            f"validation anomaly mIoU (against pseudo-masks) {result.best_score:.3f}"
        )
        settings = DoubtSettings()
        queues = {
            "no model": review_split(root / "ds" / "data.yaml", root / "masks"),
            "trained model": review_split(
                root / "ds" / "data.yaml", root / "masks", model=root / "run", settings=settings
            ),
        }
    print(
        f"\n{len(ious)} boxed images; pseudo-mask IoU with the truth: mean "
        f"{np.mean(list(ious.values())):.3f}\n"
    )
    print("| queue | K | top-K mean IoU | dataset mean IoU | K worst caught | random K |")
    print("|---|---|---|---|---|---|")
    for name, queue in queues.items():
        for k in args.top:
            top, mean, caught = figures(queue, ious, k)
            print(f"| {name} | {k} | {top:.3f} | {mean:.3f} | {caught:.0%} | {k / len(ious):.0%} |")


if __name__ == "__main__":
    main()
