"""What the format modules share: the name of exported ignore pixels, the label map check
and reading an annotation tool's JSON export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def load_export(source: Any, what: str) -> tuple[Any, str]:
    """``source`` loaded (a path to a JSON file, or the already loaded data) and the name
    that messages use for it (the path, or ``<what>``).

    Raises:
        DatasetError: the file cannot be read or is not JSON, naming it.
    """
    if not isinstance(source, (str, Path)):
        return source, f"<{what}>"
    try:
        return json.loads(Path(source).read_text(encoding="utf-8")), str(source)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{source}: cannot read {what} JSON ({exc})") from exc
