"""SAM teachers: Segment Anything (vit_b/l/h) and MobileSAM (vit_t), prompted with boxes.

Per image the image encoder runs once; all of the image's boxes then go through the prompt
encoder and mask decoder together (``SamPredictor.predict_torch`` with boxes transformed by
``apply_boxes_torch``). :class:`SamTeacher` is also the base of the other SAM-family
teachers (:mod:`.sam_hq`, :mod:`.sam2`), which override its ``_build``, ``_predictor``,
``_encode``, ``_decode`` and ``_release`` steps.
"""

from __future__ import annotations

import contextlib
import warnings
from importlib import metadata
from typing import Any

import numpy as np

from .base import clip_to_boxes, remove_small_regions, require
from .checkpoints import (
    check_model_type,
    load_into,
    load_state_dict,
    resolve_checkpoint,
)
from .families import infer_model_type
from .scores import TeacherOutput, stability_score

ENCODER_RUNTIMES = ("auto", "torch", "openvino")
"""Values of the SAM teachers' ``runtime`` option."""


class SamTeacher:
    """Box-prompted Segment Anything (package ``segment-anything``).

    Args:
        checkpoint: local path or ``hf://owner/repo[@revision]/path/file`` of an official-layout
            state dict (e.g. ``sam_vit_b_01ec64.pth``). Required: there is no silent fallback
            to random weights.
        model_type: ``vit_b``, ``vit_l`` or ``vit_h``; ``None`` reads it from the checkpoint.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``.
        precision: ``fp32`` | ``bf16`` | ``fp16`` | ``auto`` for the image encoder (autocast);
            ``None`` means ``auto`` (:func:`boxes2pixels.inference.choose_precision`: bf16 on GPUs
            and CPUs that compute it natively, fp16 on older GPUs, else fp32). The prompt
            decoder runs in fp32.
        multimask: ask SAM for its three candidate masks and keep the one with the highest
            predicted IoU (default: SAM's single-mask output, as in the paper).
        clip_margin: if set, remove mask pixels farther than this many pixels outside the box.
        min_area: drop connected regions smaller than this many pixels (0 keeps all).
        box_batch: most boxes per decoder call; bounds memory on images with many boxes.
        expected_sha256: if set, the checkpoint's sha256 must match.
        runtime: what runs the image encoder: ``auto`` (``None``; OpenVINO when it is
            installed, the teacher supports it and the device is the CPU, else PyTorch),
            ``torch`` or ``openvino`` (SAM and MobileSAM on the CPU:
            :mod:`~boxes2pixels.teachers.openvino_encoder`; at ``precision``).
    """

    name = "sam"
    #: Runtimes that can run this teacher's image encoder.
    encoder_runtimes: tuple[str, ...] = ("torch", "openvino")
    input_size: int | None = 1024  # long side SAM resizes to; masks on a 256-cell grid
    model_types: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")
    default_model_type = "vit_b"
    package = "segment_anything"
    distribution = "segment-anything"
    mask_threshold = 0.0  # logit threshold of the SAM-family decoders

    def __init__(
        self,
        checkpoint: str | None = None,
        model_type: str | None = None,
        device: str = "auto",
        precision: str | None = None,
        multimask: bool = False,
        clip_margin: float | None = None,
        min_area: int = 0,
        box_batch: int = 64,
        expected_sha256: str | None = None,
        runtime: str | None = None,
    ) -> None:
        torch = require("torch", f"the {self.name} teacher")
        from ..errors import CheckpointError
        from ..inference.precision import resolve_device, resolve_precision

        if model_type is not None and model_type not in self.model_types:
            raise CheckpointError(
                f"The {self.name} teacher has model types {', '.join(self.model_types)}; "
                f"got '{model_type}'."
            )
        module = self._import_backend()
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_precision(precision or "auto", self.device)
        # the manifest records what ran: ``auto`` is replaced by the precision it chose
        self.precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
            self.autocast_dtype, "fp32"
        )
        self.multimask = bool(multimask)
        self.clip_margin = None if clip_margin is None else float(clip_margin)
        self.min_area = int(min_area)
        self.box_batch = int(box_batch)

        wanted = model_type or self.default_model_type
        resolved = resolve_checkpoint(checkpoint, wanted, self.name, expected_sha256)
        state_dict = load_state_dict(resolved.path, wanted, self.name)
        if model_type is None:
            found = infer_model_type(state_dict, self.name)
            model_type = found if found in self.model_types else self.default_model_type
        self.model_type = model_type
        self.checkpoint = resolved
        check_model_type(state_dict, resolved.path, model_type, self.name)
        model = self._build(module, model_type, state_dict)
        load_into(model, state_dict, resolved.path, model_type, self.name)
        del state_dict
        model.eval().to(self.device)
        self.torch = torch
        self.runtime = self._encoder_runtime(runtime or "auto")
        if self.runtime == "openvino":
            from .openvino_encoder import openvino_encoder

            model.image_encoder = openvino_encoder(
                self.name, resolved.path, model_type, int(model.image_encoder.img_size),
                self._cache_key(), self.precision,
            )  # fmt: skip
        self.predictor = self._predictor(module, model)

    def _import_backend(self) -> Any:
        return require(self.package, f"the {self.name} teacher")

    def _encoder_runtime(self, runtime: str) -> str:
        """``torch`` or ``openvino``: what runs the image encoder (``auto``: OpenVINO when it
        is installed, the teacher supports it and the device is the CPU)."""
        from ..errors import ConfigError
        from ..inference.openvino_cache import import_openvino, openvino_available

        runtime = runtime.lower()
        if runtime not in ENCODER_RUNTIMES:
            raise ConfigError(
                f"unknown runtime '{runtime}' for the {self.name} teacher "
                f"(use {', '.join(ENCODER_RUNTIMES)})"
            )
        supported = "openvino" in self.encoder_runtimes and self.device.type == "cpu"
        if runtime == "auto":
            return "openvino" if supported and openvino_available() else "torch"
        if runtime == "openvino" and not supported:
            where = "its image encoder" if self.device.type == "cpu" else f"on {self.device}"
            raise ConfigError(
                f"the {self.name} teacher cannot run {where} with OpenVINO (it runs SAM and "
                "MobileSAM encoders on the CPU); use --runtime torch"
            )
        if runtime == "openvino":
            import_openvino()
        return runtime

    def _cache_key(self) -> str:
        """Names the converted encoder: teacher, model type, weights and backend version."""
        try:
            version = metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return f"{self.name}-{self.model_type}-{self.checkpoint.sha256[:16]}-{version}"

    def _build(self, module: Any, model_type: str, state_dict: dict[str, Any]) -> Any:
        """The randomly initialised model the checkpoint is loaded into."""
        return module.sam_model_registry[model_type]()

    def _predictor(self, module: Any, model: Any) -> Any:
        return module.SamPredictor(model)

    def _encode(self, image: np.ndarray) -> None:
        """The image encoder pass (autocast); its features are kept in fp32 for the decoder."""
        with self._autocast():
            self.predictor.set_image(image)
        self.predictor.features = self.predictor.features.float()

    def _decode(self, boxes: np.ndarray, size: tuple[int, int]) -> tuple[Any, Any]:
        """Mask logits B×C×H×W at image size and predicted IoU B×C for a chunk of boxes."""
        predictor = self.predictor
        boxes_t = predictor.transform.apply_boxes_torch(
            self.torch.as_tensor(boxes, device=self.device), size
        )
        logits, iou, _ = predictor.predict_torch(
            point_coords=None,
            point_labels=None,
            boxes=boxes_t,
            multimask_output=self.multimask,
            return_logits=True,
        )
        return logits, iou

    def _release(self) -> None:
        """Drop the image's features."""
        self.predictor.reset_image()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        from ..inference.precision import autocast

        dtype = None if self.runtime == "openvino" else self.autocast_dtype
        return autocast(self.device, dtype)

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """N×H×W boolean masks (the masks of :meth:`segment_scored`)."""
        return self.segment_scored(image, boxes).masks

    def segment_scored(self, image: np.ndarray, boxes: np.ndarray) -> TeacherOutput:
        """Masks with the predicted IoU and stability score of each: one encoder pass, then
        all boxes in batched decoder calls.

        With ``multimask`` the candidate with the highest predicted IoU is kept. The scores
        rate the decoder's mask before ``clip_margin`` and ``min_area`` are applied.
        """
        torch = self.torch
        height, width = image.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        out = np.zeros((n, height, width), dtype=bool)
        iou_out = np.zeros(n, dtype=np.float64)
        stable_out = np.zeros(n, dtype=np.float64)
        if n == 0:
            return TeacherOutput(out, iou_out, stable_out)
        with torch.inference_mode():
            self._encode(image)
            for start in range(0, n, self.box_batch):
                logits, iou = self._decode(boxes[start : start + self.box_batch], (height, width))
                rows = torch.arange(len(logits), device=logits.device)
                best = iou.argmax(dim=1)
                logits, iou = logits[rows, best].float(), iou[rows, best]
                done = slice(start, start + len(logits))
                out[done] = (logits > self.mask_threshold).cpu().numpy()
                iou_out[done] = iou.double().cpu().numpy()
                stable_out[done] = stability_score(logits, self.mask_threshold).cpu().numpy()
        self._release()
        if self.clip_margin is not None:
            out = clip_to_boxes(out, boxes, self.clip_margin)
        return TeacherOutput(remove_small_regions(out, self.min_area), iou_out, stable_out)

    def describe(self) -> dict[str, Any]:
        """Options, checkpoint, sha256 and backend version for the manifest."""
        try:
            backend = f"{self.distribution} {metadata.version(self.distribution)}"
        except metadata.PackageNotFoundError:
            backend = self.distribution
        return {
            "options": {
                "model_type": self.model_type,
                "device": str(self.device),
                "precision": self.precision,
                "runtime": self.runtime,
                "multimask": self.multimask,
                "clip_margin": self.clip_margin,
                "min_area": self.min_area,
            },
            "checkpoint": self.checkpoint.spec,
            "sha256": self.checkpoint.sha256,
            "backend": backend,
        }


class MobileSamTeacher(SamTeacher):
    """Box-prompted MobileSAM (module ``mobile_sam`` from PyPI ``mobilesam-mirror``; vit_t).

    Same options as :class:`SamTeacher`; the checkpoint is ``mobile_sam.pt``.
    """

    name = "mobile-sam"
    model_types = ("vit_t",)
    default_model_type = "vit_t"
    package = "mobile_sam"
    distribution = "mobilesam-mirror"

    def _import_backend(self) -> Any:
        # mobile_sam re-registers TinyViT models in timm and imports deprecated timm paths.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super()._import_backend()
