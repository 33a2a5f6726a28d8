"""Image and mask input/output: EXIF, bit depths, alpha, corrupt files, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from boxes2pixels import io
from boxes2pixels.data import labelmaps
from boxes2pixels.errors import ImageReadError


def test_exif_orientation_is_applied(tmp_path) -> None:
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :10] = (255, 0, 0)  # red strip on the left
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    out = io.read_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:10, :, 0].mean() > 200 and out[-10:, :, 0].mean() < 60  # strip now on top
    assert io.image_size(path) == (20, 40)


def test_sixteen_bit_grayscale_is_scaled_to_eight_bit_rgb(tmp_path) -> None:
    values = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    out = io.read_image(path)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [128, 4]])
    assert (out[..., 0] == out[..., 2]).all()


def test_rgba_is_composited_on_white_and_gray_expanded(tmp_path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent → white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = io.read_image(tmp_path / "a.png")
    assert out.shape == (2, 2, 3)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 1]) == (255, 255, 255)

    Image.fromarray(np.array([[7, 200]], np.uint8), "L").save(tmp_path / "g.png")
    gray = io.read_image(tmp_path / "g.png")
    assert gray.shape == (1, 2, 3) and gray[0, 1].tolist() == [200, 200, 200]


def test_corrupt_and_missing_images_name_the_file(tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ImageReadError, match=r"broken\.jpg: cannot read image"):
        io.read_image(bad)
    good = tmp_path / "cut.png"
    Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # truncated file
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        io.read_image(good)
    with pytest.raises(ImageReadError, match=r"missing\.png: image file not found"):
        io.read_image(tmp_path / "missing.png")


def test_mask_round_trip_keeps_class_values_with_palette(tmp_path) -> None:
    mask = np.array([[0, 1, 2], [255, 3, 0]], np.uint8)
    path = tmp_path / "sub" / "m.png"
    labelmaps.write_mask(path, mask, palette=True)  # opt-in; plain grayscale by default
    with Image.open(path) as img:
        assert img.mode == "P"
        assert img.getpalette()[3:6] == list(labelmaps.class_colour(1))
    np.testing.assert_array_equal(labelmaps.read_mask(path), mask)
    with pytest.raises(ValueError, match="2-D"):
        labelmaps.write_mask(path, np.zeros((2, 2, 3), np.uint8))


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path) -> None:
    target = tmp_path / "manifest.json"
    io.write_json_atomic(target, {"version": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "version": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json"
        tmp.write_text("{}")
        assert target.read_text() != "{}"  # not visible before the block ends
    assert target.read_text() == "{}"


def test_list_images_folder_glob_and_list(tmp_path) -> None:
    for name in ("a.PNG", "sub/b.jpg", "c.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert io.list_images(tmp_path) == [tmp_path / "a.PNG", tmp_path / "sub" / "b.jpg"]
    assert io.list_images(str(tmp_path / "**" / "*.jpg")) == [tmp_path / "sub" / "b.jpg"]
    both = io.list_images([tmp_path / "a.PNG", tmp_path / "a.PNG", tmp_path / "sub"])
    assert both == [tmp_path / "a.PNG", tmp_path / "sub" / "b.jpg"]


def test_atomic_files_get_the_permissions_of_a_normal_file(tmp_path) -> None:
    import os

    from boxes2pixels.io import write_text_atomic

    umask = os.umask(0o022)
    os.umask(umask)
    write_text_atomic(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
