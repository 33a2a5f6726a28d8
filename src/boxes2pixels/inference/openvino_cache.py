"""What every use of OpenVINO shares (the exported student, the SAM / MobileSAM encoders of
``b2p label``): importing it, its CPU precision names, and the compiled-model cache.

Compiled models are kept per precision, thread count and sha256 of the file compiled
(:func:`compile_cached`); every cached file is recorded with its size and sha256 when written
and checked before use (:func:`verify_folder`), and rebuilt with a warning naming it on any
mismatch: a cache is never trusted blindly.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import Boxes2PixelsError, CheckpointError

logger = logging.getLogger(__name__)

OPENVINO_INSTALL_HINT = "the openvino runtime needs OpenVINO: pip install 'boxes2pixels[openvino]'"

#: OpenVINO's ``INFERENCE_PRECISION_HINT`` for each precision name.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def release_at_exit(holder: Any) -> None:
    """Have ``holder.release()`` run at interpreter exit, before module teardown.

    OpenVINO's compiled models destroyed during the interpreter's final teardown, next to
    PyTorch's thread pools, can crash the process after all work is done (seen as exit code
    139 after a test session). Every object holding one registers here.
    """
    _LIVE.add(holder)


@atexit.register
def _release_all() -> None:
    for holder in list(_LIVE):
        holder.release()


@contextlib.contextmanager
def default_sigchld() -> Iterator[None]:
    """Run the block with SIGCHLD at its default disposition (main thread, POSIX only).

    With OpenVINO loaded, a child process that exits while a SIGCHLD handler written in
    Python is installed (PyTorch installs one for its loader workers and never removes it)
    crashed the interpreter in the test suite. A child started and reaped inside this block
    never reaches such a handler; the handler is put back afterwards.
    """
    import signal
    import threading

    sigchld = getattr(signal, "SIGCHLD", None)
    if sigchld is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(sigchld, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(sigchld, before)


def import_openvino() -> Any:
    """The ``openvino`` module, or an error saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise Boxes2PixelsError(OPENVINO_INSTALL_HINT) from exc
    return openvino


def openvino_available() -> bool:
    """Whether OpenVINO can be imported here."""
    try:
        import_openvino()
    except Boxes2PixelsError:
        return False
    return True


def check_openvino_device(device: str | torch.device | None) -> None:
    """OpenVINO runs on the CPU here: ``auto`` and ``cpu`` pass, anything else is an error."""
    name = str(device or "auto").lower()
    if name not in ("auto", "cpu"):
        raise Boxes2PixelsError(
            f"device '{name}' is not available to the openvino runtime (it runs on the CPU; "
            "use --device cpu, or --runtime onnx or torch for a GPU)"
        )


def resolve_openvino_precision(precision: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``precision`` on this CPU (``auto`` decides as
    :func:`boxes2pixels.inference.choose_precision` does)."""
    from .precision import choose_precision

    name = precision.lower()
    if name == "auto":
        name = choose_precision(torch.device("cpu")).precision
    if name not in PRECISION_HINTS:
        raise Boxes2PixelsError(f"unknown precision '{precision}' (use auto, fp32, bf16 or fp16)")
    return name


def cache_dir() -> Path:
    """boxes2pixels' OpenVINO cache: ``$B2P_CACHE_DIR``, else ``$XDG_CACHE_HOME/boxes2pixels``
    (``~/.cache/boxes2pixels``), plus ``/openvino``. It holds converted SAM encoders, in
    ``encoders/``, and OpenVINO's compiled models, in ``compiled/``: each folder with a
    manifest of its files' sizes and sha256, checked before use (safe to delete: whatever is
    missing or differs from its manifest is rebuilt)."""
    root = os.environ.get("B2P_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "boxes2pixels"
    )
    return Path(root) / "openvino"


def compile_config(
    precision: str, threads: int | None = None, key: str | None = None
) -> dict[str, Any]:
    """OpenVINO's CPU settings for one compiled model: ``precision`` (``fp32``, ``bf16`` or
    ``fp16``), latency first, ``threads`` (default: all cores), and, given ``key`` (the sha256
    of what is compiled), the compiled-model cache: a folder per precision, thread count and
    key under ``cache_dir() / "compiled"``, left out when it cannot be created.

    Compiling takes seconds (about 10 s for the student at bf16 on 2 cores); with the cache,
    later processes load the compiled model in a fraction of a second.
    """
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if key is None:
        return config
    # one folder per setting: OpenVINO 2026.4's cache key leaves the precision out, and a
    # model compiled at fp32 and then, from the same folder, at bf16 crashed the interpreter;
    # one per content: OpenVINO's key for a file is its path, size and time, not its bytes
    compiled = cache_dir() / "compiled" / f"{precision}-{threads or 'all'}-threads" / key[:32]
    try:
        compiled.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home only costs the compile next time
        return config
    config["CACHE_DIR"] = str(compiled)
    return config


# ------------------------------------------------------------- verified cache folders
MANIFEST = "manifest.json"
"""Each cache folder's record of its files: ``{"files": {name: {"size", "sha256"}}}``."""


class CacheMismatch(Exception):
    """A cache folder's files differ from its manifest (the message names the file)."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content (about 0.07 s per 100 MB on a 2-core EPYC)."""
    from ..teachers.checkpoints import sha256_file as digest

    return digest(path)


def _cache_files(folder: Path) -> list[Path]:
    """The cached files of ``folder``: its plain files but the manifest and hidden (temporary)
    files."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST and p.name[0] != "."
    )


def verify_folder(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifest's entries of ``folder`` (empty for an empty folder), once every cached file
    has the size and sha256 recorded for it and every recorded file is there.

    Raises:
        CacheMismatch: a file is missing, unrecorded, or has another size or content, or the
            manifest is missing or unreadable.
    """
    files = _cache_files(folder)
    manifest = folder / MANIFEST
    if not manifest.exists():
        if files:
            raise CacheMismatch(f"{files[0]}: not recorded ({manifest} is missing)")
        return {}
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        entries = {str(k): {"size": int(v["size"]), "sha256": str(v["sha256"])}
                   for k, v in recorded.items()}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CacheMismatch(f"{manifest}: unreadable ({exc})") from exc
    missing = sorted(set(entries) - {p.name for p in files})
    if missing:
        raise CacheMismatch(f"{folder / missing[0]}: recorded in {manifest} but missing")
    for path in files:
        entry = entries.get(path.name)
        if entry is None:
            raise CacheMismatch(f"{path}: not recorded in {manifest}")
        try:
            size = path.stat().st_size
            same = size == entry["size"] and sha256_file(path) == entry["sha256"]
        except OSError as exc:  # removed meanwhile, or not readable
            raise CacheMismatch(f"{path}: unreadable ({exc})") from exc
        if size != entry["size"]:
            raise CacheMismatch(f"{path}: {size} bytes where {entry['size']} were written")
        if not same:
            raise CacheMismatch(f"{path}: content differs from what was written (sha256)")
    return entries


def record_folder(folder: Path, known: dict[str, dict[str, Any]] | None = None) -> None:
    """Write ``folder``'s manifest (atomically): size and sha256 of each cached file, taken
    from ``known`` (just verified) for files of the same name and size. A cache that cannot be
    written is left without one (its files are then rebuilt next time)."""
    from ..io import write_json_atomic

    known = known or {}
    files = {}
    for path in _cache_files(folder):
        size = path.stat().st_size
        entry = known.get(path.name)
        if entry is None or entry["size"] != size:
            entry = {"size": size, "sha256": sha256_file(path)}
        files[path.name] = entry
    with contextlib.suppress(OSError):  # a WriteError too
        write_json_atomic(folder / MANIFEST, {"files": files})


def clear_folder(folder: Path) -> None:
    """Delete ``folder``'s cached files and manifest (the folder stays).

    Raises:
        OSError: a file cannot be deleted.
    """
    for path in [*_cache_files(folder), folder / MANIFEST]:
        path.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def compile_cached(core: Any, path: Path, precision: str, threads: int | None, key: str) -> Any:
    """``core.compile_model(path)`` for the CPU with the compiled-model cache of
    :func:`compile_config` for ``key`` (the sha256 of what ``path`` holds).

    The folder's blobs (which OpenVINO writes itself) are verified against the size and
    sha256 recorded after the last compile; blobs that differ, or that OpenVINO fails to
    load, are deleted with a one-line warning naming the file and the model is compiled again.

    Raises:
        CheckpointError: OpenVINO cannot compile ``path`` even without the cache.
    """

    config = compile_config(precision, threads, key)
    folder = Path(config["CACHE_DIR"]) if "CACHE_DIR" in config else None
    known: dict[str, dict[str, Any]] = {}
    if folder is not None:
        try:
            known = verify_folder(folder)
        except CacheMismatch as exc:
            logger.warning("%s; compiling %s again", exc, path)
            try:
                clear_folder(folder)
            except OSError:  # what cannot be deleted is not used: compiled without the cache
                del config["CACHE_DIR"]
                folder = None
    try:
        try:
            compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises its own exception types
            if folder is None or not _cache_files(folder):
                raise
            logger.warning(
                "%s: OpenVINO cannot load the cached compiled model (%s); compiling %s again",
                folder, _first_line(exc), path,
            )  # fmt: skip
            known = {}
            try:
                clear_folder(folder)
            except OSError:
                del config["CACHE_DIR"]
                folder = None
            compiled = core.compile_model(str(path), "CPU", config)
    except Exception as exc:
        raise CheckpointError(f"{path}: OpenVINO cannot compile it ({_first_line(exc)})") from exc
    if folder is not None:
        record_folder(folder, known)
    return compiled
