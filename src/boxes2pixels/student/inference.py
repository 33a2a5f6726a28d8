"""Batched inference shared by every model with the student's contract.

The contract (``boxes2pixels.models.SegmentationModel``): callable on a normalised N×3×H×W
tensor as ``model(x, heads=("fine",))``, returning ``{"fine": logits}``, with ``mean``,
``std``, ``imgsz`` and a letterbox multiple ``patch_size``. ``Student``, the baselines and
the ONNX runtime wrapper all predict through :func:`predict_label_maps`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from ..device import resolve_device, resolve_precision
from ..geometry import letterbox, normalize, unletterbox_logits


def model_device(model: Any) -> torch.device:
    """Where a model's inputs go: a torch module's parameter device, else the CPU.

    Models run outside PyTorch (onnxruntime) take CPU tensors and return CPU tensors.
    """
    if isinstance(model, nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device("cpu")


def predict_label_maps(
    model: Any,
    images: np.ndarray | Sequence[np.ndarray],
    *,
    imgsz: int | None = None,
    batch_size: int = 4,
    precision: str = "fp32",
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """``Student.predict`` for any model with the student's contract.

    ``model`` must be callable on a normalised N×3×H×W tensor and return ``{"fine": logits}``,
    and have ``mean``, ``std``, ``imgsz`` and a letterbox multiple ``patch_size``. Each image
    is letterboxed (long side ``imgsz``, padded at the bottom and right to the multiple),
    images of equal letterboxed size are batched, and the fine logits are cropped, resized
    bilinearly to the image's size and argmaxed, exactly as ``Student.predict`` does. Torch
    modules run in eval mode under ``torch.inference_mode`` with ``precision`` autocast (and
    channels-last for bf16 on the CPU).

    Returns:
        One H×W ``uint8`` label map per image.
    """
    if isinstance(images, np.ndarray):
        images = [images] if images.ndim == 3 else list(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    size = int(imgsz or model.imgsz)
    multiple = int(model.patch_size)
    is_module = isinstance(model, nn.Module)
    if is_module and device is not None:
        model.to(resolve_device(device))
    dev = model_device(model)
    dtype = resolve_precision(precision, dev) if is_module else None
    channels_last = is_module and dtype is torch.bfloat16 and dev.type == "cpu"
    autocast = (
        torch.autocast(device_type=dev.type, dtype=dtype) if dtype is not None else nullcontext()
    )

    prepared = []
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"image {i}: expected an H×W×3 uint8 RGB array, got shape {image.shape} "
                f"dtype {image.dtype}"
            )
        padded, content = letterbox(image, size, multiple=multiple)
        prepared.append((padded, content))
        groups[padded.shape[:2]].append(i)

    results: list[np.ndarray | None] = [None] * len(images)
    was_training = bool(getattr(model, "training", False))
    if is_module:
        model.eval()
        if channels_last:
            model.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), autocast:
            for indices in groups.values():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start : start + batch_size]
                    batch = normalize(
                        np.stack([prepared[i][0] for i in chunk]), model.mean, model.std
                    )
                    batch = batch.to(dev)
                    if channels_last:
                        batch = batch.contiguous(memory_format=torch.channels_last)
                    logits = model(batch, heads=("fine",))["fine"]
                    for j, i in enumerate(chunk):
                        out = unletterbox_logits(
                            logits[j : j + 1].float(), prepared[i][1], images[i].shape[:2]
                        )
                        results[i] = out.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
    finally:
        if is_module:
            if channels_last:
                model.to(memory_format=torch.contiguous_format)
            model.train(was_training)
    return [r for r in results if r is not None]
