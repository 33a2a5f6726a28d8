"""Human-corrected masks in training: which images they are, their weight, and validation
on them (``TrainConfig.corrected_images``, ``corrected_repeat``, ``validate_on``).

``b2p label --corrections`` lists the corrected images under ``human_corrected`` in the mask
folder's ``manifest.json``; a run copies that list into its ``config.yaml``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from ..config import TrainConfig
from ..data.dataset import PseudoMaskDataset
from ..data.yolo import YoloDataset
from ..errors import ConfigError, DatasetError
from ..label.manifest import MANIFEST_NAME


def corrected_images(config: TrainConfig) -> list[str]:
    """The run's human-corrected image keys (``<split>/<mask name>``).

    ``config.corrected_images`` when set; otherwise read from ``<masks>/manifest.json`` (none
    when it has no list) and stored in ``config``, so the run's ``config.yaml`` records them.

    Raises:
        DatasetError: the manifest is not valid JSON.
    """
    if config.corrected_images is None:
        path = Path(str(config.masks)) / MANIFEST_NAME
        keys: list[str] = []
        if path.is_file():
            try:
                keys = list(json.loads(path.read_text(encoding="utf-8")).get("human_corrected", []))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
        config.corrected_images = keys
    return list(config.corrected_images)


def in_split(keys: Sequence[str], split: str) -> set[str]:
    """Mask names of the keys that belong to ``split``."""
    prefix = f"{split}/"
    return {k[len(prefix) :] for k in keys if k.startswith(prefix)}


def train_repeats(config: TrainConfig, keys: Sequence[str]) -> dict[str, int]:
    """``PseudoMaskDataset(repeats=...)`` of the training split: ``corrected_repeat`` per
    corrected image."""
    return dict.fromkeys(in_split(keys, config.train_split), config.corrected_repeat)


def corrected_val_data(data: YoloDataset, config: TrainConfig, keys: Sequence[str]) -> Dataset:
    """The human-corrected images of every split with their corrected masks, unaugmented
    (whole images at their own size when the run trains on ``crop_size`` windows: validation
    then tiles them as ``b2p predict`` does).

    Raises:
        ConfigError: there are no corrected images.
    """
    parts = [
        PseudoMaskDataset(
            data,
            str(config.masks),
            split,
            imgsz=config.imgsz,
            only=names,
            native=config.crop_size > 0,
        )
        for split in data.splits
        if (names := in_split(keys, split))
    ]
    if not parts:
        raise ConfigError(
            f"validate_on is 'corrected' but {config.masks} has no human-corrected images "
            "(bring corrections in with `b2p label ... --corrections`)"
        )
    if config.corrected_repeat > 0 and in_split(keys, config.train_split):
        warnings.warn(
            "validating on human-corrected images that are also trained on "
            "(corrected_repeat > 0): the scores are optimistic; set corrected_repeat 0 to "
            "hold them out",
            stacklevel=2,
        )
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
