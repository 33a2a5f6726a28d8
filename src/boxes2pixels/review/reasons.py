"""Why an image is doubted, in words: the reasons the gallery and ``queue.csv`` show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .model import MissedDefect
from .settings import DoubtSettings
from .signals import BoxSignals

_MENTION = 0.15
"""A signal is named among an image's reasons from this share of its score on."""


def _signal_text(
    name: str, b: BoxSignals, rank: float | None, settings: DoubtSettings
) -> str | None:
    """One box signal in words (``None`` when it says nothing)."""
    v = b.signals.get(name)
    if v is None or (v <= 0 and name != "coverage"):
        return None
    if name == "coverage":
        if b.pieces == 0:
            text = "mask is empty"
        else:
            what = "fills" if b.coverage > settings.high else "covers only"
            what = what if v > 0 or rank is None else "covers"
            text = f"mask {what} {b.coverage:.0%} of it"
    elif name == "extent":
        text = f"mask spans {b.extent or 0:.0%} of the box"
    elif name == "fragmentation":
        text = f"mask in {b.pieces} pieces"
    elif name == "holes":
        text = f"holes or bites of the defect's colour: {v:.0%} of the mask's outline"
    elif name == "offset":
        text = f"mask sits off the box's centre (offset {v:.2f})"
    elif name == "spill":
        text = f"{v:.0%} of the mask's regions lie outside the box or on background"
    elif name == "appearance":
        text = f"mask and the colours around it disagree (IoU {1 - v:.2f})"
    elif name == "teacher":
        text = f"teacher score {b.teacher_score:.2f}"
    else:
        text = f"model and pseudo-mask overlap at IoU {b.agreement:.2f} in the box"
    if rank is not None:
        text += f" (more unusual than {rank:.0%} of the split's boxes)"
    return text


def explain(
    boxes: Sequence[BoxSignals],
    box_ranks: Sequence[Mapping[str, float | None]],
    box_shares: Sequence[Mapping[str, float]],
    order: Sequence[int],
    names: Sequence[str],
    agreement: float | None,
    missed: Sequence[MissedDefect],
    image_shares: Mapping[str, float],
    settings: DoubtSettings,
    ranked: bool,
) -> list[str]:
    """Why an image is doubted, in words: the signals that carry its score, the worst box's
    first, each box's by share; then the image's own signals."""
    out = []
    image_first = []
    if agreement is not None and agreement < 1.0:
        text = f"model and pseudo-mask overlap at IoU {agreement:.2f}"
        (image_first if image_shares.get("disagreement", 0) >= _MENTION else out).append(text)
    for m in missed:
        text = (
            f"possible missed {names[m.cls]} at x {m.box[0]}–{m.box[2]}, y {m.box[1]}–{m.box[3]} "
            f"({m.area} px, confidence {m.confidence:.2f}; no box there)"
        )
        (image_first if image_shares.get("missed", 0) >= _MENTION else out).append(text)
    box_texts = []
    for i in order:
        b, shares = boxes[i], box_shares[i]
        for name in sorted(shares, key=lambda n: -shares[n]):
            if shares[name] < _MENTION:
                break
            rank = box_ranks[i].get(name) if ranked else None
            text = _signal_text(name, b, rank, settings)
            if text is not None:
                box_texts.append(f"box {b.index + 1} ({names[b.cls]}): {text}")
    return image_first + box_texts + out
