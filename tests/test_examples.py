"""The examples in examples/ keep working against the current API."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from boxes2pixels.teachers import load_teacher

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def plugin_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES / "threshold_teacher" / "src"))
    monkeypatch.delitem(sys.modules, "b2p_threshold_teacher", raising=False)


def test_threshold_teacher_plugin_segments_the_dark_part_of_each_box(plugin_on_path) -> None:
    teacher = load_teacher("b2p_threshold_teacher:ThresholdTeacher")
    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    image[10:20, 10:20] = 30  # a dark defect inside the first box
    boxes = np.array([[5, 5, 30, 30], [40, 5, 55, 30]], dtype=np.float32)
    masks = teacher.segment(image, boxes)
    assert masks.shape == (2, 40, 60) and masks.dtype == bool
    expected = np.zeros((40, 60), dtype=bool)
    expected[10:20, 10:20] = True
    assert np.array_equal(masks[0], expected)
    assert not masks[0, :, 30:].any()  # nothing outside its box
    assert teacher.describe() == {"options": {"invert": False}}


def test_plugin_declares_the_entry_point_group() -> None:
    text = (EXAMPLES / "threshold_teacher" / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points."boxes2pixels.teachers"]' in text
    assert 'threshold = "b2p_threshold_teacher:ThresholdTeacher"' in text
