"""What the format modules share: the name of exported ignore pixels and the label map check."""

from __future__ import annotations

import numpy as np

from ..data.labelmaps import IGNORE
from ..errors import ConfigError, DatasetError

IGNORE_NAME = "ignore"
"""Category (COCO, id 255) and label (Label Studio) name of ignore pixels, where exported."""


def _check_label_map(label_map: np.ndarray, num_names: int, where: str) -> None:
    if label_map.ndim != 2:
        raise ConfigError(f"{where}: a label map must be 2-D, got shape {label_map.shape}")
    values = np.unique(label_map)
    bad = [int(v) for v in values if v != IGNORE and v > num_names]
    if bad:
        raise DatasetError(
            f"{where}: label values {bad} have no class in names (1..{num_names} and 255 ignore)"
        )
