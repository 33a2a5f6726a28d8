"""Running an ONNX file written by ``b2p export`` with OpenVINO (optional extra ``openvino``).

OpenVINO reads the ``.onnx`` file directly (no conversion step) and, on CPUs with bf16 matrix
instructions, runs it in bf16: on the AMX Xeon of ``docs/performance.md`` the student runs
about 1.4× faster than PyTorch's fastest exact path (4.1× its fp32). The model is read once
for its metadata and compiled from the file (see :func:`compile_cached` for the cache).
:class:`OpenVinoStudent` is an :class:`~boxes2pixels.exported.ExportedModel`: same
preprocessing, same label maps.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import Boxes2PixelsError, CheckpointError
from .exported import METADATA_KEY, ExportedModel

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
    :func:`boxes2pixels.cpu.choose_precision` does)."""
    from .inference.precision import choose_precision

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
    from .teachers.checkpoints import sha256_file as digest

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
    from .io import write_json_atomic

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
    from .errors import CheckpointError

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


class OpenVinoStudent(ExportedModel):
    """An exported model run by OpenVINO on the CPU, with ``Student.predict``'s interface.

    Args:
        path: an ``.onnx`` file written by ``export_onnx``.
        precision: OpenVINO's inference precision for calls: ``fp32`` (default, as
            ``Student``), ``bf16``, ``fp16`` or ``auto`` (bf16 on CPUs with bf16 matrix
            instructions, else fp32). ``predict(precision=...)`` compiles (once) for another.
        threads: inference threads (default: OpenVINO's choice, all cores).

    Raises:
        CheckpointError: the file is missing, not ONNX, or was not written by ``export_onnx``.
        Boxes2PixelsError: OpenVINO is not installed, or the precision is unknown.
    """

    runtime = "openvino"

    def __init__(
        self, path: str | Path, precision: str = "fp32", threads: int | None = None
    ) -> None:
        ov = import_openvino()
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file not found")
        self._core = ov.Core()
        try:
            model = self._core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises its own exception types
            raise CheckpointError(f"{path}: cannot load ONNX model ({exc})") from exc
        key = ["framework", METADATA_KEY]
        raw = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None
        shape = model.inputs[0].get_partial_shape()[0]
        super().__init__(path, raw, None if shape.is_dynamic else shape.get_length())
        self.threads = threads
        self.output_names = [o.get_any_name() for o in model.outputs]
        self._compiled: dict[str, Any] = {}
        self.precision = resolve_openvino_precision(precision)
        release_at_exit(self)

    def release(self) -> None:
        """Drop the compiled models (compiled again when next used)."""
        self._compiled.clear()

    def _compile(self, precision: str) -> Any:
        """The model compiled for ``precision`` (cached)."""
        if precision not in self._compiled:
            # from the file: with the cache, OpenVINO then loads the compiled blob directly
            self._compiled[precision] = compile_cached(
                self._core, self.path, precision, self.threads, sha256_file(self.path)
            )
        return self._compiled[precision]

    def run(self, x: np.ndarray, precision: str | None = None) -> dict[str, np.ndarray]:
        """Raw fp32 logits for a normalised float32 batch B×3×H×W, by output name, at
        ``precision`` (default: the one chosen at load)."""
        compiled = self._compile(resolve_openvino_precision(precision or self.precision))
        # copied in and out: a shared input stays bound to the request after the call
        values = compiled(self.check_input(x), share_inputs=False, share_outputs=False)
        return {
            name: np.asarray(values[i], dtype=np.float32)
            for i, name in enumerate(self.output_names)
        }

    def predict(
        self,
        images: Any,
        *,
        imgsz: int | None = None,
        batch_size: int = 4,
        precision: str = "fp32",
        device: str | torch.device | None = None,
    ) -> list[np.ndarray]:
        """Label maps like ``Student.predict``; ``precision`` is OpenVINO's inference precision
        (``auto`` as in :func:`resolve_openvino_precision`); ``device`` must be ``auto``/``cpu``."""
        check_openvino_device(device)
        chosen = resolve_openvino_precision(precision)
        before, self.precision = self.precision, chosen
        try:
            return super().predict(images, imgsz=imgsz, batch_size=batch_size)
        finally:
            self.precision = before
