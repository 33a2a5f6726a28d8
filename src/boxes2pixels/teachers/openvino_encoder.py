"""The SAM and MobileSAM image encoders run by OpenVINO (``b2p label --runtime openvino``).

The encoder is about 95 % of a SAM teacher's time on a CPU. OpenVINO converts the PyTorch
encoder once (``openvino.convert_model``, traced at the fixed 1024×1024 input SAM pads every
image to), keeps the converted model in a cache folder keyed by the checkpoint's sha256, and
runs it at the teacher's precision; the prompt decoder stays in PyTorch. On the AMX Xeon of
``docs/performance.md`` MobileSAM's encoder took 2294 ms in PyTorch fp32, 1285 ms with bf16
autocast, 555 ms in OpenVINO fp32 and 269 ms in OpenVINO bf16.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..openvino_runtime import PRECISION_HINTS, import_openvino


def cache_dir() -> Path:
    """Where converted encoders are kept: ``$B2P_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/boxes2pixels`` (``~/.cache/boxes2pixels``), plus ``/openvino``."""
    root = os.environ.get("B2P_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "boxes2pixels"
    )
    return Path(root) / "openvino"


class OpenVinoEncoder(nn.Module):
    """Stands in for a SAM image encoder: B×3×S×S float input, the encoder's embedding out
    (fp32, on the CPU)."""

    def __init__(self, compiled: Any, img_size: int) -> None:
        super().__init__()
        self.compiled = compiled
        self.img_size = img_size  # read by SAM's predictor and preprocessing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compiled(np.ascontiguousarray(x.float().cpu().numpy()))[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def _converted(ov: Any, encoder: nn.Module, side: int, key: str) -> Any:
    """The OpenVINO model of ``encoder``: read from the cache, else converted and cached
    (written atomically: the ``.bin`` first, then the ``.xml`` that marks it complete)."""
    folder = cache_dir()
    xml = folder / f"{key}.xml"
    if xml.is_file():
        return ov.Core().read_model(str(xml))
    with torch.no_grad():
        model = ov.convert_model(encoder.eval(), example_input=torch.zeros(1, 3, side, side))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".convert-") as tmp:
            ov.save_model(model, str(Path(tmp) / "m.xml"), compress_to_fp16=False)
            os.replace(Path(tmp) / "m.bin", xml.with_suffix(".bin"))
            os.replace(Path(tmp) / "m.xml", xml)
    except OSError:  # a read-only or full cache only costs the conversion next time
        pass
    return model


def openvino_encoder(
    encoder: nn.Module, side: int, key: str, precision: str, threads: int | None = None
) -> OpenVinoEncoder:
    """``encoder`` converted for OpenVINO and compiled for the CPU at ``precision``
    (``fp32``, ``bf16`` or ``fp16``).

    Args:
        encoder: the PyTorch image encoder (its input is 1×3×side×side).
        side: the encoder's square input side (1024 for SAM and MobileSAM).
        key: the cache entry's name; it must change whenever the weights or the model
            change (checkpoint sha256, model type, backend and OpenVINO versions).
        precision: OpenVINO's inference precision.
        threads: inference threads (default: OpenVINO's choice, all cores).
    """
    ov = import_openvino()
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    model = _converted(ov, encoder, side, f"{key}-ov{ov.__version__.split('-')[0]}")
    return OpenVinoEncoder(ov.Core().compile_model(model, "CPU", config), side)
