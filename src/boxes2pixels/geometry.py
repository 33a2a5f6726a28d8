"""Image preparation for the student: letterboxing to patch multiples and normalisation.

Images are RGB ``uint8`` arrays H×W×3; label maps are H×W ``uint8`` (255 = ignore). The
student's backbone needs both sides to be multiples of its patch size (14 for DINOv2), so
images are resized with their aspect ratio kept (long side = ``imgsz``) and padded at the
bottom and right. ``content`` (h, w) is the resized image inside the padded canvas; it is
what :func:`unletterbox_logits` crops back before resizing to the original size.

Logits are resized with :func:`resize_bilinear`, a bilinear rule written out so that its
float32 result is the same on every device, thread count and library (``F.interpolate``'s
kernels differ in the last bit between thread counts and memory layouts); a client without
boxes2pixels reproduces it with a few lines of numpy (``examples/onnx_client.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .data.labelmaps import IGNORE


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def letterbox_shape(
    height: int, width: int, imgsz: int, multiple: int = 14, square: bool = False
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Content and padded sizes that :func:`letterbox` gives an ``height``×``width`` image.

    Returns:
        ``((content_h, content_w), (padded_h, padded_w))``.
    """
    if imgsz < 1 or multiple < 1:
        raise ValueError(f"imgsz and multiple must be positive (got {imgsz}, {multiple})")
    if height < 1 or width < 1:
        raise ValueError(f"cannot letterbox an empty image ({height}×{width})")
    scale = imgsz / max(height, width)
    content = (max(1, round(height * scale)), max(1, round(width * scale)))
    if square:
        side = _round_up(imgsz, multiple)
        return content, (side, side)
    return content, (_round_up(content[0], multiple), _round_up(content[1], multiple))


def letterbox(
    image: np.ndarray, imgsz: int, multiple: int = 14, square: bool = False
) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize an image so its long side is ``imgsz`` and pad it to multiples of ``multiple``.

    The aspect ratio is kept; padding (zeros) is added at the bottom and right. With
    ``square=True`` the canvas is ``S``×``S`` with ``S`` = ``imgsz`` rounded up to a multiple.

    Args:
        image: RGB ``uint8`` array H×W×3 (any H×W×C or H×W array works).
        imgsz: target length of the long side, in pixels.
        multiple: the padded sides are multiples of this (the backbone's patch size).
        square: pad to a square canvas instead of the smallest multiple.

    Returns:
        The padded image and the content size ``(h, w)`` of the resized image inside it.
    """
    return _letterbox(image, imgsz, multiple, square, pad_value=0, nearest=False)


def letterbox_mask(
    mask: np.ndarray,
    imgsz: int,
    multiple: int = 14,
    square: bool = False,
    pad_value: int = IGNORE,
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`letterbox` for a label map: nearest-neighbour resize, padding with ``pad_value``.

    The default pad value 255 (ignore) keeps the padding out of losses and metrics.
    """
    return _letterbox(mask, imgsz, multiple, square, pad_value=pad_value, nearest=True)


def _letterbox(
    array: np.ndarray, imgsz: int, multiple: int, square: bool, pad_value: int, nearest: bool
) -> tuple[np.ndarray, tuple[int, int]]:
    height, width = array.shape[:2]
    (ch, cw), (ph, pw) = letterbox_shape(height, width, imgsz, multiple, square)
    if (ch, cw) != (height, width):
        if nearest:
            interpolation = cv2.INTER_NEAREST
        elif ch < height:
            interpolation = cv2.INTER_AREA
        else:
            interpolation = cv2.INTER_LINEAR
        resized = cv2.resize(np.ascontiguousarray(array), (cw, ch), interpolation=interpolation)
        if array.ndim == 3 and resized.ndim == 2:  # OpenCV drops a single channel axis
            resized = resized[:, :, None]
    else:
        resized = array
    out = np.full((ph, pw, *array.shape[2:]), pad_value, dtype=array.dtype)
    out[:ch, :cw] = resized
    return out, (ch, cw)


def normalize_tensor(
    tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Normalise a float tensor (3×H×W or N×3×H×W, values in [0, 1]) with per-channel mean/std."""
    shape = (3, 1, 1) if tensor.ndim == 3 else (1, 3, 1, 1)
    m = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(shape)
    s = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(shape)
    return (tensor - m) / s


def normalize(
    image: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """RGB ``uint8`` image(s) → normalised float tensor, ready for ``Student.forward``.

    Args:
        image: H×W×3 or N×H×W×3 ``uint8`` array.
        mean: per-channel mean of [0, 1] pixel values (``Student.mean``).
        std: per-channel standard deviation (``Student.std``).
        device: where the tensor goes (default: the CPU). The ``uint8`` pixels are moved
            first and converted there: a quarter of the bytes to copy, and the arithmetic on
            the GPU rather than the CPU.

    Returns:
        A float32 tensor 3×H×W (or N×3×H×W).
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy uint8 image, got a {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim not in (3, 4) or image.shape[-1] != 3:
        raise ValueError(f"expected an H×W×3 RGB image (or N×H×W×3), got shape {image.shape}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"expected 3 means and 3 positive stds, got {mean} and {std}")
    pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    pixels = pixels.permute(2, 0, 1) if image.ndim == 3 else pixels.permute(0, 3, 1, 2)
    shape = (3, 1, 1) if image.ndim == 3 else (1, 3, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(shape)
    # in place, in the order an exported model's client computes it (bit-identical maps)
    return pixels.float().div_(255.0).sub_(m).div_(s)


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of :func:`resize_bilinear` along one axis.

    Half-pixel centres (``align_corners=False``, no antialiasing): output ``i`` samples the
    input at ``s = max(0, (i + 0.5) * n_in / n_out - 0.5)`` (float64); it reads inputs
    ``i0 = floor(s)`` and ``i1 = min(i0 + 1, n_in - 1)`` with float32 weights
    ``w0 = 1 - f`` and ``w1 = f``, ``f = s - i0`` (rounded from float64).

    Returns:
        ``(i0, i1, w0, w1)``: int64 and float32 arrays of length ``n_out``.
    """
    s = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    frac = s - i0
    w0, w1 = (1.0 - frac).astype(np.float32), frac.astype(np.float32)
    return i0, np.minimum(i0 + 1, n_in - 1), w0, w1


_RESIZE_ROWS = 64  # output rows per step: bounds the temporaries of a full-resolution resize


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a float N×C×h×w tensor to ``size`` (H, W) bilinearly, bit for bit reproducibly.

    The rule of :func:`bilinear_taps` (``F.interpolate(mode="bilinear",
    align_corners=False)``'s, up to float rounding), evaluated in a fixed order of plain
    float32 operations: first along the width, ``c = x[..., j0] * v0 + x[..., j1] * v1``, then
    along the height, ``out = c[i0] * w0 + c[i1] * w1``. No fused multiply-add is involved, so
    every device and thread count, and a numpy client, give identical results.
    """
    (h, w), (out_h, out_w) = x.shape[-2:], size
    j0, j1, v0, v1 = (torch.from_numpy(a).to(x.device) for a in bilinear_taps(w, out_w))
    cols = x.index_select(-1, j0).mul_(v0.to(x.dtype))
    cols.add_(x.index_select(-1, j1).mul_(v1.to(x.dtype)))
    i0, i1, w0, w1 = (torch.from_numpy(a).to(x.device) for a in bilinear_taps(h, out_h))
    w0, w1 = w0.to(x.dtype)[:, None], w1.to(x.dtype)[:, None]
    out = x.new_empty((*x.shape[:-2], out_h, out_w))
    top = x.new_empty((*x.shape[:-2], min(out_h, _RESIZE_ROWS), out_w))
    bottom = torch.empty_like(top)
    for start in range(0, out_h, _RESIZE_ROWS):
        rows = slice(start, start + _RESIZE_ROWS)
        n = len(i0[rows])
        a, b = top[..., :n, :], bottom[..., :n, :]
        torch.index_select(cols, -2, i0[rows], out=a).mul_(w0[rows])
        torch.index_select(cols, -2, i1[rows], out=b).mul_(w1[rows])
        torch.add(a, b, out=out[..., rows, :])
    return out


def unletterbox_logits(
    logits: torch.Tensor, content: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Crop letterbox padding off logits (N×C×H×W) and resize them bilinearly to ``size``.

    The resize is :func:`resize_bilinear` (half-pixel centres, reproducible to the bit).

    Args:
        logits: model output on a letterboxed input.
        content: ``(h, w)`` returned by :func:`letterbox`.
        size: the original image's ``(height, width)``.
    """
    cropped = logits[..., : content[0], : content[1]]
    if tuple(cropped.shape[-2:]) == tuple(size):
        return cropped
    return resize_bilinear(cropped, (int(size[0]), int(size[1])))
