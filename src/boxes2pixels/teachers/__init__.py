"""Teachers: turn boxes into masks. Found through the ``boxes2pixels.teachers`` entry points.

Importing this package imports no teacher backend (torch, SAM, OpenCV); a teacher's module
is imported when it is loaded.
"""

from __future__ import annotations

from .base import (
    ENTRY_POINT_GROUP,
    Teacher,
    TeacherDependencyError,
    TeacherEntry,
    available_teachers,
    load_teacher,
    teacher_entry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Teacher",
    "TeacherDependencyError",
    "TeacherEntry",
    "available_teachers",
    "load_teacher",
    "teacher_entry",
]
