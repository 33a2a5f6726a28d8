"""The logits' bilinear resize is one well-defined rule: F.interpolate's (bilinear, half-pixel
centres) up to float rounding, identical to the bit for every thread count and memory layout,
and for the numpy client in examples/onnx_client.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from boxes2pixels.geometry import bilinear_taps, resize_bilinear

CLIENT = Path(__file__).resolve().parents[2] / "examples" / "onnx_client.py"
# (h, w) -> (H, W): enlarging, shrinking, mixed, one pixel, more rows than one step of 64
CASES = [((36, 64), (360, 640)), ((64, 29), (100, 45)), ((47, 64), (30, 41)), ((1, 64), (3, 200))]
CASES += [((5, 7), (130, 3)), ((1, 1), (4, 6))]


@pytest.fixture(scope="module")
def client():
    spec = importlib.util.spec_from_file_location("onnx_client_example", CLIENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("size", "out"), CASES)
def test_resize_is_the_clients_to_the_bit_and_close_to_f_interpolate(size, out, client) -> None:
    x = torch.randn(1, 3, *size) * 4
    ours = resize_bilinear(x, out)
    assert np.array_equal(ours[0].numpy(), client.resize_bilinear(x[0].numpy(), out))
    reference = F.interpolate(x, size=out, mode="bilinear", align_corners=False)
    assert torch.allclose(ours, reference, atol=1e-4, rtol=0)


def test_resize_does_not_depend_on_threads_or_layout() -> None:
    x = torch.randn(2, 3, 37, 52)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = resize_bilinear(x, (301, 517))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, resize_bilinear(x, (301, 517)))
    assert torch.equal(
        single, resize_bilinear(x.contiguous(memory_format=torch.channels_last), (301, 517))
    )


def test_taps_use_half_pixel_centres() -> None:
    i0, i1, w0, w1 = bilinear_taps(2, 4)  # sources at -0.25 (clamped to 0), 0.25, 0.75, 1.25
    assert i0.tolist() == [0, 0, 0, 1] and i1.tolist() == [1, 1, 1, 1]
    assert w1.tolist() == [0.0, 0.25, 0.75, 0.25] and (w0 + w1 == 1).all()
