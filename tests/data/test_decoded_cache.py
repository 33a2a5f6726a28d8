"""The decoded-image cache (``b2p train --cache``): same items as without it, keyed by the
source files' sha256, checked on use, rebuilt when broken, sized before it is built."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from boxes2pixels.data import cache as cache_module
from boxes2pixels.data.cache import (
    CACHE_SUBDIR,
    CacheError,
    CacheRebuildWarning,
    DecodedCache,
    entry_bytes,
    file_sha256,
)
from boxes2pixels.data.crops import DefectIndex, WindowSampler
from boxes2pixels.data.dataset import PseudoMaskDataset, ValidationWindows
from boxes2pixels.data.labelmaps import IGNORE, defect_pixels
from boxes2pixels.data.transforms import JointTransform
from boxes2pixels.errors import DatasetError


@pytest.fixture()
def data(tmp_path: Path, make_square_dataset: Any) -> Path:
    return make_square_dataset(tmp_path / "data", n_train=3, n_val=2, size=70)


def _dataset(data: Path, cache: DecodedCache | None, **kwargs: Any) -> PseudoMaskDataset:
    kwargs.setdefault("window", WindowSampler(28))
    return PseudoMaskDataset(
        data / "data.yaml", data / "masks", "train", transform=JointTransform(), seed=5,
        cache=cache, **kwargs,
    )  # fmt: skip


def _items(ds: PseudoMaskDataset, epochs: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        out.extend(ds[i] for i in range(len(ds)))
    return out


def _same(a: list, b: list) -> bool:
    same = len(a) == len(b)
    return same and all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=False)
    )


def test_defect_index_matches_flatnonzero() -> None:
    rng = np.random.default_rng(0)
    mask = rng.choice([0, 1, 2, IGNORE], size=(37, 23), p=[0.7, 0.1, 0.1, 0.1]).astype(np.uint8)
    flat = np.flatnonzero(defect_pixels(mask))
    index = DefectIndex.of_mask(mask)
    assert index.size == flat.size
    assert [index[k] for k in range(flat.size)] == flat.tolist()
    with pytest.raises(IndexError):
        index[flat.size]


@pytest.mark.parametrize("mode", ["disk", "ram"])
@pytest.mark.parametrize("kwargs", [{}, {"windows_per_image": 3}, {"window": None}])
def test_items_are_the_same_with_and_without_the_cache(
    data: Path, tmp_path: Path, mode: str, kwargs: dict
) -> None:
    plain = _items(_dataset(data, None, **kwargs))
    cached = _dataset(
        data, DecodedCache(mode, tmp_path / "c" if mode == "disk" else None), **kwargs
    )
    assert _same(plain, _items(cached))
    if kwargs.get("windows_per_image"):
        assert plain[0][0].shape == (3, 3, 28, 28) and plain[0][1].shape == (3, 28, 28)


def test_disk_entries_are_keyed_by_content_and_reused(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "c"
    first = DecodedCache("disk", root)
    _dataset(data, first).prepare_cache()
    assert first.built == 3
    image = data / "images" / "train" / "im0.png"
    record = root / CACHE_SUBDIR / "images" / file_sha256(image)[:2] / f"{file_sha256(image)}.json"
    meta = json.loads(record.read_text())
    array = record.with_suffix(".npy")
    assert meta["source_sha256"] == file_sha256(image)
    assert meta["arrays"]["image"]["bytes"] == array.stat().st_size
    assert meta["arrays"]["image"]["sha256"] == file_sha256(array)
    again = DecodedCache("disk", root)
    _dataset(data, again).prepare_cache()
    assert again.built == 0  # all served from the cache

    # the photo changes: a new entry, and the windows follow the new content
    pixels = np.asarray(Image.open(image)).copy()
    pixels[:10] = 0
    Image.fromarray(pixels).save(image)
    changed = DecodedCache("disk", root)
    ds = _dataset(data, changed)
    ds.prepare_cache()
    assert changed.built == 1 and changed.rebuilt == 0
    assert _same(_items(ds, 1), _items(_dataset(data, None), 1))


@pytest.mark.parametrize("damage", ["truncate", "header", "record"])
def test_a_broken_entry_is_rebuilt_with_a_warning(data: Path, tmp_path: Path, damage: str) -> None:
    root = tmp_path / "c"
    _dataset(data, DecodedCache("disk", root)).prepare_cache()
    image = data / "images" / "train" / "im1.png"
    key = file_sha256(image)
    array = root / CACHE_SUBDIR / "images" / key[:2] / f"{key}.npy"
    if damage == "truncate":
        array.write_bytes(array.read_bytes()[:-100])
    elif damage == "header":  # same size, another shape in the header
        np.save(array, np.zeros((70, 70 * 3, 1), np.uint8))
    else:
        record = array.with_suffix(".json")
        record.write_text(record.read_text().replace(key, "0" * 64))
    cache = DecodedCache("disk", root)
    ds = _dataset(data, cache)
    with pytest.warns(CacheRebuildWarning, match="rebuilding"):
        ds.prepare_cache()
    assert cache.rebuilt == 1
    assert _same(_items(ds, 1), _items(_dataset(data, None), 1))


def test_an_array_damaged_after_the_check_is_an_error_not_a_window(
    data: Path, tmp_path: Path
) -> None:
    root = tmp_path / "c"
    ds = _dataset(data, DecodedCache("disk", root))
    ds.prepare_cache()
    for path in (root / CACHE_SUBDIR / "images").rglob("*.npy"):
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CacheError, match=r"cannot be read|expected"):
        ds[0]


def test_not_enough_room_is_a_clear_error(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Usage:
        free = 1000

    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda _: Usage())
    with pytest.raises(CacheError, match=r"needs about .* only .* free in .*--cache off"):
        _dataset(data, DecodedCache("disk", tmp_path / "c")).prepare_cache()
    assert not (tmp_path / "c" / CACHE_SUBDIR / "images").exists()  # nothing decoded
    monkeypatch.setattr(cache_module, "available_memory", lambda: 10)
    with pytest.raises(CacheError, match=r"available memory.*--cache disk"):
        _dataset(data, DecodedCache("ram")).prepare_cache()
    assert entry_bytes(5280, 2970) > 5280 * 2970 * 4


def test_mask_problems_are_named_from_the_cache_too(data: Path, tmp_path: Path) -> None:
    mask = data / "masks" / "train" / "im0.png"
    Image.fromarray(np.full((70, 70), 7, np.uint8)).save(mask)
    with pytest.raises(DatasetError, match="label value 7"):
        _dataset(data, DecodedCache("disk", tmp_path / "c")).prepare_cache()
    # an entry of that mask now exists; a second run still refuses it (values are recorded)
    with pytest.raises(DatasetError, match="label value 7"):
        _dataset(data, DecodedCache("disk", tmp_path / "c")).prepare_cache()
    Image.fromarray(np.zeros((60, 70), np.uint8)).save(mask)
    with pytest.raises(DatasetError, match="mask is 70×60"):
        _dataset(data, DecodedCache("disk", tmp_path / "c2")).prepare_cache()


def test_validation_windows_are_fixed_and_half_on_defects(data: Path, tmp_path: Path) -> None:
    val = PseudoMaskDataset(data / "data.yaml", data / "masks", "val", native=True)
    windows = ValidationWindows(val, size=28, per_image=4, seed=1)
    assert len(windows) == 2 and windows.windows == 8
    images, masks = windows[0]
    assert images.shape == (4, 3, 28, 28) and masks.shape == (4, 28, 28)
    again = ValidationWindows(val, size=28, per_image=4, seed=1)[0]
    assert torch.equal(images, again[0]) and torch.equal(masks, again[1])
    on_defect = [bool(defect_pixels(m.numpy()).any()) for m in masks[:2]]
    assert all(on_defect)
    cached = PseudoMaskDataset(
        data / "data.yaml", data / "masks", "val", native=True,
        cache=DecodedCache("disk", tmp_path / "c"),
    )  # fmt: skip
    from_cache = ValidationWindows(cached, size=28, per_image=4, seed=1)[0]
    assert torch.equal(images, from_cache[0]) and torch.equal(masks, from_cache[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ValidationWindows(cached, size=28, per_image=4, seed=1).prepare_cache()
