"""The inference layer: every model, every runtime, one way to segment images.

- :mod:`.contract`: the :class:`SegmentationModel` contract; :mod:`.models`:
  :func:`load_model`, the one loader (model objects, run and model folders, Hub ids,
  ``.onnx`` files).
- :mod:`.segmentation`: :func:`plan_inference` decides whole vs tiled and the precision,
  :func:`segment` runs the plan. Nothing outside this package makes those decisions.
- :mod:`.batched` (whole images, letterboxed) and :mod:`.tiled` (windows at native
  resolution): the two ways of running a model over an image.
- :mod:`.precision`: devices, what the CPU can do fast, ``--precision auto``, autocast.
- :mod:`.exported`, :mod:`.onnx_model`, :mod:`.openvino_model`: files written by
  ``b2p export`` run by onnxruntime or OpenVINO.

The names below are imported lazily, so that a model class can import one module of this
package (``segmentation``) without loading the loader, which knows every model class.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ONNX_SUFFIX": "models",
    "RUNTIMES": "models",
    "load_model": "models",
    "load_student": "models",
    "resolve_model_dir": "models",
    "SegmentationModel": "contract",
    "backbone_is_random": "contract",
    "crop_size_of": "contract",
    "model_runtime": "contract",
    "choose_precision": "precision",
    "cpu_info": "precision",
    "resolve_device": "precision",
    "resolve_precision": "precision",
    "InferencePlan": "segmentation",
    "Segmentation": "segmentation",
    "model_sha256": "models",
    "plan_inference": "segmentation",
    "segment": "segmentation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
