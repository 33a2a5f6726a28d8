"""What ``b2p teachers`` shows: each registered teacher, the package that does its work,
whether that package is installed, the extra that installs it, and its input size.

A teacher class may declare ``package`` (the Python module of its backend, e.g.
``segment_anything_hq``), ``distribution`` (that module's PyPI name) and ``extra`` (the
``boxes2pixels[...]`` extra that installs it); teachers without them (``grabcut``, ``box``)
need nothing beyond boxes2pixels' own dependencies. Only the teacher modules are imported,
never a backend (``importlib.util.find_spec`` tells whether a backend is installed).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import Boxes2PixelsError
from .base import TeacherEntry, available_teachers, teacher_input_size


@dataclass(frozen=True)
class TeacherStatus:
    """One row of ``b2p teachers``.

    Attributes:
        entry: the registry entry (name, object path, registering distribution).
        source: the PyPI package that does the work (``None``: the registering one).
        installed: whether the backend module can be imported.
        extra: the ``boxes2pixels[...]`` extra that installs the backend, if any.
        input_size: long side the teacher resizes to (``None``: the image's own resolution).
        error: why the teacher's class could not be loaded, if it could not.
    """

    entry: TeacherEntry
    source: str | None
    installed: bool
    extra: str | None
    input_size: int | None
    error: str | None = None

    @property
    def install_hint(self) -> str | None:
        """``pip install ...`` for a missing backend, ``None`` when nothing is missing."""
        if self.installed:
            return None
        if self.extra:
            return f'pip install "boxes2pixels[{self.extra}]"'
        return f"pip install {self.source or self.entry.distribution}"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def teacher_status(entry: TeacherEntry) -> TeacherStatus:
    """The status of one registered teacher (its class is imported, its backend is not)."""
    try:
        cls = entry.load()
    except Boxes2PixelsError as exc:
        return TeacherStatus(entry, None, False, None, None, error=str(exc))
    package = getattr(cls, "package", None)
    source = getattr(cls, "distribution", None)
    extra = getattr(cls, "extra", None)
    try:
        size = teacher_input_size(cls)
    except Boxes2PixelsError as exc:
        return TeacherStatus(entry, source, False, extra, None, error=str(exc))
    installed = True if package is None else _installed(package)
    return TeacherStatus(entry, source, installed, extra, size)


def teacher_catalog() -> list[TeacherStatus]:
    """:func:`teacher_status` of every registered teacher, by name."""
    return [teacher_status(entry) for entry in available_teachers().values()]
