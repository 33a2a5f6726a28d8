"""Training losses of the student: asymmetric Dice and self-correcting cross-entropy.

Both follow the paper (DESIGN.md, "Losses and training"):

- binary head: asymmetric Dice on the softmax defect probability ``p`` against
  ``t = pseudo-label > 0``: ``1 − (Σpt + ε) / (Σpt + β·Σp(1−t) + Σ(1−p)t + ε)``;
  ``β < 1`` penalises false positives less than false negatives (favours recall);
- fine head: class-weighted cross-entropy (0.4 background, 4.0 each defect class) on a
  target corrected online: where the pseudo-label is background and the student predicts a
  defect class with softmax confidence above ``τ``, the target becomes that class. Defect
  labels never change, no gradient flows through the correction;
- total: ``0.5·binary + 0.5·fine``; without the binary head only the fine loss.

Pixels labelled 255 (ignore) take part in neither loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.labelmaps import IGNORE


def asymmetric_dice_loss(
    logits: Tensor,
    target: Tensor,
    beta: float = 0.4,
    eps: float = 1.0,
    ignore_index: int = IGNORE,
) -> Tensor:
    """Asymmetric Dice loss of a two-channel (background, defect) head.

    Sums run over every valid pixel of the batch.

    Args:
        logits: B×2×H×W logits of the binary head.
        target: B×H×W integer label map (0 background, >0 any defect class, ``ignore_index``
            ignored).
        beta: weight of the false positives (``β < 1`` favours recall).
        eps: smoothing term in numerator and denominator.
        ignore_index: target value that is left out.

    Returns:
        A scalar tensor in [0, 1].
    """
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"binary logits must be B×2×H×W, got {tuple(logits.shape)}")
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)}"
        )
    p = torch.softmax(logits.float(), dim=1)[:, 1]
    valid = (target != ignore_index).float()
    t = ((target > 0) & (target != ignore_index)).float()
    p = p * valid
    tp = (p * t).sum()
    fp = (p * (1.0 - t) * valid).sum()
    fn = ((1.0 - p) * t).sum()
    return 1.0 - (tp + eps) / (tp + beta * fp + fn + eps)


@torch.no_grad()
def self_correct_targets(
    logits: Tensor, target: Tensor, tau: float = 0.9, ignore_index: int = IGNORE
) -> tuple[Tensor, Tensor]:
    """One-sided online self-correction of a fine-head target.

    Where ``target`` is background (0), the prediction (argmax of ``logits``) is a defect
    class and its softmax confidence exceeds ``tau``, the target becomes the predicted class.
    Defect and ignore pixels never change. Computed without gradient.

    Args:
        logits: B×C×H×W logits of the fine head.
        target: B×H×W integer label map.
        tau: confidence threshold.
        ignore_index: target value that is never changed.

    Returns:
        ``(corrected_target, changed)``: a new target tensor and the boolean B×H×W map of the
        pixels that were changed.
    """
    probs = torch.softmax(logits.detach().float(), dim=1)
    confidence, pred = probs.max(dim=1)
    changed = (target == 0) & (pred > 0) & (confidence > tau)
    corrected = torch.where(changed, pred.to(target.dtype), target)
    return corrected, changed


def class_weights(num_classes: int, background: float = 0.4, defect: float = 4.0) -> Tensor:
    """Cross-entropy weights: ``background`` for value 0, ``defect`` for each defect class."""
    weights = torch.full((num_classes,), float(defect))
    weights[0] = float(background)
    return weights


@dataclass
class LossOutput:
    """The loss of one batch and its parts (detached parts, for logging)."""

    total: Tensor
    binary: Tensor | None
    fine: Tensor
    corrected_pixels: int
    valid_pixels: int

    @property
    def corrected_share(self) -> float:
        """Share of the valid (non-ignore) pixels whose target was corrected."""
        return self.corrected_pixels / self.valid_pixels if self.valid_pixels else 0.0


class DistillationLoss(nn.Module):
    """The student's training objective: ``w_b·AsymDice(binary) + w_f·CE(fine, corrected)``.

    Args:
        num_classes: number of label values including background.
        beta: false-positive weight of the asymmetric Dice loss.
        dice_eps: smoothing term of the Dice loss.
        background_weight: cross-entropy weight of the background class.
        defect_weight: cross-entropy weight of each defect class.
        tau: confidence threshold of the self-correction.
        binary_weight: weight of the binary loss in the total.
        fine_weight: weight of the fine loss in the total (1.0 is used when the model has no
            binary head, so the total is then the plain fine loss).
        ignore_index: label value left out of both losses.
    """

    def __init__(
        self,
        num_classes: int,
        beta: float = 0.4,
        dice_eps: float = 1.0,
        background_weight: float = 0.4,
        defect_weight: float = 4.0,
        tau: float = 0.9,
        binary_weight: float = 0.5,
        fine_weight: float = 0.5,
        ignore_index: int = IGNORE,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.beta = beta
        self.dice_eps = dice_eps
        self.tau = tau
        self.binary_weight = binary_weight
        self.fine_weight = fine_weight
        self.ignore_index = ignore_index
        self.register_buffer(
            "weight", class_weights(num_classes, background_weight, defect_weight), persistent=False
        )

    def forward(
        self, outputs: dict[str, Tensor], target: Tensor, correct: bool = True
    ) -> LossOutput:
        """Loss of one batch.

        Args:
            outputs: the student's output dict (``"fine"`` and optionally ``"binary"``).
            target: B×H×W integer pseudo-label map (0 background, k+1 class k, 255 ignore).
            correct: apply the online self-correction to the fine target.
        """
        fine_logits = outputs["fine"]
        if fine_logits.shape[1] != self.num_classes:
            raise ValueError(
                f"fine head has {fine_logits.shape[1]} channels, "
                f"the loss expects {self.num_classes}"
            )
        target = target.long()
        valid_pixels = int((target != self.ignore_index).sum())
        if correct:
            fine_target, changed = self_correct_targets(
                fine_logits, target, self.tau, self.ignore_index
            )
            corrected_pixels = int(changed.sum())
        else:
            fine_target, corrected_pixels = target, 0
        if valid_pixels:
            fine = F.cross_entropy(
                fine_logits.float(),
                fine_target,
                weight=self.weight.to(fine_logits.device),
                ignore_index=self.ignore_index,
            )
        else:  # an all-ignore batch: a zero loss that still has a graph
            fine = fine_logits.float().sum() * 0.0
        binary_logits = outputs.get("binary")
        if binary_logits is None:
            return LossOutput(fine, None, fine.detach(), corrected_pixels, valid_pixels)
        binary = asymmetric_dice_loss(
            binary_logits, target, self.beta, self.dice_eps, self.ignore_index
        )
        total = self.binary_weight * binary + self.fine_weight * fine
        return LossOutput(total, binary.detach(), fine.detach(), corrected_pixels, valid_pixels)
