"""Tiled inference: segment an image at full resolution with a sliding window.

:func:`predict_tiled` slides overlapping windows over the unscaled image, blends their
fine-head logits with ramp weights and argmaxes the sum. Memory is bounded by one strip of
windows (``C × tile × width`` logits), never by the whole image. What tile size and precision
to use is decided by :func:`~boxes2pixels.inference.segmentation.plan_inference`, not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..geometry import normalize
from .batched import model_device, winning_class
from .precision import autocast


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of evenly spaced windows of size ``tile`` covering ``0..length``.

    The first window starts at 0 and the last ends exactly at ``length``; there are as few
    windows as keep every step at most ``stride`` (so neighbours overlap by at least
    ``tile - stride``). A length up to the tile gives one window at 0.
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def ramp_weights(tile: int, overlap: int) -> np.ndarray:
    """1-D blending weights: a linear ramp over ``overlap`` pixels at each end, 1 inside.

    Never zero, so pixels near the image border that only one tile covers keep a weight.
    """
    i = np.arange(tile, dtype=np.float32)
    ramp = float(max(overlap, 1))
    return np.minimum(1.0, np.minimum(i + 1, tile - i) / (ramp + 1)).astype(np.float32)


def _logits(model: Any, batch: np.ndarray, dtype: Any) -> torch.Tensor:
    """Fine-head logits (B×C×h×w float32, on the model's device) of B×h×w×3 ``uint8`` tiles."""
    device = model_device(model)
    x = normalize(batch, model.mean, model.std, device=device)
    with autocast(device, dtype):
        out = model(x, heads=("fine",))["fine"]
    return out.float()


class _StripBlender:
    """Weighted logit sums of a strip of rows, argmaxed into ``labels`` once final.

    A ring buffer of ``C × tile_h × padded_width`` on the model's device (a GPU blends and
    argmaxes there; only the ``uint8`` labels come back): image row ``r`` lives in buffer row
    ``r % tile_h``. Rows above the next window's start are final; they are argmaxed (and,
    with ``confidence``, turned into the winning class's softmax probability of the
    weight-normalised logits) and their buffer rows reused.
    """

    def __init__(
        self, labels: np.ndarray, confidence: np.ndarray | None, tile_h: int, padded_h: int,
        padded_w: int,
    ) -> None:  # fmt: skip
        self.labels, self.confidence = labels, confidence
        self.th, self.ph, self.pw = tile_h, padded_h, padded_w
        self.ring: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.top = 0  # first image row not yet written to ``labels``

    def _spans(self, start: int, count: int) -> list[tuple[int, int, int]]:
        """(buffer row, image offset, length) pieces of image rows start..start+count."""
        first = start % self.th
        head = min(count, self.th - first)
        spans = [(first, 0, head)]
        if count > head:
            spans.append((0, head, count - head))
        return spans

    def add(self, logits: torch.Tensor, weight: torch.Tensor, y: int, x: int) -> None:
        """Add a window's logits (C × tile_h × tile_w) weighted by ``weight`` at (y, x)."""
        if self.ring is None:
            self.ring = logits.new_zeros((logits.shape[0], self.th, self.pw))
            if self.confidence is not None:
                self.weights = logits.new_zeros((self.th, self.pw))
        weighted = logits * weight
        tw = weighted.shape[2]
        for row, offset, length in self._spans(y, self.th):
            self.ring[:, row : row + length, x : x + tw] += weighted[:, offset : offset + length]
            if self.weights is not None:
                self.weights[row : row + length, x : x + tw] += weight[offset : offset + length]

    def flush(self, upto: int) -> None:
        """Finish every row above ``upto`` into ``labels`` and clear its buffer rows."""
        upto = min(upto, self.ph)
        if self.ring is None or upto <= self.top:
            return
        h, w = self.labels.shape
        for row, offset, length in self._spans(self.top, upto - self.top):
            r0 = self.top + offset
            n = min(r0 + length, h) - r0
            if n > 0:
                block = self.ring[:, row : row + n, :w]
                self.labels[r0 : r0 + n] = winning_class(block, dim=0).cpu().numpy()
                if self.confidence is not None and self.weights is not None:
                    z = block / self.weights[row : row + n, :w]
                    conf = 1.0 / torch.exp(z - z.max(dim=0).values).sum(dim=0)
                    self.confidence[r0 : r0 + n] = conf.cpu().numpy()
            self.ring[:, row : row + length] = 0
            if self.weights is not None:
                self.weights[row : row + length] = 0
        self.top = upto


def predict_tiled(
    model: Any,
    image: np.ndarray,
    *,
    tile_size: int,
    overlap: float = 0.25,
    batch_size: int = 4,
    dtype: Any = None,
    confidence: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Segment one image at full resolution with overlapping tiles and blended logits.

    Windows of ``tile_size`` pixels (rounded up to a multiple of the model's ``patch_size``)
    slide with ``overlap`` (fraction of the tile) over the unscaled image. Each tile's
    fine-head logits are weighted by a linear ramp towards its edges and summed; the label
    of a pixel is the argmax of that sum. Rows are finished as soon as no later tile can
    reach them, so memory holds one strip of ``C × tile × width`` logits, never the whole
    image's: a 5280×2970 photo needs about 35 MB of logits at tile 518 with 3 classes.

    Args:
        model: a :class:`~boxes2pixels.inference.SegmentationModel` (on its device, in eval
            mode).
        image: RGB ``uint8`` H×W×3.
        tile_size: window side in pixels.
        overlap: fraction of the tile shared by neighbouring windows, in ``[0, 0.9]``.
        batch_size: tiles per forward pass.
        dtype: autocast dtype of a torch model (``None``: fp32).
        confidence: also return the winning class's softmax probability per pixel.
        callback: called as ``callback(tiles_done, tiles_total)`` after each forward pass.

    Returns:
        The H×W ``uint8`` label map, the H×W ``float32`` confidence (or ``None``), and the
        number of windows run.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    multiple = int(model.patch_size)
    tile = _round_up(tile_size, multiple)
    h, w = image.shape[:2]
    th, tw = min(tile, _round_up(h, multiple)), min(tile, _round_up(w, multiple))
    ph, pw = max(h, th), max(w, tw)  # the image padded so every window is full
    stride_h = max(1, round(th * (1 - overlap)))
    stride_w = max(1, round(tw * (1 - overlap)))
    ys, xs = tile_starts(ph, th, stride_h), tile_starts(pw, tw, stride_w)
    ramp = ramp_weights(th, th - stride_h)[:, None] * ramp_weights(tw, tw - stride_w)[None, :]
    weight = torch.from_numpy(ramp).to(model_device(model))

    labels = np.zeros((h, w), dtype=np.uint8)
    conf = np.zeros((h, w), dtype=np.float32) if confidence else None
    blender = _StripBlender(labels, conf, th, ph, pw)
    total, done = len(ys) * len(xs), 0
    with torch.inference_mode():
        for y in ys:
            blender.flush(y)
            rows = image[y : y + th]
            for i in range(0, len(xs), batch_size):
                chunk = xs[i : i + batch_size]
                # black padding where a window runs past the image, as the letterbox does
                batch = np.zeros((len(chunk), th, tw, 3), dtype=np.uint8)
                for j, x in enumerate(chunk):
                    crop = rows[:, x : x + tw]
                    batch[j, : crop.shape[0], : crop.shape[1]] = crop
                logits = _logits(model, batch, dtype)
                for j, x in enumerate(chunk):
                    blender.add(logits[j], weight, y, x)
                done += len(chunk)
                if callback is not None:
                    callback(done, total)
        blender.flush(ph)
    return labels, conf, total
