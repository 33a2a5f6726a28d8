"""The CUDA suite: run by `.ci/gpu`, never collected by the default `python -m pytest`.

Every test needs a CUDA GPU; without one the run fails at the first test (it is a CI job for
GPU machines, not something to skip silently). Measured figures (latency, images/s,
agreement) are collected in ``gpu_report`` and written as JSON to ``$B2P_GPU_REPORT`` (default
``gpu-report.json`` in the working directory) when the session ends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_REPORT: dict[str, Any] = {}


@pytest.fixture(scope="session")
def cuda() -> Any:
    """The CUDA device; the test fails without a GPU."""
    import torch

    if not torch.cuda.is_available():
        pytest.fail("tests/gpu needs a CUDA GPU (run it with .ci/gpu on a GPU machine)")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return torch.device("cuda")


@pytest.fixture(scope="session")
def gpu_report() -> dict[str, Any]:
    """Figures to write to ``$B2P_GPU_REPORT``: ``gpu_report[section][key] = value``."""
    return _REPORT


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the collected figures, with the GPU's name, when anything was measured."""
    if not _REPORT:
        return
    import torch

    _REPORT["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    _REPORT["torch"] = torch.__version__
    path = Path(os.environ.get("B2P_GPU_REPORT", "gpu-report.json"))
    path.write_text(json.dumps(_REPORT, indent=2) + "\n", encoding="utf-8")
