"""Durable atomic file writes, and the clean-up of what a killed writer left behind.

Every output file of the package is written through :func:`atomic_path`: into a temporary
file next to the target, flushed to the disk (``fsync``), renamed onto the target, and the
folder flushed too, so that after a crash, a kill or a power loss the target is either the
old file or the complete new one. A failure because the disk cannot take the file (full,
quota, file size limit, read-only) becomes one :class:`~boxes2pixels.errors.WriteError` that
names the target; the temporary file is removed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import WriteError

_UMASK = os.umask(0)
os.umask(_UMASK)

# errno values that mean "this disk or folder cannot take the file" (not a bug of the writer).
_DISK_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file size limit is reached (file system or `ulimit -f`)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EIO: "input/output error",
}
# safetensors and torch wrap the OSError in their own types; the errno survives in the text.
_OS_ERROR_RE = re.compile(r"os error (\d+)")
# Names that mkstemp gives in atomic_path: ".<stem>.<8 random chars>.tmp<suffix>".
_TEMP_RE = re.compile(r"^\..*\.[A-Za-z0-9_]{8}\.tmp(\.[^.]+)?$")
STALE_AFTER_S = 60.0
"""A temporary file not modified for this long belongs to a writer that no longer runs."""


def disk_errno(exc: BaseException) -> int | None:
    """The errno of a disk-side failure (see ``_DISK_ERRNOS``) in ``exc`` or the exceptions it
    wraps, or ``None`` when the failure is something else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_ERRNOS:
            return current.errno
        match = _OS_ERROR_RE.search(str(current))
        if match and int(match[1]) in _DISK_ERRNOS:
            return int(match[1])
        current = current.__cause__ or current.__context__
    return None


def write_error(path: Path, exc: BaseException) -> WriteError | None:
    """A one-paragraph ``WriteError`` for a disk-side failure writing ``path``, else ``None``."""
    code = disk_errno(exc)
    if code is None:
        return None
    error = WriteError(
        f"{path}: cannot write the file: {_DISK_ERRNOS[code]} ([Errno {code}] "
        f"{os.strerror(code)}). Nothing half-written is left behind; make room (or choose "
        "another output folder) and run the command again: finished files are kept."
    )
    error.errno = code
    return error


@contextmanager
def reported_write_errors(path: str | Path) -> Iterator[None]:
    """Turn a disk-side failure inside the block (see :func:`write_error`) into a
    ``WriteError`` that names ``path``; other exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        error = write_error(Path(path), exc)
        if error is None:
            raise
        raise error from exc


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename inside it) to the disk; a no-op where the system
    cannot open folders (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to fsync a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_parent(path: Path) -> None:
    """Create ``path``'s folder; a file in the way is a ``WriteError`` naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.is_file()), None)
        raise WriteError(
            f"{path}: cannot create its folder because {blocker or path.parent} is a file, "
            "not a folder; move that file away or choose another output folder"
        ) from exc


def _check_size_limit(path: Path) -> None:
    """Raise ``EFBIG`` when ``path`` reached the process's file size limit (``ulimit -f``).

    Some writers in C (PIL's JPEG encoder) ignore a short ``write`` at that limit and return
    success with a truncated file; a file that ends exactly at the limit is not trusted.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows has no file size limit to hit
        return
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and path.stat().st_size >= limit:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and check that every byte reached the file.

    Raises:
        WriteError: the disk cannot take the file, or fewer bytes than ``len(data)`` were
            written (``path`` is unchanged).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
        written = tmp.stat().st_size
        if written != len(data):
            raise WriteError(
                f"{path}: cannot write the file: {written} of {len(data)} bytes reached the "
                "disk. Nothing half-written is left behind; make room (or choose another "
                "output folder) and run the command again."
            )


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    A crash, kill or power loss at any moment leaves either the old file or the complete
    new one, never a truncated file: the temporary file is flushed to the disk before the
    rename and the folder after it. The temporary file keeps ``path``'s suffix so writers
    that look at the suffix (PIL, OpenCV) choose the right format.

    Raises:
        WriteError: the disk cannot take the file (full, quota, size limit, read-only,
            permission) or a file stands where a folder is needed; the temporary file is
            removed and ``path`` is unchanged.
    """
    path = Path(path)
    _make_parent(path)
    with reported_write_errors(path):
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with reported_write_errors(path):
            yield tmp_path
            _check_size_limit(tmp_path)
            # mkstemp (and writers that recreate the file) leave 0600: make it a normal file
            os.chmod(tmp_path, 0o666 & ~_UMASK)
            _fsync_file(tmp_path)
            os.replace(tmp_path, path)
            fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_stale_temps(folder: str | Path, older_than: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` that a killed process left in
    ``folder`` (searched recursively).

    Only files named the way ``atomic_path`` names them and not modified for ``older_than``
    seconds are removed, so a writer still at work in the same folder (another shard) keeps
    its file. Returns the removed paths.
    """
    removed: list[Path] = []
    limit = time.time() - older_than
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if not _TEMP_RE.match(name):
                continue
            path = Path(dirpath) / name
            try:
                if path.stat().st_mtime <= limit:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # renamed or removed by its writer meanwhile
    return removed


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (metadata too) through :func:`atomic_path`,
    checking that every byte arrived.

    Raises:
        WriteError: the disk cannot take the file or the copy came out short (``target`` is
            unchanged).
    """
    with atomic_path(target) as tmp:
        shutil.copy2(source, tmp)
        expected, written = source.stat().st_size, tmp.stat().st_size
        if written != expected:
            raise WriteError(
                f"{target}: cannot copy {source}: {written} of {expected} bytes reached the "
                "disk. Nothing half-written is left behind; make room and run the command again."
            )
