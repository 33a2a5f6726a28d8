"""The Boxes2Pixels student model: DINOv2 ViT-S/14 features, hierarchical decoder, two heads.

Importing this package imports torch and timm; keep it out of fast paths such as ``b2p --help``.
"""

from __future__ import annotations

from ..geometry import letterbox, letterbox_mask, normalize, unletterbox_logits
from .backbone import (
    BACKBONE_INITS,
    BACKBONE_MODES,
    DEFAULT_BACKBONE,
    PAPER_FEATURE_INDICES,
    Backbone,
    default_feature_indices,
    no_backbone_weights,
)
from .decoder import Decoder
from .model import RandomBackboneWarning, Student

__all__ = [
    "BACKBONE_INITS",
    "BACKBONE_MODES",
    "DEFAULT_BACKBONE",
    "PAPER_FEATURE_INDICES",
    "Backbone",
    "Decoder",
    "RandomBackboneWarning",
    "Student",
    "default_feature_indices",
    "letterbox",
    "letterbox_mask",
    "no_backbone_weights",
    "normalize",
    "unletterbox_logits",
]
