"""Exceptions raised by boxes2pixels. Each message names the file (and line) at fault."""

from __future__ import annotations


class Boxes2PixelsError(Exception):
    """Base class of every error this package raises on purpose."""


class DatasetError(Boxes2PixelsError):
    """A dataset description (``data.yaml``) or its folders are unusable."""


class LabelFormatError(DatasetError):
    """A YOLO label line is malformed (raised only in strict mode)."""


class ImageReadError(Boxes2PixelsError):
    """An image file is missing, unreadable or corrupt."""


class CheckpointError(Boxes2PixelsError):
    """A model checkpoint is missing or does not fit the requested model."""


class TeacherNotFoundError(Boxes2PixelsError):
    """No teacher is registered under the requested name."""


class WeightsUnavailableError(Boxes2PixelsError):
    """Pretrained weights were requested but cannot be obtained."""
