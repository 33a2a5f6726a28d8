"""Model weights as self-checking safetensors files.

A saved ``model.safetensors`` records the sha256 of its tensor bytes in its metadata (key
``sha256``), and loading checks it, so a file whose tensor bytes were damaged (a bad copy or
download, a flipped bit) is refused with the file named instead of loading silently. The
header is written with its metadata sorted, so saving the same weights twice gives the same
bytes. Files without the key (saved before this check existed, or by other tools) still load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from .errors import CheckpointError

SHA256_KEY = "sha256"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def write_weights(
    path: str | Path, state: Mapping[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Write ``state`` (contiguous CPU tensors) to ``path`` as safetensors.

    The metadata gets ``sha256`` (of the tensor bytes) and is sorted; the tensors are laid
    out by safetensors itself. Not atomic by itself: write into an ``atomic_path``.
    """
    from safetensors.torch import save

    raw = memoryview(save(dict(state)))
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(bytes(raw[8 : 8 + size]))
    header.pop("__metadata__", None)
    payload = raw[8 + size :]
    meta = {**metadata, SHA256_KEY: hashlib.sha256(payload).hexdigest()}
    text = json.dumps(
        {"__metadata__": dict(sorted(meta.items())), **header}, separators=(",", ":")
    ).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    with open(path, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        fh.write(payload)


def verify_weights(path: str | Path) -> str | None:
    """Check the tensor bytes of a safetensors file against its recorded sha256.

    Returns:
        The sha256, or ``None`` when the file records none (nothing to check).

    Raises:
        CheckpointError: the file is missing, is not a safetensors file, or its tensor bytes
            do not match the recorded sha256 (damaged); the message names the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= _MAX_HEADER:
                raise ValueError(f"header length {size} is impossible")
            header = json.loads(fh.read(size))
            expected = (header.get("__metadata__") or {}).get(SHA256_KEY)
            if expected is None:
                return None
            digest = hashlib.sha256()
            while block := fh.read(1 << 20):
                digest.update(block)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: model weights not found") from exc
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors weights file ({exc})") from exc
    if digest.hexdigest() != expected:
        raise CheckpointError(
            f"{path}: the weights are damaged: their sha256 is {digest.hexdigest()} but the "
            f"file records {expected}. Copy or download the model again (or retrain it)."
        )
    return str(expected)


def load_weights(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file after :func:`verify_weights` (tensors on ``device``).

    Raises:
        CheckpointError: missing, unreadable or damaged; the message names the file.
    """
    from safetensors.torch import load_file

    verify_weights(path)
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: cannot read model weights ({exc})") from exc
