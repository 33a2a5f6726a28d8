"""Every exception boxes2pixels raises on purpose. Each message names the file (and line).

One mistake, one type: a bad file or value given by the user is a ``Boxes2PixelsError``
subclass everywhere (the CLI prints it as one paragraph and exits with code 1, no traceback).
"""

from __future__ import annotations


class Boxes2PixelsError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(Boxes2PixelsError, ValueError):
    """A configuration file or value (training settings, model arguments, an input of the wrong
    shape) is invalid. Also a ``ValueError``, so pydantic validators and callers that catch
    ``ValueError`` treat it as one."""


class DatasetError(Boxes2PixelsError):
    """A dataset description (``data.yaml``) or its folders are unusable."""


class LabelFormatError(DatasetError):
    """A YOLO label line is malformed (raised only in strict mode)."""


class ImageReadError(Boxes2PixelsError):
    """An image file is missing, unreadable or corrupt."""


class CheckpointError(Boxes2PixelsError):
    """A model checkpoint is missing or does not fit the requested model."""


class WriteError(Boxes2PixelsError, OSError):
    """An output file cannot be written: the disk is full, a file size or quota limit is
    reached, or the folder is read-only. Also an ``OSError``, so callers that catch
    ``OSError`` treat it as one."""


class TeacherNotFoundError(Boxes2PixelsError):
    """No teacher is registered under the requested name."""


class TeacherDependencyError(Boxes2PixelsError):
    """A package that a teacher needs is not installed."""


class WeightsUnavailableError(Boxes2PixelsError):
    """Pretrained weights were requested but cannot be obtained.

    Attributes:
        cause: the underlying reason in a few words (offline, missing file, ...), or None.
    """

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class DemoError(Boxes2PixelsError):
    """The demo folder or the demo's options are unusable."""


class HubError(Boxes2PixelsError):
    """The Hugging Face Hub cannot be reached or refused an upload (the repository is named)."""
