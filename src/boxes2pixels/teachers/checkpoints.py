"""Teacher checkpoints: local files or ``hf://`` Hub files, safe loading, sha256, clear errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..hub import HF_PROTOCOL, download_hf_uri
from ..io import load_torch_weights
from .families import FAMILY_CHECKPOINTS, checkpoint_family, infer_model_type, wrong_family_message

# Official checkpoints: file name and download address, by model type.
OFFICIAL_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "vit_b": (
        "sam_vit_b_01ec64.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    ),
    "vit_l": (
        "sam_vit_l_0b3195.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    ),
    "vit_h": (
        "sam_vit_h_4b8939.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    ),
    "vit_t": (
        "mobile_sam.pt",
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
    ),
}


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint file on disk, where it came from, and its sha256."""

    spec: str
    path: Path
    sha256: str


def expected_text(model_type: str, teacher: str = "sam") -> str:
    """'the official sam_vit_b_01ec64.pth (https://...)' for a teacher's model type."""
    table = FAMILY_CHECKPOINTS.get(teacher, OFFICIAL_CHECKPOINTS)
    if model_type in table:
        name, url = table[model_type]
        return f"the official {name} ({url})"
    return f"a {model_type} checkpoint"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_checkpoint(
    spec: str | Path | None, model_type: str, teacher: str, expected_sha256: str | None = None
) -> ResolvedCheckpoint:
    """Find a checkpoint file: a local path, or ``hf://owner/repo[@revision]/path/file``.

    Hub addresses are read as ``huggingface_hub`` reads them (:func:`boxes2pixels.hub.parse_hf_uri`:
    ``datasets/`` prefix, ``@refs/pr/1``); files are fetched with ``hf_hub_download`` (cached;
    honours ``HF_HUB_OFFLINE``).

    Raises:
        CheckpointError: none given, not found, not downloadable, or wrong sha256; the message
            says which file the teacher expects and where to get it.
    """
    where = (
        f"Download {expected_text(model_type, teacher)} and pass it with --checkpoint PATH "
        "(or --checkpoint hf://owner/repo[@revision]/path/file for a copy on the "
        "Hugging Face Hub)."
    )
    if spec is None or str(spec).strip() == "":
        raise CheckpointError(
            f"The {teacher} teacher ({model_type}) needs a checkpoint file and none was given. "
            f"{where}"
        )
    text = str(spec)
    if text.startswith(HF_PROTOCOL):
        try:
            path = download_hf_uri(text)
        except ConfigError as exc:
            raise CheckpointError(f"not a Hub checkpoint address: {exc}. {where}") from exc
        except CheckpointError as exc:
            raise CheckpointError(f"Cannot get checkpoint '{text}': {exc} {where}") from exc
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"Checkpoint file '{path}' for the {teacher} teacher ({model_type}) does not "
                f"exist. {where}"
            )
    digest = sha256_file(path)
    if expected_sha256 and digest.lower() != expected_sha256.lower():
        raise CheckpointError(
            f"Checkpoint '{text}' has sha256 {digest}, expected {expected_sha256}; the file is "
            f"damaged or a different one. {where}"
        )
    return ResolvedCheckpoint(spec=text, path=path, sha256=digest)


def load_state_dict(path: Path, model_type: str, teacher: str) -> dict[str, Any]:
    """Load a state dict with ``torch.load(weights_only=True)`` (no arbitrary code runs).

    A ``{"model": ...}`` or ``{"state_dict": ...}`` wrapper is unwrapped.

    Raises:
        CheckpointError: not a PyTorch weights file, or not a state dict.
    """
    import torch

    obj = load_torch_weights(
        path,
        f"{expected_text(model_type, teacher)} for the {teacher} teacher, a plain state dict "
        "saved with torch.save.",
    )
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"'{path}' does not hold a state dict of tensors. The {teacher} teacher expects "
            f"{expected_text(model_type, teacher)}."
        )
    return obj


def check_model_type(state_dict: dict[str, Any], path: Path, model_type: str, teacher: str) -> None:
    """Fail early, before a model is built, when a checkpoint is for another SAM-family model
    (``--teacher``, :mod:`.families`) or another model type of the same family.

    Raises:
        CheckpointError: names what the checkpoint looks like and the flags to use.
    """
    wrong = wrong_family_message(path, teacher, state_dict)
    if wrong:
        raise CheckpointError(
            f"{wrong} The {teacher} teacher expects {expected_text(model_type, teacher)}."
        )
    found = infer_model_type(state_dict, checkpoint_family(state_dict))
    if found is None or found == model_type:
        return
    raise CheckpointError(
        f"Checkpoint '{path}' does not fit the {teacher} teacher with model type {model_type}: "
        f"it looks like a {found} checkpoint. Use --model-type {found} if that is what you "
        f"meant, or download {expected_text(model_type, teacher)}."
    )


def load_into(
    model: Any, state_dict: dict[str, Any], path: Path, model_type: str, teacher: str
) -> None:
    """``model.load_state_dict(strict=True)``, turning key or shape mismatches into one paragraph.

    Raises:
        CheckpointError: the checkpoint does not fit the model; says what it looks like instead.
    """
    check_model_type(state_dict, path, model_type, teacher)
    found = infer_model_type(state_dict, checkpoint_family(state_dict))
    looks = (
        f"it looks like a {found} checkpoint" if found else "it does not look like a SAM checkpoint"
    )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise CheckpointError(
            f"Checkpoint '{path}' does not fit the {teacher} teacher with model type "
            f"{model_type} ({looks}; first problem: {detail[:160]}). The teacher expects "
            f"{expected_text(model_type, teacher)}."
        ) from exc
