"""The inference layer: every model, every runtime, one way to segment images.

- :mod:`.models`: the :class:`SegmentationModel` contract and :func:`load_model`, the one
  loader (model objects, run and model folders, Hub ids, ``.onnx`` files).
- :mod:`.segmentation`: :func:`plan_inference` decides whole vs tiled and the precision,
  :func:`segment` runs the plan. Nothing outside this package makes those decisions.
- :mod:`.batched` (whole images, letterboxed) and :mod:`.tiled` (windows at native
  resolution): the two ways of running a model over an image.
- :mod:`.precision`: devices, what the CPU can do fast, ``--precision auto``, autocast.
- :mod:`.exported`, :mod:`.onnx_model`, :mod:`.openvino_model`: files written by
  ``b2p export`` run by onnxruntime or OpenVINO.
"""

from .models import (
    ONNX_SUFFIX,
    RUNTIMES,
    SegmentationModel,
    backbone_is_random,
    crop_size_of,
    load_model,
    load_student,
    model_runtime,
    resolve_model_dir,
)
from .precision import choose_precision, cpu_info, resolve_device, resolve_precision
from .segmentation import InferencePlan, Segmentation, model_sha256, plan_inference, segment

__all__ = [
    "ONNX_SUFFIX",
    "RUNTIMES",
    "InferencePlan",
    "Segmentation",
    "SegmentationModel",
    "backbone_is_random",
    "choose_precision",
    "cpu_info",
    "crop_size_of",
    "load_model",
    "load_student",
    "model_runtime",
    "model_sha256",
    "plan_inference",
    "resolve_device",
    "resolve_model_dir",
    "resolve_precision",
    "segment",
]
