"""The one loader for every model kind (the contract they meet is in :mod:`.contract`).

:func:`load_model` turns whatever a user names (a model object, a training run folder, a saved
student or baseline folder, a Hugging Face Hub id, an ``.onnx`` file written by ``b2p
export``) into such a model, on the requested device and in eval mode.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Boxes2PixelsError, CheckpointError
from .contract import SegmentationModel, model_runtime

if TYPE_CHECKING:
    import torch

    from ..student import Student

RUNTIMES = ("auto", "torch", "onnx", "openvino")
"""``auto`` runs an ``.onnx`` file with OpenVINO on the CPU when it is installed, else with
onnxruntime, and anything else with PyTorch."""

ONNX_SUFFIX = ".onnx"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def resolve_model_dir(path: Path) -> Path:
    """The saved-model folder named by ``path``: ``path`` itself, or ``path/best`` for a run.

    Raises:
        CheckpointError: ``path`` holds neither a saved model nor a run with ``best/``.
    """
    if _is_model_folder(path):
        return path
    if _is_model_folder(path / "best"):
        return path / "best"
    if path.is_dir():
        raise CheckpointError(
            f"{path}: neither a saved model (no config.json) nor a training run "
            f"(no best/config.json); pass a run folder, a model folder or a Hub id"
        )
    if not path.exists():
        raise CheckpointError(
            f"{path}: no such model; pass a run folder, a saved model folder or a Hub id"
        )
    raise CheckpointError(
        f"{path}: not a model folder (a saved model is a folder, not a file; an exported "
        f"model is a {ONNX_SUFFIX} file)"
    )


def _check_runtime(runtime: str) -> str:
    runtime = runtime.lower()
    if runtime not in RUNTIMES:
        raise Boxes2PixelsError(f"unknown runtime '{runtime}' (use {', '.join(RUNTIMES)})")
    return runtime


def _load_folder(path: Path) -> Any:
    """The student or baseline saved in a model folder or a run's ``best/``."""
    from ..baselines import BaselineModel, read_baseline_config
    from ..student import Student

    folder = resolve_model_dir(path)
    if read_baseline_config(folder) is not None:
        return BaselineModel.from_pretrained(folder)
    return Student.from_pretrained(str(folder))


def _hub_repo(spec: str, revision: str | None) -> tuple[str, str | None]:
    """Repository id and revision of a Hub model spec: ``owner/name`` or ``hf://owner/name[@rev]``."""
    from ..hub import HF_PROTOCOL, parse_hf_uri

    if not spec.startswith(HF_PROTOCOL):
        return spec, revision
    hub_path = parse_hf_uri(spec)
    if hub_path.repo_type != "model" or hub_path.path_in_repo:
        raise CheckpointError(f"{spec}: a model is a Hub model repository (hf://owner/name[@rev])")
    if revision is not None and hub_path.revision not in (None, revision):
        raise CheckpointError(
            f"{spec}: revision '{hub_path.revision}' in the address contradicts "
            f"revision '{revision}'"
        )
    return hub_path.repo_id, revision or hub_path.revision


def _load_hub(spec: str, revision: str | None = None) -> Any:
    from ..hub import hub_download
    from ..student import Student

    repo_id, revision = _hub_repo(spec, revision)
    # Fetch config.json first: its error names the repository, revision and file.
    hub_download(repo_id, "config.json", revision=revision)
    try:
        return Student.from_pretrained(repo_id, revision=revision)
    except Boxes2PixelsError:
        raise
    except Exception as exc:  # network, missing repo, offline mode: name the id
        raise CheckpointError(
            f"cannot load model '{repo_id}' (revision '{revision or 'main (default)'}') from the "
            f"Hugging Face Hub ({type(exc).__name__}: {exc}); no local folder of that name "
            "exists either"
        ) from exc


def _load_onnx(path: Path, runtime: str, device: str | torch.device | None) -> Any:
    """An exported file run by OpenVINO or onnxruntime (``auto``: OpenVINO when it is
    installed and the model runs on the CPU)."""
    from .onnx_model import OnnxStudent, import_onnx, providers_for
    from .openvino_cache import check_openvino_device, openvino_available
    from .openvino_model import OpenVinoStudent

    if runtime == "torch":
        raise Boxes2PixelsError(
            f"{path}: an exported ONNX file runs with onnxruntime or OpenVINO; use runtime "
            "auto, onnx or openvino, or pass the model folder it was exported from to run "
            "it with PyTorch"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    if runtime == "openvino":
        check_openvino_device(device)
        return OpenVinoStudent(path)
    if runtime == "auto" and openvino_available():
        import onnxruntime

        providers = providers_for(device, onnxruntime.get_available_providers())
        if providers[0] == "CPUExecutionProvider":
            return OpenVinoStudent(path)
    _, ort = import_onnx()
    return OnnxStudent(path, providers=providers_for(device, ort.get_available_providers()))


def load_model(
    spec: Any,
    *,
    runtime: str = "auto",
    device: str | torch.device | None = "auto",
    revision: str | None = None,
) -> SegmentationModel:
    """Load any segmentation model for inference: on ``device``, in eval mode.

    Args:
        spec: a model object (a ``Student``, ``BaselineModel`` or ``OnnxStudent``, returned
            moved to ``device``), a training run folder (its ``best/`` model is used), a
            folder written by ``save_pretrained`` (student or baseline), a Hugging Face Hub
            id ``owner/name`` or ``hf://owner/name[@revision]`` (a student), or an ``.onnx``
            file written by ``b2p export``. An existing local path always wins over a Hub id.
        runtime: ``auto`` (for an ``.onnx`` file: OpenVINO when installed and the device is
            the CPU, else onnxruntime; PyTorch otherwise), ``torch``, ``onnx`` (onnxruntime)
            or ``openvino`` (each refuses a model it cannot run with a clear error).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (for onnxruntime: its
            execution providers; ``auto`` prefers CUDA).
        revision: branch, tag, commit or ``refs/pr/N`` of a Hub id (default: main).

    Raises:
        CheckpointError: the path is not a model, or the Hub id cannot be loaded.
        Boxes2PixelsError: unknown runtime, or a runtime that does not fit the model.
    """
    runtime = _check_runtime(runtime)
    if not isinstance(spec, (str, Path)):
        if not isinstance(spec, SegmentationModel):
            raise Boxes2PixelsError(
                f"a {type(spec).__name__} is not a segmentation model (see SegmentationModel); "
                "pass a model, a model folder, a Hub id or an .onnx file"
            )
        return _place(spec, runtime, device)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ONNX_SUFFIX or runtime in ("onnx", "openvino"):
        if path.suffix.lower() != ONNX_SUFFIX:
            raise Boxes2PixelsError(
                f"{spec}: runtime {runtime} needs an {ONNX_SUFFIX} file written by `b2p export`"
            )
        return _load_onnx(path, runtime, device)
    if path.exists():
        if revision is not None:
            raise Boxes2PixelsError(
                f"{spec}: a revision applies to a Hub id, but this is a local path"
            )
        model = _load_folder(path)
    elif _HUB_ID.match(str(spec)) or str(spec).startswith("hf://"):
        model = _load_hub(str(spec), revision)
    else:
        raise CheckpointError(
            f"{spec}: no such model folder (and not a Hub id of the form owner/name)"
        )
    return _place(model, runtime, device)


def _place(model: Any, runtime: str, device: str | torch.device | None) -> Any:
    """A model object checked against ``runtime`` and, for torch, moved to ``device``."""
    used = model_runtime(model)
    if used != "torch":
        if runtime not in ("auto", used):
            raise Boxes2PixelsError(
                f"a {type(model).__name__} runs with runtime {used}, not runtime {runtime}"
            )
        return model
    if runtime != "auto" and runtime != "torch":
        raise Boxes2PixelsError(
            f"a {type(model).__name__} runs with PyTorch; export it with `b2p export` to run "
            f"it with runtime {runtime}"
        )
    from .precision import resolve_device

    return model.to(resolve_device(device)).eval()


def load_student(spec: Student | str | Path, device: str | torch.device | None = "auto") -> Student:
    """Load a ``Student`` for inference (``load_model`` restricted to students).

    Raises:
        CheckpointError: the path is not a model, or it holds a baseline, not a student.
    """
    from ..student import Student

    model = load_model(spec, runtime="torch", device=device)
    if not isinstance(model, Student):
        raise CheckpointError(
            f"{spec}: holds a {type(model).__name__}, not a student; use load_model for any model"
        )
    return model


def model_sha256(spec: Any) -> str | None:
    """The sha256 that identifies a model named by a path: of an ``.onnx`` file's bytes, or
    the one a saved model's ``model.safetensors`` records for its tensors (checked). ``None``
    for a model object or a Hub id (its revision identifies it)."""
    from ..weights_file import verify_weights

    if not isinstance(spec, (str, Path)) or not Path(spec).exists():
        return None
    path = Path(spec)
    if path.suffix.lower() == ONNX_SUFFIX:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    weights = resolve_model_dir(path) / "model.safetensors"
    return verify_weights(weights) if weights.is_file() else None
