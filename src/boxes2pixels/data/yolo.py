"""Ultralytics-style YOLO datasets: ``data.yaml``, image lists and box label files."""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..errors import DatasetError, LabelFormatError
from ..io import is_image_file, walk_files

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
    # Per box: the (K, 2) normalised x, y polygon of a segment-format line, None for a box
    # line; an empty list when the labels were not read from a file.
    polygons: list[np.ndarray | None] = field(default_factory=list)

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
    """Parse the text of a YOLO label file: box lines ``cls cx cy w h`` or Ultralytics
    segment lines ``cls x1 y1 x2 y2 x3 y3 …`` (normalised).

    A segment line becomes the box around its polygon, as Ultralytics' own loader makes it
    (``segments2boxes``); the polygon is kept in ``ImageLabels.polygons``.

    Bad lines are skipped and reported in ``ImageLabels.issues`` (wrong field count,
    non-numbers, class id not in ``names``, non-positive width or height); coordinates
    outside [0, 1] are clipped and reported (silently when the overshoot is below
    ``ROUNDING_TOLERANCE``, the rounding of centre and size to a few decimals). Blank lines
    and a leading UTF-8 byte order mark are ignored.

    Raises:
        LabelFormatError: in ``strict`` mode, on the first skipped line.
    """
    path = Path(path)
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark (Windows editors write one)
    classes: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    polygons: list[np.ndarray | None] = []
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
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            problem(lineno, "malformed", _FIELD_COUNT.format(len(fields)))
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
        polygon = np.asarray(values).reshape(-1, 2) if len(values) > 4 else None
        cx, cy, w, h = values if polygon is None else _polygon_box(polygon)
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
        polygons.append(None if polygon is None else polygon.clip(0.0, 1.0))

    return ImageLabels(
        classes=np.asarray(classes, dtype=np.int64),
        boxes_cxcywh=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        issues=issues,
        polygons=polygons,
    )


_FIELD_COUNT = (
    "expected 5 fields 'cls cx cy w h' or a polygon 'cls x1 y1 x2 y2 x3 y3 ...' (an odd "
    "count of at least 7), got {}"
)


def _polygon_box(polygon: np.ndarray) -> tuple[float, float, float, float]:
    """``cx, cy, w, h`` of the box around a (K, 2) polygon (Ultralytics' ``segments2boxes``)."""
    (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
    return (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0


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


@functools.lru_cache(maxsize=1024)
def _shared_stems(folder: str, mtime_ns: int) -> frozenset[str]:
    """Stems (case-folded) that two or more image files of ``folder`` share; ``mtime_ns``
    (the folder's) is part of the cache key, so adding or removing a file invalidates it."""
    counts: Counter[str] = Counter()
    with os.scandir(folder) as entries:
        for entry in entries:
            name = Path(entry.name)
            if is_image_file(name) and entry.is_file():
                counts[name.stem.casefold()] += 1
    return frozenset(stem for stem, n in counts.items() if n > 1)


def output_stem(image_path: Path) -> str:
    """The name an image's outputs (pseudo-mask, prediction, overlay) are made from.

    The image's stem (``a`` for ``a.jpg``), unless another image in the same folder has the
    same stem, ignoring case (``a.jpg`` and ``a.png``): then each keeps its suffix
    (``a.jpg``, ``a.png``), so neither output overwrites the other. ``b2p label``, the
    training data and ``b2p predict`` all name files by this rule.
    """
    folder = image_path.parent
    try:
        mtime_ns = os.stat(folder).st_mtime_ns
    except OSError:
        return image_path.stem
    shared = image_path.stem.casefold() in _shared_stems(str(folder), mtime_ns)
    return image_path.name if shared else image_path.stem


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
                found.extend(p for p in walk_files(src) if is_image_file(p))
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
        for line in list_file.read_text(encoding="utf-8-sig").splitlines():
            line = line.strip()
            if not line:
                continue
            # As Ultralytics (data/base.py, get_img_files): './x' is relative to the list
            # file's folder; any other line is taken as written (absolute, or relative to the
            # working directory).
            p = list_file.parent / line[2:] if line.startswith("./") else Path(line)
            out.append(Path(os.path.normpath(p)))
        return out

    def labels(self, image_path: Path, strict: bool = False) -> ImageLabels:
        """Boxes of an image (empty for a defect-free image)."""
        return read_labels(label_path_for(image_path), len(self.names), strict)

    def mask_name(self, image_path: Path, split: str) -> str:
        """Relative name of an image's mask inside ``<masks>/<split>/``: same sub-path, ``.png``.

        Images in a split folder keep their sub-folders (so ``a/x.jpg`` and ``b/x.jpg`` do not
        collide); images named by a list file use their name only. The file name is
        :func:`output_stem` + ``.png``: ``x.png`` for ``x.jpg``, but ``x.jpg.png`` and
        ``x.png.png`` when ``x.jpg`` and ``x.png`` lie in one folder.
        """
        name = output_stem(image_path) + ".png"
        for src in self.split_sources[split]:
            if src.is_dir():
                try:
                    return (image_path.relative_to(src).parent / name).as_posix()
                except ValueError:
                    continue
        return name

    def mask_names(self, split: str) -> dict[Path, str]:
        """:meth:`mask_name` of every image of ``split``.

        Raises:
            DatasetError: two images would get one mask (only possible for images of
                different folders named by a list file); the message names both.
        """
        names: dict[Path, str] = {}
        owner: dict[str, Path] = {}
        for image in self.images(split):
            name = self.mask_name(image, split)
            other = owner.setdefault(name, image)
            if other != image:
                raise DatasetError(
                    f"{self.yaml_path}: images {other} and {image} of split '{split}' would "
                    f"both get the mask {name}; rename one of them"
                )
            names[image] = name
        return names

    def label_files_without_image(self, split: str) -> list[Path]:
        """Label files (``.txt``) in the label folders of ``split``'s image folders that no
        image of the split uses (a typo in a name, a deleted image). ``classes.txt``, which
        labelling tools write next to the labels, is not counted."""
        used = {label_path_for(image) for image in self.images(split)}
        found: set[Path] = set()
        for src in self.split_sources[split]:
            if not src.is_dir():
                continue
            folder = label_path_for(src / "x.jpg").parent
            if folder.is_dir() and folder != src:
                found.update(
                    p for p in walk_files(folder) if p.suffix == ".txt" and p.name != "classes.txt"
                )
        return sorted(found - used)


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def load_data_yaml(path: str | Path) -> YoloDataset:
    """Read an Ultralytics-style ``data.yaml``.

    ``path`` in the yaml is the dataset root (relative to the yaml file when relative; the
    yaml's own folder when absent). ``train``/``val``/``test`` may each be a folder, a list of
    folders, or a ``.txt`` file listing image paths (resolved as Ultralytics resolves them:
    ``./x`` relative to the list file's folder, other lines as written). ``names`` is a list
    or a dict ``{id: name}`` with ids 0..N-1.

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
