"""SAM 2 / SAM 2.1 teacher (image predictor of PyPI ``sam2``).

The model is built with the package's own builder (``sam2.build_sam.build_sam2`` with its
Hydra configs ``configs/sam2.1/sam2.1_hiera_<t|s|b+|l>.yaml``, or ``configs/sam2/…`` for
SAM 2.0) and loaded from an official checkpoint (a dict whose ``"model"`` entry is the state
dict, e.g. ``sam2.1_hiera_tiny.pt``). Per image the Hiera encoder runs once
(``SAM2ImagePredictor.set_image``); all of its boxes then go through the prompt encoder and
mask decoder in batched calls.

Install with ``pip install "boxes2pixels[sam2]"``. The PyPI ``sam2`` is a source
distribution that also tries to build an optional CUDA extension; ``SAM2_BUILD_CUDA=0``
skips it (the teacher does not use it: hole filling and sprinkle removal stay off).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import CheckpointError
from .base import require
from .families import sam2_version
from .sam import SamTeacher

# model type -> the letter of its Hydra config file
_CONFIG_SUFFIX = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
SAM2_VERSIONS = ("2.1", "2.0")


def sam2_config(model_type: str, version: str = "2.1") -> str:
    """The ``sam2`` package's config name, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``."""
    stem = "sam2.1" if version == "2.1" else "sam2"
    return f"configs/{stem}/{stem}_hiera_{_CONFIG_SUFFIX[model_type]}.yaml"


class Sam2Teacher(SamTeacher):
    """Box-prompted SAM 2.1 (or SAM 2.0) from the ``sam2`` package.

    ``device``, ``precision``, ``multimask``, ``clip_margin``, ``min_area``, ``box_batch``,
    ``expected_sha256`` and ``runtime`` are as for
    :class:`~boxes2pixels.teachers.sam.SamTeacher` (the encoder runs in PyTorch: ``auto``
    means ``torch``, ``openvino`` is an error). As in the ``sam2`` image predictor, a
    single-mask answer that is not stable falls back to the best of the three candidates.

    Args:
        checkpoint: local path or ``hf://`` address of an official checkpoint
            (``sam2.1_hiera_tiny.pt``, ``…_small.pt``, ``…_base_plus.pt``, ``…_large.pt``;
            e.g. ``hf://facebook/sam2.1-hiera-tiny/sam2.1_hiera_tiny.pt``).
        model_type: ``tiny``, ``small``, ``base_plus`` or ``large``; ``None`` reads it from
            the checkpoint.
        version: ``"2.1"`` or ``"2.0"`` (the config family); ``None`` reads it from the
            checkpoint (SAM 2.1 files have extra object-pointer weights).
    """

    name = "sam2"
    model_types = ("tiny", "small", "base_plus", "large")
    default_model_type = "tiny"
    package = "sam2"
    distribution = "sam2"
    encoder_runtimes = ("torch",)
    extra = "sam2"  # pip install "boxes2pixels[sam2]"

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
        version: str | None = None,
        runtime: str | None = None,
    ) -> None:
        if version is not None and str(version) not in SAM2_VERSIONS:
            raise CheckpointError(
                f"The sam2 teacher has versions {', '.join(SAM2_VERSIONS)}; got '{version}'."
            )
        self.version = None if version is None else str(version)
        super().__init__(
            checkpoint=checkpoint,
            model_type=model_type,
            device=device,
            precision=precision,
            multimask=multimask,
            clip_margin=clip_margin,
            min_area=min_area,
            box_batch=box_batch,
            expected_sha256=expected_sha256,
            runtime=runtime,
        )

    def _import_backend(self) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            require("sam2.build_sam", f"the {self.name} teacher")
            return require("sam2.sam2_image_predictor", f"the {self.name} teacher")

    def _build(self, module: Any, model_type: str, state_dict: dict[str, Any]) -> Any:
        found = sam2_version(state_dict)
        if self.version is not None and self.version != found:
            raise CheckpointError(
                f"Checkpoint '{self.checkpoint.path}' is a SAM {found} checkpoint, but the "
                f"sam2 teacher was asked for version {self.version}; leave the version out "
                "to read it from the file."
            )
        self.version = found
        build = require("sam2.build_sam", f"the {self.name} teacher").build_sam2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. flash attention unavailable on this device
            return build(sam2_config(model_type, found), None, device="cpu")

    def _predictor(self, module: Any, model: Any) -> Any:
        return module.SAM2ImagePredictor(model)

    def _encode(self, image: np.ndarray) -> None:
        predictor = self.predictor
        with self._autocast():
            predictor.set_image(image)
        features = predictor._features  # kept in fp32 for the decoder, as SamTeacher does
        predictor._features = {
            "image_embed": features["image_embed"].float(),
            "high_res_feats": [f.float() for f in features["high_res_feats"]],
        }

    def _decode(self, boxes: np.ndarray, size: tuple[int, int]) -> tuple[Any, Any]:
        # the steps of SAM2ImagePredictor.predict, kept on the device as tensors
        predictor = self.predictor
        _, _, _, boxes_t = predictor._prep_prompts(None, None, boxes, None, True)
        logits, iou, _ = predictor._predict(
            None, None, boxes=boxes_t, multimask_output=self.multimask, return_logits=True
        )
        return logits, iou

    def _release(self) -> None:
        self.predictor.reset_predictor()

    def describe(self) -> dict[str, Any]:
        """As :meth:`SamTeacher.describe`, with the SAM 2 ``version`` among the options."""
        described = super().describe()
        described["options"]["version"] = self.version
        return described
