"""YOLO dataset layer: data.yaml variants, label parsing (incl. property tests), mask names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxes2pixels.data.yolo import (
    ROUNDING_TOLERANCE,
    label_path_for,
    load_data_yaml,
    parse_label_text,
    read_labels,
)
from boxes2pixels.errors import DatasetError, LabelFormatError


def _touch_image(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3)).save(path)
    return path


# ------------------------------------------------------------------------------ data.yaml
def test_yaml_with_relative_path_folders_and_names_dict(tmp_path: Path) -> None:
    root = tmp_path / "data"
    a = _touch_image(root / "images" / "train" / "a.jpg")
    b = _touch_image(root / "images" / "train" / "sub" / "b.png")
    c = _touch_image(root / "images" / "extra" / "c.png")
    (root / "images" / "train" / "notes.txt").write_text("not an image")
    yaml = tmp_path / "cfg" / "data.yaml"
    yaml.parent.mkdir()
    yaml.write_text(
        "path: ../data\ntrain: [images/train, images/extra]\nval: images/extra\n"
        "names: {0: dirt, 1: damage}\n"
    )
    ds = load_data_yaml(yaml)
    assert ds.root == root.resolve()
    assert ds.names == ["dirt", "damage"] and ds.num_classes == 3
    assert ds.splits == ["train", "val"]
    assert [p.resolve() for p in ds.images("train")] == sorted(p.resolve() for p in (a, b, c))
    assert ds.mask_name(b, "train") == "sub/b.png"
    assert ds.mask_name(c, "val") == "c.png"
    with pytest.raises(DatasetError, match="split 'test' is not defined"):
        ds.images("test")


def test_yaml_with_txt_image_list(tmp_path: Path) -> None:
    a = _touch_image(tmp_path / "images" / "x" / "a.png")
    b = _touch_image(tmp_path / "images" / "y" / "b.png")
    (tmp_path / "train.txt").write_text(f"./images/x/a.png\n\n{b}\n")
    (tmp_path / "data.yaml").write_text("train: train.txt\nnames: [scratch]\n")
    ds = load_data_yaml(tmp_path / "data.yaml")
    assert ds.root == tmp_path
    assert [p.resolve() for p in ds.images("train")] == [a.resolve(), b.resolve()]
    assert ds.mask_name(a, "train") == "a.png"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("names: [a]\n", "no 'train', 'val' or 'test'"),
        ("train: x\n", "'names' must be a list or a dict"),
        ("train: x\nnames: {0: a, 2: b}\n", r"ids must be 0\.\.1"),
        ("train: x\nnames: []\n", "'names' is empty"),
        ("- just a list\n", "expected a mapping"),
        ("train: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    yaml = tmp_path / "data.yaml"
    yaml.write_text(text)
    with pytest.raises(DatasetError, match=message) as err:
        load_data_yaml(yaml)
    assert str(yaml) in str(err.value)


def test_missing_yaml_and_missing_split_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_data_yaml(tmp_path / "nope.yaml")
    (tmp_path / "data.yaml").write_text("train: images/missing\nnames: [a]\n")
    with pytest.raises(DatasetError, match="does not exist"):
        load_data_yaml(tmp_path / "data.yaml").images("train")


def test_label_path_for_uses_the_last_images_folder() -> None:
    path = Path("/d/images/set/images/train/x.y.jpg")
    assert label_path_for(path) == Path("/d/images/set/labels/train/x.y.txt")
    assert label_path_for(Path("/flat/a.png")) == Path("/flat/a.txt")


# ------------------------------------------------------------------------- label parsing
def test_each_kind_of_bad_line_is_named_and_skipped(tmp_path: Path) -> None:
    text = (
        "0 0.5 0.5 0.2 0.2\n"  # good
        "\n"  # blank: ignored
        "0 0.5 0.5 0.2\n"  # 4 fields
        "1 a 0.5 0.2 0.2\n"  # non-number
        "5 0.5 0.5 0.2 0.2\n"  # class out of range
        "1.5 0.5 0.5 0.2 0.2\n"  # non-integer class
        "0 0.5 0.5 0 0.2\n"  # zero width
        "1 0.95 0.5 0.2 0.2\n"  # sticks out: clipped
        "0 nan 0.5 0.2 0.2\n"  # non-finite
        "1 0.1 0.2 0.3 0.4 0.5\n"  # 6 fields: neither a box nor a polygon
    )
    labels = parse_label_text(text, num_classes=2, path=tmp_path / "l.txt")
    assert labels.classes.tolist() == [0, 1]
    np.testing.assert_allclose(labels.boxes_cxcywh[1], [0.925, 0.5, 0.15, 0.2])
    found = [(i.line, i.kind) for i in labels.issues]
    assert found == [
        (3, "malformed"),
        (4, "malformed"),
        (5, "bad_class"),
        (6, "bad_class"),
        (7, "bad_size"),
        (8, "clipped"),
        (9, "malformed"),
        (10, "malformed"),
    ]
    assert str(labels.issues[0]).startswith(f"{tmp_path / 'l.txt'}:3: ")


def test_strict_mode_fails_with_file_and_line(tmp_path: Path) -> None:
    label = tmp_path / "labels" / "a.txt"
    label.parent.mkdir()
    label.write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 -1 0.2\n")
    with pytest.raises(LabelFormatError, match=rf"{label}:2: non-positive"):
        read_labels(label, num_classes=1, strict=True)
    # a clipped box is only a warning, even in strict mode
    assert len(parse_label_text("0 0.99 0.5 0.2 0.2", 1, strict=True)) == 1


def test_missing_empty_and_binary_label_files(tmp_path: Path) -> None:
    assert len(read_labels(tmp_path / "none.txt", 2)) == 0
    (tmp_path / "empty.txt").write_text("")
    assert len(read_labels(tmp_path / "empty.txt", 2)) == 0
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    labels = read_labels(tmp_path / "bin.txt", 2)
    assert len(labels) == 0 and labels.issues[0].kind == "malformed"
    with pytest.raises(LabelFormatError, match=r"bin\.txt"):
        read_labels(tmp_path / "bin.txt", 2, strict=True)


def test_xyxy_in_pixels() -> None:
    labels = parse_label_text("1 0.5 0.25 0.5 0.5\n", num_classes=2)
    np.testing.assert_allclose(labels.xyxy(200, 100), [[50, 0, 150, 50]])
    assert labels.xyxy(200, 100).dtype == np.float32
    assert parse_label_text("", 2).xyxy(10, 10).shape == (0, 4)


# ----------------------------------------------------------------------- property tests
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
valid_box = st.tuples(
    st.integers(min_value=0, max_value=4),
    st.floats(min_value=0.05, max_value=0.95),
    st.floats(min_value=0.05, max_value=0.95),
    st.floats(min_value=0.01, max_value=0.1),
    st.floats(min_value=0.01, max_value=0.1),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(valid_box, max_size=20))
def test_valid_boxes_round_trip(boxes: list[tuple[int, float, float, float, float]]) -> None:
    text = "\n".join(f"{c} {cx!r} {cy!r} {w!r} {h!r}" for c, cx, cy, w, h in boxes)
    labels = parse_label_text(text, num_classes=5)
    assert labels.issues == []
    assert labels.classes.tolist() == [b[0] for b in boxes]
    expected = np.array([b[1:] for b in boxes], dtype=np.float64).reshape(-1, 4)
    np.testing.assert_array_equal(labels.boxes_cxcywh, expected)


line_field = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-3, max_value=8).map(str),
    unit.map(str),
    st.text(alphabet="abc-+.e", min_size=1, max_size=4),
)
any_line = st.one_of(
    st.lists(line_field, min_size=0, max_size=7).map(" ".join),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(any_line, max_size=15))
def test_parser_never_crashes_and_accounts_for_every_line(lines: list[str]) -> None:
    text = "\n".join(lines)
    labels = parse_label_text(text, num_classes=3)
    boxes = labels.boxes_cxcywh
    assert boxes.shape == (len(labels), 4)
    assert ((labels.classes >= 0) & (labels.classes < 3)).all()
    if len(labels):
        assert np.isfinite(boxes).all()
        assert (boxes[:, 2:] > 0).all()
        x0, x1 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 0] + boxes[:, 2] / 2
        y0, y1 = boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 1] + boxes[:, 3] / 2
        tol = 1e-9
        assert (x0 >= -tol).all() and (y0 >= -tol).all()
        assert (x1 <= 1 + tol).all() and (y1 <= 1 + tol).all()
    # every non-blank line is either a box or a skipped-line issue, never both, never neither
    non_blank = [ln for ln in text.splitlines() if ln.strip()]
    skipped = [i for i in labels.issues if i.kind != "clipped"]
    assert len(labels) + len(skipped) == len(non_blank)
    assert all(1 <= i.line <= len(text.splitlines()) for i in labels.issues)
    # strict mode raises exactly when the lenient parse skipped a line
    if skipped:
        with pytest.raises(LabelFormatError, match=f":{skipped[0].line}: "):
            parse_label_text(text, num_classes=3, strict=True)
    else:
        assert len(parse_label_text(text, num_classes=3, strict=True)) == len(labels)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2), unit, unit, st.floats(0.001, 3.0), st.floats(0.001, 3.0))
def test_clipping_keeps_the_part_inside_the_image(
    cls: int, cx: float, cy: float, w: float, h: float
) -> None:
    labels = parse_label_text(f"{cls} {cx!r} {cy!r} {w!r} {h!r}", num_classes=3)
    x0, x1 = max(cx - w / 2, 0.0), min(cx + w / 2, 1.0)
    y0, y1 = max(cy - h / 2, 0.0), min(cy + h / 2, 1.0)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        assert len(labels) == 0
        return
    assert len(labels) == 1
    bcx, bcy, bw, bh = labels.boxes_cxcywh[0]
    assert math.isclose(bcx - bw / 2, x0, abs_tol=1e-9)
    assert math.isclose(bcx + bw / 2, x1, abs_tol=1e-9)
    assert math.isclose(bcy - bh / 2, y0, abs_tol=1e-9)
    assert math.isclose(bcy + bh / 2, y1, abs_tol=1e-9)
    tol = ROUNDING_TOLERANCE
    clipped = min(cx - w / 2, cy - h / 2) < -tol or max(cx + w / 2, cy + h / 2) > 1 + tol
    assert [i.kind for i in labels.issues] == (["clipped"] if clipped else [])


def test_rounding_overshoot_is_clipped_without_a_warning() -> None:
    # 0.945379 + 0.109243 / 2 = 1.0000005: six-decimal rounding, not a labelling mistake
    labels = parse_label_text("0 0.068147 0.945379 0.124066 0.109243\n", num_classes=2)
    assert labels.issues == []
    _, cy, _, h = labels.boxes_cxcywh[0]
    assert cy + h / 2 <= 1.0
