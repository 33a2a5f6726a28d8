"""Ultralytics-style YOLO datasets: ``data.yaml``, image lists and box label files."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..errors import DatasetError, LabelFormatError
from ..io import is_image_file

SPLITS = ("train", "val", "test")
# Box edges this far outside [0, 1] come from rounding the centre and size to a few decimals:
# they are clipped without a warning.
ROUNDING_TOLERANCE = 1e-4


@dataclass(frozen=True)
class LabelIssue:
    """A problem found in a label file: where it is and what is wrong."""

    path: Path
    line: int
    message: str
    kind: str  # "malformed", "bad_class", "bad_size", "clipped"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class ImageLabels:
    """Boxes of one image, in normalised YOLO form and as pixel xyxy for a given size."""

    classes: np.ndarray  # (N,) int64 YOLO class ids
    boxes_cxcywh: np.ndarray  # (N, 4) float64, normalised to [0, 1]
    issues: list[LabelIssue] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def xyxy(self, width: int, height: int) -> np.ndarray:
        """Boxes as (N, 4) float32 pixel coordinates ``x0, y0, x1, y1`` for a W×H image."""
        if len(self) == 0:
            return np.zeros((0, 4), dtype=np.float32)
        cx, cy, w, h = self.boxes_cxcywh.T
        out = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        out *= np.array([width, height, width, height], dtype=np.float64)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out.astype(np.float32)


def parse_label_text(
    text: str, num_classes: int, path: Path | str = "<labels>", strict: bool = False
) -> ImageLabels:
    """Parse the text of a YOLO label file (lines ``cls cx cy w h``, normalised).

    Bad lines are skipped and reported in ``ImageLabels.issues`` (wrong field count,
    non-numbers, class id not in ``names``, non-positive width or height); coordinates
    outside [0, 1] are clipped and reported (silently when the overshoot is below
    ``ROUNDING_TOLERANCE``, the rounding of centre and size to a few decimals). Blank lines
    are ignored. Segment-style lines (more than 5 fields) are malformed for a box dataset.

    Raises:
        LabelFormatError: in ``strict`` mode, on the first skipped line.
    """
    path = Path(path)
    classes: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    issues: list[LabelIssue] = []

    def problem(lineno: int, kind: str, message: str) -> None:
        issue = LabelIssue(path, lineno, message, kind)
        if strict and kind != "clipped":
            raise LabelFormatError(str(issue))
        issues.append(issue)

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 5:
            problem(lineno, "malformed", f"expected 5 fields 'cls cx cy w h', got {len(fields)}")
            continue
        try:
            cls_f = float(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            problem(lineno, "malformed", f"non-numeric field in {line!r}")
            continue
        if not all(math.isfinite(v) for v in [cls_f, *values]):
            problem(lineno, "malformed", f"non-finite number in {line!r}")
            continue
        if cls_f != int(cls_f) or not 0 <= int(cls_f) < num_classes:
            problem(
                lineno,
                "bad_class",
                f"class id {fields[0]} is not in names (0..{num_classes - 1})",
            )
            continue
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            problem(lineno, "bad_size", f"non-positive box size w={w} h={h}")
            continue
        x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        if min(x0, y0) < 0 or max(x1, y1) > 1:
            cx0, cy0 = min(max(x0, 0.0), 1.0), min(max(y0, 0.0), 1.0)
            cx1, cy1 = min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0)
            if cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
                problem(lineno, "bad_size", "box lies entirely outside the image")
                continue
            if min(x0, y0) < -ROUNDING_TOLERANCE or max(x1, y1) > 1 + ROUNDING_TOLERANCE:
                problem(lineno, "clipped", "box extends outside [0, 1]; clipped to the image")
            cx, cy, w, h = (cx0 + cx1) / 2, (cy0 + cy1) / 2, cx1 - cx0, cy1 - cy0
        classes.append(int(cls_f))
        boxes.append((cx, cy, w, h))

    return ImageLabels(
        classes=np.asarray(classes, dtype=np.int64),
        boxes_cxcywh=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        issues=issues,
    )


def read_labels(path: Path, num_classes: int, strict: bool = False) -> ImageLabels:
    """Read a YOLO label file; a missing file means a defect-free image (no boxes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except UnicodeDecodeError as exc:
        issue = LabelIssue(path, 0, f"not a UTF-8 text file ({exc.reason})", "malformed")
        if strict:
            raise LabelFormatError(str(issue)) from exc
        return ImageLabels(np.zeros(0, np.int64), np.zeros((0, 4)), [issue])
    return parse_label_text(text, num_classes, path, strict)


def label_path_for(image_path: Path) -> Path:
    """Label file of an image: the last ``/images/`` in its path becomes ``/labels/``, ``.txt``."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image_path.with_suffix(".txt")


@dataclass
class YoloDataset:
    """A YOLO dataset described by a ``data.yaml``.

    Attributes:
        yaml_path: the ``data.yaml`` file.
        root: dataset root (``path`` in the yaml, relative to the yaml file when relative).
        names: class names, index = YOLO class id.
        split_sources: what each split names in the yaml (folders or list files).
    """

    yaml_path: Path
    root: Path
    names: list[str]
    split_sources: dict[str, list[Path]]

    @property
    def num_classes(self) -> int:
        """Number of label values including background: ``len(names) + 1``."""
        return len(self.names) + 1

    @property
    def splits(self) -> list[str]:
        """Splits that the yaml defines."""
        return list(self.split_sources)

    def images(self, split: str) -> list[Path]:
        """Sorted image paths of a split (folders are searched recursively)."""
        if split not in self.split_sources:
            raise DatasetError(
                f"{self.yaml_path}: split '{split}' is not defined "
                f"(defined: {', '.join(self.splits) or 'none'})"
            )
        found: list[Path] = []
        for src in self.split_sources[split]:
            if src.is_dir():
                found.extend(p for p in src.rglob("*") if p.is_file() and is_image_file(p))
            elif src.suffix == ".txt" and src.is_file():
                found.extend(self._read_list_file(src))
            elif is_image_file(src) and src.is_file():
                found.append(src)
            else:
                raise DatasetError(
                    f"{self.yaml_path}: split '{split}' names {src}, which does not exist"
                )
        return sorted(set(found))

    def _read_list_file(self, list_file: Path) -> list[Path]:
        out = []
        for line in list_file.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            p = Path(line)
            if not p.is_absolute():
                # Ultralytics resolves './x' against the dataset root, else against the list file
                p = (self.root / p) if line.startswith("./") else (list_file.parent / p)
            out.append(Path(os.path.normpath(p)))
        return out

    def labels(self, image_path: Path, strict: bool = False) -> ImageLabels:
        """Boxes of an image (empty for a defect-free image)."""
        return read_labels(label_path_for(image_path), len(self.names), strict)

    def mask_name(self, image_path: Path, split: str) -> str:
        """Relative name of an image's mask inside ``<masks>/<split>/``: same sub-path, ``.png``.

        Images in a split folder keep their sub-folders (so ``a/x.jpg`` and ``b/x.jpg`` do not
        collide); images named by a list file use their stem.
        """
        for src in self.split_sources[split]:
            if src.is_dir():
                try:
                    return image_path.relative_to(src).with_suffix(".png").as_posix()
                except ValueError:
                    continue
        return image_path.with_suffix(".png").name


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def load_data_yaml(path: str | Path) -> YoloDataset:
    """Read an Ultralytics-style ``data.yaml``.

    ``path`` in the yaml is the dataset root (relative to the yaml file when relative; the
    yaml's own folder when absent). ``train``/``val``/``test`` may each be a folder, a list of
    folders, or a ``.txt`` file listing image paths. ``names`` is a list or a dict
    ``{id: name}`` with ids 0..N-1.

    Raises:
        DatasetError: the file is missing or malformed; the message names it and the field.
    """
    yaml_path = Path(path)
    if not yaml_path.is_file():
        raise DatasetError(f"{yaml_path}: dataset description not found")
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{yaml_path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_path}: expected a mapping with 'names' and split entries")

    raw_root = data.get("path")
    root = Path(raw_root).expanduser() if raw_root else yaml_path.parent
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()

    names_raw = data.get("names")
    if isinstance(names_raw, dict):
        try:
            ids = sorted(int(k) for k in names_raw)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{yaml_path}: 'names' keys must be integer class ids") from exc
        if ids != list(range(len(ids))):
            raise DatasetError(f"{yaml_path}: 'names' ids must be 0..{len(ids) - 1}, got {ids}")
        names = [str(names_raw[k] if k in names_raw else names_raw[str(k)]) for k in ids]
    elif isinstance(names_raw, list):
        names = [str(n) for n in names_raw]
    else:
        raise DatasetError(f"{yaml_path}: 'names' must be a list or a dict of class names")
    if not names:
        raise DatasetError(f"{yaml_path}: 'names' is empty")
    if len(names) > 254:
        raise DatasetError(f"{yaml_path}: at most 254 classes fit in a PNG label map")

    sources: dict[str, list[Path]] = {}
    for split in SPLITS:
        value = data.get(split)
        if not value:
            continue
        paths = []
        for item in _as_list(value):
            p = Path(str(item)).expanduser()
            paths.append(p if p.is_absolute() else root / p)
        sources[split] = paths
    if not sources:
        raise DatasetError(f"{yaml_path}: no 'train', 'val' or 'test' entry")
    return YoloDataset(yaml_path=yaml_path, root=root, names=names, split_sources=sources)
