"""The SAM and MobileSAM image encoders run by OpenVINO (``b2p label --runtime openvino``).

The encoder is about 95 % of a SAM teacher's time on a CPU. OpenVINO converts the PyTorch
encoder once (``openvino.convert_model`` in a child process, traced at the fixed 1024×1024
input SAM pads every image to), keeps the converted model in a cache folder keyed by the
checkpoint's sha256, with a manifest of the files' sizes and sha256 checked before each use
(converted again when they differ), and runs it at the teacher's precision; the prompt
decoder stays in PyTorch. On the AMX Xeon of
``docs/performance.md`` MobileSAM's encoder took 2294 ms in PyTorch fp32, 1285 ms with bf16
autocast, 555 ms in OpenVINO fp32 and 269 ms in OpenVINO bf16.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..inference.openvino_cache import (
    CacheMismatch,
    cache_dir,
    compile_cached,
    default_sigchld,
    import_openvino,
    logger,
    record_folder,
    release_at_exit,
    verify_folder,
)

MODEL_FILES = ("encoder.xml", "encoder.bin")
"""The files of a converted encoder's folder (besides its manifest)."""


class OpenVinoEncoder(nn.Module):
    """Stands in for a SAM image encoder: B×3×S×S float input, the encoder's embedding out
    (fp32, on the CPU)."""

    def __init__(self, compiled: Any, img_size: int) -> None:
        super().__init__()
        self.compiled = compiled
        self.img_size = img_size  # read by SAM's predictor and preprocessing
        release_at_exit(self)

    def release(self) -> None:
        """Drop the compiled model (at interpreter exit; the encoder cannot run after)."""
        self.compiled = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # copied in and out: a shared input stays bound to the request after the call
        x_np = np.ascontiguousarray(x.float().cpu().numpy())
        out = self.compiled(x_np, share_inputs=False, share_outputs=False)[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def convert_encoder(teacher: str, checkpoint: str, model_type: str, folder: Path) -> None:
    """Convert the image encoder of ``teacher``'s checkpoint into ``folder`` (``encoder.xml``,
    ``encoder.bin`` and the manifest of their sizes and sha256), atomically: written in a
    temporary folder next to it, then renamed (a folder another process finished first wins).

    Run in a child process by :func:`openvino_encoder`: tracing leaves PyTorch objects
    behind in OpenVINO that crash the interpreter at exit.
    """
    from . import load_teacher

    ov = import_openvino()
    source = load_teacher(
        teacher, checkpoint=checkpoint, model_type=model_type, device="cpu",
        precision="fp32", runtime="torch",
    )  # fmt: skip
    encoder = source.predictor.model.image_encoder.eval()
    side = int(encoder.img_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the encoders' Python checks
        model = ov.convert_model(encoder, example_input=torch.zeros(1, 3, side, side))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".convert-"))
    try:
        ov.save_model(model, str(tmp / MODEL_FILES[0]), compress_to_fp16=False)
        record_folder(tmp)
        try:
            os.rename(tmp, folder)  # replaces an empty folder only
        except OSError:
            if any(folder.iterdir()):
                return  # converted meanwhile by another process: verified by the caller
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _converted_folder(
    teacher: str, checkpoint: Path, model_type: str, key: str
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The folder of the converted encoder and its manifest's entries, its files verified
    against them; converted first in a child process when missing or when a file differs
    (with a one-line warning naming it), into a temporary folder when the cache cannot be
    written.

    Raises:
        Boxes2PixelsError: the conversion failed (the message ends with the child's last
            words), or its files differ from their manifest right after it.
    """
    from ..errors import Boxes2PixelsError

    folder = cache_dir() / "encoders" / key
    try:
        entries = verify_folder(folder)
        if set(entries) == set(MODEL_FILES):
            return folder, entries
        if folder.is_dir() and any(folder.iterdir()):
            raise CacheMismatch(f"{folder}: incomplete (no {' and '.join(MODEL_FILES)})")
    except CacheMismatch as exc:
        logger.warning("%s; converting the %s image encoder again", exc, teacher)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only cache only costs the conversion next time
        folder = Path(tempfile.mkdtemp(prefix="b2p-openvino-")) / folder.name
    args = [sys.executable, "-m", __name__, teacher, str(checkpoint), model_type, str(folder)]
    with tempfile.TemporaryFile("w+") as log, default_sigchld():  # a file: no selector needed
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=log, check=False)
        log.seek(0)
        words = log.read()
    if done.returncode != 0 or not folder.is_dir():
        tail = " ".join(words.strip().splitlines()[-3:])
        raise Boxes2PixelsError(
            f"converting the {teacher} image encoder for OpenVINO failed ({tail}); "
            "use --runtime torch"
        )
    try:
        return folder, verify_folder(folder)
    except CacheMismatch as exc:
        raise Boxes2PixelsError(
            f"the {teacher} image encoder converted for OpenVINO changed on the disk right "
            f"after its conversion ({exc}); run again, or use --runtime torch"
        ) from exc


def openvino_encoder(
    teacher: str,
    checkpoint: Path,
    model_type: str,
    side: int,
    key: str,
    precision: str,
    threads: int | None = None,
) -> OpenVinoEncoder:
    """The image encoder of ``teacher``'s checkpoint converted for OpenVINO (cached) and
    compiled for the CPU at ``precision`` (``fp32``, ``bf16`` or ``fp16``).

    Args:
        teacher: ``sam`` or ``mobile-sam``.
        checkpoint: the local checkpoint file.
        model_type: its model type.
        side: the encoder's square input side (1024 for SAM and MobileSAM).
        key: the cache entry's name; it must change whenever the weights or the model
            change (checkpoint sha256, model type, backend and OpenVINO versions).
        precision: OpenVINO's inference precision.
        threads: inference threads (default: OpenVINO's choice, all cores).

    Raises:
        Boxes2PixelsError: the conversion or the compilation failed.
    """
    ov = import_openvino()
    folder, entries = _converted_folder(
        teacher, checkpoint, model_type, f"{key}-ov{ov.__version__.split('-')[0]}"
    )
    digest = hashlib.sha256()  # the compiled model's key: the content of the files compiled
    for name in MODEL_FILES:
        digest.update(entries[name]["sha256"].encode())
    compiled = compile_cached(
        ov.Core(), folder / MODEL_FILES[0], precision, threads, digest.hexdigest()
    )
    return OpenVinoEncoder(compiled, side)


if __name__ == "__main__":  # the child process of _converted_folder
    convert_encoder(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))
