"""The contract every registered teacher meets, checked on each one.

The parametrisation reads the ``boxes2pixels.teachers`` entry points when the tests are
collected, so a teacher installed later (a plugin) is tested too. Teachers that need weights
get random-weight checkpoints (conftest ``sam_checkpoint``) and run on the CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from boxes2pixels.teachers import Teacher, available_teachers, load_teacher
from boxes2pixels.teachers.scores import segment_scored

HEIGHT, WIDTH = 64, 96
# Model type of the random checkpoint each built-in SAM teacher loads.
CHECKPOINT_TYPES = {"sam": "vit_b", "mobile-sam": "vit_t", "sam-hq": "vit_tiny", "sam2": "tiny"}
SLOW = {"sam"}  # a ViT-B image encoder pass takes tens of seconds on a small CPU

BOXES = np.array(
    [
        [10, 8, 40, 30],  # inside the image
        [-12, -6, 20, 18],  # sticks out at the top left
        [70, 40, 120, 90],  # sticks out at the bottom right
    ],
    dtype=np.float32,
)


def _params() -> list:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
        for name in available_teachers()
    ]


def _image() -> np.ndarray:
    """A noisy dark image with two bright rectangles (one cut by the image border)."""
    image = np.random.default_rng(0).integers(10, 50, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    image[12:26, 16:34] = (220, 200, 90)
    image[48:, 80:] = (200, 60, 60)
    return image


@pytest.fixture(scope="module", params=_params())
def teacher(request: pytest.FixtureRequest, teacher_checkpoint) -> Teacher:
    """Each registered teacher, with default options (random weights on the CPU for SAM)."""
    name = request.param
    options = {}
    if name in CHECKPOINT_TYPES:
        checkpoint = teacher_checkpoint(name, CHECKPOINT_TYPES[name])
        options = {"checkpoint": str(checkpoint), "device": "cpu"}
    return load_teacher(name, **options)


@pytest.fixture(scope="module")
def first_call(teacher: Teacher) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(masks, image, boxes)`` of one call with ``BOXES`` (one call per teacher)."""
    image, boxes = _image(), BOXES.copy()
    return teacher.segment(image, boxes), image, boxes


@pytest.fixture(scope="module")
def first_masks(first_call: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The teacher's masks for ``BOXES`` on the test image."""
    return first_call[0]


def test_is_a_teacher_with_a_json_description(teacher: Teacher) -> None:
    assert isinstance(teacher, Teacher)
    assert isinstance(teacher.name, str) and teacher.name
    described = teacher.describe()
    assert isinstance(described.get("options", {}), dict)
    json.dumps(described)  # the manifest stores it


def test_masks_are_n_by_h_by_w_booleans(first_masks: np.ndarray) -> None:
    assert isinstance(first_masks, np.ndarray)
    assert first_masks.shape == (len(BOXES), HEIGHT, WIDTH)
    assert first_masks.dtype == np.bool_


def test_boxes_partly_outside_the_image_get_masks(first_masks: np.ndarray) -> None:
    # boxes 1 and 2 stick out of the image: no error, one image-sized mask each
    assert first_masks[1:].shape == (2, HEIGHT, WIDTH)


def test_inputs_are_not_modified(first_call: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, image, boxes = first_call
    np.testing.assert_array_equal(image, _image())
    np.testing.assert_array_equal(boxes, BOXES)


def test_zero_boxes_give_an_empty_result(teacher: Teacher) -> None:
    masks = teacher.segment(_image(), np.zeros((0, 4), np.float32))
    assert masks.shape == (0, HEIGHT, WIDTH)
    assert masks.dtype == np.bool_


def test_two_calls_give_the_same_masks(teacher: Teacher, first_masks: np.ndarray) -> None:
    again = teacher.segment(_image(), BOXES.copy())
    np.testing.assert_array_equal(again, first_masks)


def test_scores_when_given_match_the_masks(teacher: Teacher, first_masks: np.ndarray) -> None:
    # optional: a teacher with segment_scored gives the same masks and one score per box
    scored = getattr(teacher, "segment_scored", None)
    if scored is None:
        assert segment_scored(teacher, _image(), BOXES.copy()).score() is None
        return
    out = scored(_image(), BOXES.copy())
    np.testing.assert_array_equal(out.masks, first_masks)
    for values in (out.predicted_iou, out.stability):
        assert values is None or (np.shape(values) == (len(BOXES),) and np.isfinite(values).all())
    if out.stability is not None:
        assert ((out.stability >= 0) & (out.stability <= 1)).all()
