"""The student backbone's initialisation in the demo: pretrained DINOv2 weights when they can
be had, else random weights, and why."""

from __future__ import annotations

from ..errors import DemoError, WeightsUnavailableError

BACKBONE_INITS = ("auto", "pretrained", "random")


def pretrained_backbone_available(name: str) -> tuple[bool, str]:
    """Whether the timm pretrained weights of backbone ``name`` can be loaded here, and why.

    An offline machine answers in well under a second (see ``pretrained_unreachable``); when
    the weights are cached or the Hub is reachable they are loaded (downloaded).
    """
    from ..student.backbone import Backbone

    try:
        Backbone(name, init="pretrained", mode="bitfit")
    except WeightsUnavailableError as exc:
        return False, exc.cause or str(exc)
    return True, f"pretrained DINOv2 weights ('{name}') loaded"


def check_backbone_init(requested: str) -> None:
    """Raise ``DemoError`` when ``requested`` is not one of :data:`BACKBONE_INITS`."""
    if requested not in BACKBONE_INITS:
        raise DemoError(f"unknown --backbone-init '{requested}' (use {', '.join(BACKBONE_INITS)})")


def resolve_backbone_init(requested: str, name: str) -> tuple[str, str, str]:
    """``(init, mode, note)`` for ``--backbone-init`` ``auto``, ``pretrained`` or ``random``.

    Pretrained weights train with BitFit as in the paper; random weights train with full
    fine-tuning (a random frozen DINOv2 gives collapsed features). ``pretrained`` that cannot
    be had is an error, never a silent fallback; ``auto`` falls back to random and says why.

    Raises:
        DemoError: an unknown ``requested`` value.
        WeightsUnavailableError: ``pretrained`` was requested and cannot be had.
    """
    check_backbone_init(requested)
    if requested == "random":
        return "random", "full", "random weights chosen with --backbone-init random"
    ok, why = pretrained_backbone_available(name)
    if ok:
        return "pretrained", "bitfit", why
    if requested == "pretrained":
        raise WeightsUnavailableError(
            f"--backbone-init pretrained: {why}. Copy a Hugging Face cache holding the weights "
            "into HF_HOME, run where the Hub is reachable, or use --backbone-init auto (random "
            "weights when none can be had, reported as such)",
            cause=why,
        )
    return "random", "full", f"no pretrained weights could be loaded: {why}"
