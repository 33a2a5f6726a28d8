"""The ``Teacher`` protocol, the entry-point registry and helpers shared by teachers.

A teacher turns an RGB image and its boxes into one boolean mask per box. Teachers are found
through the Python entry-point group ``boxes2pixels.teachers``; the built-ins are registered
there too, so a third-party package adds a teacher by declaring, in its ``pyproject.toml``::

    [project.entry-points."boxes2pixels.teachers"]
    thermal = "my_package.teachers:ThermalTeacher"
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import Boxes2PixelsError, TeacherDependencyError, TeacherNotFoundError

ENTRY_POINT_GROUP = "boxes2pixels.teachers"

# Python module -> the PyPI package that provides it, for install hints.
INSTALL_HINTS = {
    "segment_anything": "segment-anything",
    "mobile_sam": "mobilesam-mirror",
    "cv2": "opencv-python-headless",
    "timm": "timm",
    "torch": "torch",
    "torchvision": "torchvision",
    "huggingface_hub": "huggingface-hub",
    # optional teachers: their extra (see `b2p teachers`)
    "segment_anything_hq": '"boxes2pixels[sam-hq]"',
    "sam2": '"boxes2pixels[sam2]"',
    "hydra": "hydra-core",
    "iopath": "iopath",
}


@runtime_checkable
class Teacher(Protocol):
    """Turns boxes into masks.

    Attributes:
        name: registry name (``"sam"``, ``"grabcut"``, ...).

    Optional attribute (read with :func:`teacher_input_size`, so the protocol does not
    require it):

    - ``input_size`` (``int | None``): the long side in pixels that the teacher resizes its
      input to (SAM and MobileSAM: 1024, answering on a 256-cell mask grid), or ``None``
      when it works at the image's own resolution (``grabcut``, ``box``; the default for a
      teacher without the attribute). With ``b2p label --crop auto`` a teacher with an
      ``input_size`` gets box-centred crops instead of the whole photo
      (:mod:`boxes2pixels.label.crops`).

    Optional method (read with :func:`boxes2pixels.teachers.scores.segment_scored`):

    - ``segment_scored(image, boxes)`` → :class:`~boxes2pixels.teachers.scores.TeacherOutput`:
      the masks of ``segment`` plus per-box scores (predicted IoU, stability score). The
      SAM-family teachers have it; a teacher without it has no scores (``None``), and
      ``b2p label --min-score`` refuses it.
    """

    name: str

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Masks for the boxes of one image.

        The contract (``tests/test_teacher_contract.py`` checks it for every registered
        teacher): boxes may stick out of the image; N = 0 gives a 0×H×W array; the same
        call gives the same masks; ``image`` and ``boxes`` are not modified.

        Args:
            image: RGB ``uint8`` array, H×W×3.
            boxes: float32 N×4 array of ``x0, y0, x1, y1`` pixel boxes (N ≥ 0).

        Returns:
            Boolean array N×H×W, mask ``i`` for box ``i``.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records: ``options`` and, for model teachers, ``checkpoint``,
        ``sha256`` and ``backend`` (library and version)."""
        ...


@dataclass(frozen=True)
class TeacherEntry:
    """A registered teacher: its name, object path and the distribution that provides it."""

    name: str
    value: str
    distribution: str
    version: str

    def load(self) -> type:
        """Import the teacher's module and return its class."""
        return import_object(self.value, what=f"teacher '{self.name}'")


def available_teachers() -> dict[str, TeacherEntry]:
    """Teachers registered under the ``boxes2pixels.teachers`` entry-point group, by name.

    No teacher module is imported. The same name declared twice with the same object (one
    distribution seen through two paths) counts once.

    Raises:
        Boxes2PixelsError: two distributions register different objects under one name.
    """
    found: dict[str, TeacherEntry] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        entry = TeacherEntry(
            name=ep.name,
            value=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
        )
        old = found.get(ep.name)
        if old is not None and old.value != entry.value:
            raise Boxes2PixelsError(
                f"teacher name '{ep.name}' is registered twice: by {old.distribution} "
                f"({old.value}) and by {entry.distribution} ({entry.value}); uninstall one of "
                f"them or use --teacher with the object path 'pkg.module:Class'"
            )
        found[ep.name] = entry
    return dict(sorted(found.items()))


def import_object(path: str, what: str = "object") -> Any:
    """Import ``'pkg.module:Attr'`` and return the attribute, with install hints on failure."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise TeacherNotFoundError(f"{what}: '{path}' is not of the form 'pkg.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise missing_dependency(exc, what) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise TeacherNotFoundError(
                f"{what}: module '{module_name}' has no attribute '{attr}'"
            ) from exc
    return obj


def missing_dependency(exc: ModuleNotFoundError, what: str) -> Boxes2PixelsError:
    """A ``TeacherDependencyError`` that tells which package to install."""
    top = (exc.name or "").split(".")[0]
    package = INSTALL_HINTS.get(top, top)
    return TeacherDependencyError(
        f"{what} needs the Python module '{exc.name}', which is not installed; "
        f"install it with `pip install {package}`"
    )


def require(module: str, what: str) -> Any:
    """Import ``module`` for ``what``; a missing one raises ``TeacherDependencyError``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise missing_dependency(exc, what) from exc


def teacher_entry(spec: str) -> TeacherEntry:
    """The registry entry for a name, or a synthetic one for ``'pkg.module:Class'``."""
    if ":" in spec:
        top = spec.split(":")[0].split(".")[0]
        dists = metadata.packages_distributions().get(top, [])
        dist = dists[0] if dists else "?"
        try:
            version = metadata.version(dist) if dists else "?"
        except metadata.PackageNotFoundError:
            version = "?"
        return TeacherEntry(name=spec, value=spec, distribution=dist, version=version)
    teachers = available_teachers()
    if spec not in teachers:
        names = ", ".join(teachers) or "none"
        raise TeacherNotFoundError(
            f"no teacher named '{spec}' (installed: {names}); a teacher that is not registered "
            f"can be given as 'pkg.module:Class'"
        )
    return teachers[spec]


def load_teacher(spec: str, **options: Any) -> Teacher:
    """Create a teacher from a registered name or an object path ``'pkg.module:Class'``.

    Only the chosen teacher's module is imported. ``options`` are passed to its constructor;
    an option the teacher does not take is an error that lists the ones it does.

    Raises:
        TeacherNotFoundError: unknown name or object path.
        TeacherDependencyError: a package the teacher needs is not installed.
        Boxes2PixelsError: an option the teacher does not accept.
    """
    entry = teacher_entry(spec)
    cls = entry.load() if ":" not in spec else import_object(spec, what=f"teacher '{spec}'")
    if not inspect.isclass(cls):  # e.g. 'os:system': never call an arbitrary function
        raise TeacherNotFoundError(
            f"teacher '{spec}': {entry.value} is not a teacher class (it is a "
            f"{type(cls).__name__}); give 'pkg.module:Class' of a class with a 'name' "
            "attribute and 'segment' and 'describe' methods"
        )
    params = inspect.signature(cls).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_kwargs:
        accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise Boxes2PixelsError(
                f"teacher '{spec}' does not take option(s) {', '.join(unknown)} "
                f"(it takes: {', '.join(accepted) or 'no options'})"
            )
    teacher = cls(**options)
    if not isinstance(teacher, Teacher):
        raise TeacherNotFoundError(
            f"teacher '{spec}': {entry.value} does not implement the Teacher protocol "
            f"(a 'name' attribute and 'segment' and 'describe' methods)"
        )
    if ":" in spec and not getattr(teacher, "name", None):
        teacher.name = spec
    return teacher


def teacher_input_size(teacher: Any) -> int | None:
    """A teacher's declared working resolution (``input_size``), ``None`` when it has none.

    Raises:
        Boxes2PixelsError: the attribute is set but is not a positive integer.
    """
    size = getattr(teacher, "input_size", None)
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        name = getattr(teacher, "name", type(teacher).__name__)
        raise Boxes2PixelsError(
            f"teacher '{name}': input_size must be a positive int or None, got {size!r}"
        )
    return size


def box_pixel_ranges(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer pixel range ``x0, y0, x1, y1`` (end exclusive) of the pixels a box covers.

    A pixel belongs to the box when its centre lies inside it; every box covers at least one
    pixel, clipped to the image.
    """
    x0 = int(np.ceil(box[0] - 0.5))
    y0 = int(np.ceil(box[1] - 0.5))
    x1 = int(np.floor(box[2] - 0.5)) + 1
    y1 = int(np.floor(box[3] - 0.5)) + 1
    x0 = min(max(x0, 0), width - 1)
    y0 = min(max(y0, 0), height - 1)
    x1 = min(max(x1, x0 + 1), width)
    y1 = min(max(y1, y0 + 1), height)
    return x0, y0, x1, y1


def box_masks(boxes: np.ndarray, height: int, width: int, margin: float = 0.0) -> np.ndarray:
    """Filled boxes (grown by ``margin`` pixels on each side) as an N×H×W boolean array."""
    out = np.zeros((len(boxes), height, width), dtype=bool)
    grow = np.array([-margin, -margin, margin, margin], dtype=np.float64)
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64)):
        x0, y0, x1, y1 = box_pixel_ranges(box + grow, height, width)
        out[i, y0:y1, x0:x1] = True
    return out


def clip_to_boxes(masks: np.ndarray, boxes: np.ndarray, margin: float) -> np.ndarray:
    """Masks with everything outside their box plus ``margin`` pixels removed."""
    return masks & box_masks(boxes, masks.shape[1], masks.shape[2], margin)


def remove_small_regions(masks: np.ndarray, min_area: int) -> np.ndarray:
    """Masks without their 8-connected regions smaller than ``min_area`` pixels."""
    if min_area <= 1:
        return masks
    import cv2

    out = masks.copy()
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        _, labels, stats, _ = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8
        )
        small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_area) + 1
        if small.size:
            out[i][np.isin(labels, small)] = False
    return out
