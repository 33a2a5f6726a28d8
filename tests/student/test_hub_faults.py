"""Pushing a model to the Hub without a network is one clear error naming the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import warnings
    from boxes2pixels.errors import HubError
    from boxes2pixels.student import Student
    warnings.simplefilter("ignore")
    model = Student(num_classes=2, class_names=["background", "crack"], backbone="test_vit",
                    backbone_init="random", backbone_mode="full", decoder_channels=16, imgsz=28)
    try:
        model.push_to_hub("inspector/blade-cracks")
    except HubError as exc:
        print("HubError:", exc)
    """
)


def _push(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The push in a fresh process: huggingface_hub reads its endpoint when imported."""
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HOME": str(tmp_path / "hf"), **env},
    )


def test_push_without_a_network_names_the_repository(tmp_path: Path) -> None:
    # a closed port on this machine: the connection is refused at once
    done = _push(tmp_path, HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9",
                 HF_TOKEN="hf_dummy_token_for_tests")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HubError:" in done.stdout and "'inspector/blade-cracks'" in done.stdout
    assert "Traceback" not in done.stderr


def test_push_in_offline_mode_says_so(tmp_path: Path) -> None:
    done = _push(tmp_path, HF_HUB_OFFLINE="1", HF_TOKEN="hf_dummy_token_for_tests")
    assert done.returncode == 0, done.stderr
    assert "'inspector/blade-cracks'" in done.stdout and "HF_HUB_OFFLINE is set" in done.stdout
