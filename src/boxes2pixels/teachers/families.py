"""Which SAM-family model a checkpoint holds, read from its state-dict keys.

Used to name the right ``--teacher`` and ``--model-type`` when a checkpoint is given to the
wrong teacher (an HQ-SAM file to ``sam``, a SAM 2 file to ``sam-hq``, ...), before any model
is built. The key patterns, from each package's own model definitions:

========== =============================================================================
family     keys
========== =============================================================================
sam2       ``image_encoder.trunk.*`` (Hiera), ``sam_mask_decoder.*``; SAM 2.1 adds
           ``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj.*``
sam-hq     ``mask_decoder.hf_token.*``, ``mask_decoder.compress_vit_feat.*`` (HQ decoder)
mobile-sam ``image_encoder.patch_embed.seq.*``, ``image_encoder.layers.*`` (TinyViT)
           without the HQ decoder keys
sam        ``image_encoder.blocks.*``, ``image_encoder.patch_embed.proj.*`` (ViT)
========== =============================================================================

The registry name of each family's teacher is the family name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAMILY_LABELS = {"sam": "SAM", "mobile-sam": "MobileSAM", "sam-hq": "HQ-SAM", "sam2": "SAM 2"}

# Official checkpoints of the newer families: model type -> (file name, address).
_HQ = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
_SAM21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
FAMILY_CHECKPOINTS: dict[str, dict[str, tuple[str, str]]] = {
    "sam-hq": {
        t: (f"sam_hq_{t}.pth", f"{_HQ}sam_hq_{t}.pth")
        for t in ("vit_b", "vit_l", "vit_h", "vit_tiny")
    },
    "sam2": {
        t: (f"sam2.1_hiera_{t}.pt", f"{_SAM21}sam2.1_hiera_{t}.pt")
        for t in ("tiny", "small", "base_plus", "large")
    },
}

# ViT patch-embedding width -> SAM model type (SAM and HQ-SAM share the encoders).
_VIT_WIDTH = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
# Hiera (embedding width, number of blocks) -> SAM 2 model type.
_HIERA = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}


def checkpoint_family(state_dict: Mapping[str, Any]) -> str | None:
    """``sam2`` | ``sam-hq`` | ``mobile-sam`` | ``sam`` from a state dict's keys, or ``None``."""
    keys = state_dict.keys()
    if any(k.startswith(("image_encoder.trunk.", "sam_mask_decoder.")) for k in keys):
        return "sam2"
    if any(
        k.startswith(("mask_decoder.hf_token.", "mask_decoder.compress_vit_feat.")) for k in keys
    ):
        return "sam-hq"
    tiny = ("image_encoder.patch_embed.seq.", "image_encoder.layers.")
    if any(k.startswith(tiny) for k in keys):
        return "mobile-sam"
    if "image_encoder.patch_embed.proj.weight" in state_dict and any(
        k.startswith("image_encoder.blocks.") for k in keys
    ):
        return "sam"
    return None


def infer_model_type(state_dict: Mapping[str, Any], family: str | None) -> str | None:
    """The model type of a ``family`` checkpoint in that family's names, or ``None``.

    ``sam``: vit_b/l/h; ``mobile-sam``: vit_t; ``sam-hq``: vit_b/l/h/vit_tiny;
    ``sam2``: tiny/small/base_plus/large.
    """
    if family == "sam2":
        weight = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
        blocks = {
            k.split(".")[3] for k in state_dict if k.startswith("image_encoder.trunk.blocks.")
        }
        if weight is None or getattr(weight, "ndim", 0) != 4:
            return None
        return _HIERA.get((int(weight.shape[0]), len(blocks)))
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if weight is not None and getattr(weight, "ndim", 0) == 4:
        return _VIT_WIDTH.get(int(weight.shape[0]))
    if any(k.startswith("image_encoder.patch_embed.seq.") for k in state_dict):
        return "vit_tiny" if family == "sam-hq" else "vit_t"
    return None


def sam2_version(state_dict: Mapping[str, Any]) -> str:
    """``"2.1"`` when the SAM 2 checkpoint has the 2.1 object-pointer keys, else ``"2.0"``."""
    keys = state_dict.keys()
    new = "no_obj_embed_spatial" in state_dict or any(
        k.startswith("obj_ptr_tpos_proj.") for k in keys
    )
    return "2.1" if new else "2.0"


def wrong_family_message(path: object, teacher: str, state_dict: Mapping[str, Any]) -> str | None:
    """A message naming the right ``--teacher`` when the checkpoint is of another family.

    ``None`` when the family matches, is unknown, or ``teacher`` is not one of the families.
    """
    found = checkpoint_family(state_dict)
    if teacher not in FAMILY_LABELS or found is None or found == teacher:
        return None
    model_type = infer_model_type(state_dict, found)
    flag = f"--teacher {found}" + (f" --model-type {model_type}" if model_type else "")
    kind = f"a {model_type} checkpoint" if model_type else "a checkpoint"
    return (
        f"Checkpoint '{path}' does not fit the {teacher} teacher: it looks like {kind} of "
        f"{FAMILY_LABELS[found]}, not of {FAMILY_LABELS[teacher]} (its keys show it); "
        f"use {flag}."
    )
