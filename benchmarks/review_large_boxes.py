"""How long `b2p review` measures one box of a full-size photo, by box size.

The ``holes`` signal closes the mask's outline with an elliptic kernel of radius
0.12·√(box area): 11 px for a 100×80 box, 201 px for a 2000×1400 one. OpenCV's time grows
with the kernel's area, so above a radius of 24 the review closes a smaller copy of the mask
(``boxes2pixels.review.signals._close``). Both are timed side by side in one run
(round-robin, the median of ``--repeats``), with the IoU of the pixels each closing adds,
then the whole per-box measurement (``box_signals`` with the image: shape, colour, spill)
on a 5280×2970 photo. Example (docs/review.md)::

    python benchmarks/review_large_boxes.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from boxes2pixels.review import DoubtSettings
from boxes2pixels.review.signals import _close, box_signals

SIZES = ((100, 80), (400, 300), (1000, 700), (2000, 1400))


def _scene(bw: int, bh: int, height: int = 2970, width: int = 5280):
    """A 5280×2970 photo with one dark elliptic stain of ``bw``×``bh`` and a punched hole."""
    image = np.full((height, width, 3), 200, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    centre = (width // 2, height // 2)
    cv2.ellipse(mask, centre, (bw * 2 // 5, bh * 2 // 5), 20, 0, 360, 1, -1)
    image[mask > 0] = 60
    cv2.circle(mask, centre, max(2, bh // 8), 0, -1)
    box = np.array([[centre[0] - bw / 2, centre[1] - bh / 2, centre[0] + bw / 2,
                     centre[1] + bh / 2]], np.float32)  # fmt: skip
    return image, mask, box


def _seconds(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    lines = [
        "| box (px) | closing radius | OpenCV closing | review's closing | ratio | "
        "IoU of the added pixels | whole box measurement |",
        "|---|---|---|---|---|---|---|",
    ]
    for bw, bh in SIZES:
        image, mask, box = _scene(bw, bh)
        x0, y0 = int(box[0, 0]), int(box[0, 1])
        region = mask[y0 : y0 + bh, x0 : x0 + bw]
        r = max(1, round(0.12 * math.sqrt(bw * bh)))
        padded = np.pad(region, r + 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        cv_times, dt_times, whole = [], [], []
        settings = DoubtSettings()
        for _ in range(args.repeats):  # round-robin: load changes hit all alike
            cv_times.append(_seconds(cv2.morphologyEx, padded, cv2.MORPH_CLOSE, kernel))
            dt_times.append(_seconds(_close, padded, r))
            whole.append(_seconds(box_signals, mask, box, np.array([0]), settings, image=image))
        cv_s, dt_s = statistics.median(cv_times), statistics.median(dt_times)
        exact = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel) > padded
        ours = _close(padded, r) > padded
        overlap = np.count_nonzero(exact & ours) / max(1, np.count_nonzero(exact | ours))
        lines.append(
            f"| {bw}×{bh} | {r} | {cv_s * 1000:.1f} ms | {dt_s * 1000:.1f} ms | "
            f"{cv_s / max(dt_s, 1e-9):.0f}× | {overlap:.3f} | "
            f"{statistics.median(whole) * 1000:.0f} ms |"
        )
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
