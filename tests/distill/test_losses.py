"""Losses on small hand-made tensors: self-correction rules, asymmetric Dice, weighting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from boxes2pixels.distill.losses import (
    DistillationLoss,
    asymmetric_dice_loss,
    class_weights,
    self_correct_targets,
)

BIG = 20.0  # logit gap that gives a softmax confidence of ~1


def _logits_for(
    pred: list[list[int]], confident: list[list[bool]], classes: int = 3
) -> torch.Tensor:
    """1×C×H×W logits whose argmax is ``pred``; confidence ~1 where ``confident`` else ~0.5."""
    h, w = len(pred), len(pred[0])
    logits = torch.zeros(1, classes, h, w)
    for y in range(h):
        for x in range(w):
            c = pred[y][x]
            if confident[y][x]:
                logits[0, c, y, x] = BIG
            else:  # two classes tie-ish: top prob ≈ 0.52 < τ
                logits[0, c, y, x] = 0.1
                logits[0, (c + 1) % classes, y, x] = 0.0
                logits[0, (c + 2) % classes, y, x] = -BIG
    return logits


def test_only_confident_defect_predictions_on_background_are_corrected() -> None:
    target = torch.tensor([[[0, 0, 0, 1], [2, 0, 255, 0]]])
    pred = [[1, 2, 1, 2], [1, 0, 2, 2]]
    confident = [[True, True, False, True], [True, True, True, True]]
    logits = _logits_for(pred, confident)
    corrected, changed = self_correct_targets(logits, target, tau=0.9)
    expected = torch.tensor([[[1, 2, 0, 1], [2, 0, 255, 2]]])
    # (0,0) bg→1 and (0,1) bg→2: confident defect predictions on background;
    # (0,2) background, defect predicted but not confident: unchanged;
    # (0,3) defect 1 with a confident prediction of 2: unchanged (defects never change);
    # (1,0) defect 2 predicted 1: unchanged; (1,1) background predicted background;
    # (1,2) ignore: unchanged; (1,3) background with confident defect 2: corrected.
    assert torch.equal(corrected, expected)
    assert changed.sum().item() == 3
    assert torch.equal(changed, (expected != target))


def test_threshold_is_strict_and_tau_matters() -> None:
    # one background pixel; prediction class 1 with probability exactly 0.8
    p = torch.tensor([0.1, 0.8, 0.1]).log().view(1, 3, 1, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    assert self_correct_targets(p, target, tau=0.9)[0].item() == 0
    assert self_correct_targets(p, target, tau=0.7)[0].item() == 1


def test_defect_targets_never_change_whatever_the_prediction() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 8, 8) * 30  # very confident, random classes
    target = torch.randint(1, 4, (2, 8, 8))
    corrected, changed = self_correct_targets(logits, target, tau=0.5)
    assert torch.equal(corrected, target)
    assert not changed.any()


def test_no_gradient_flows_through_the_correction() -> None:
    target = torch.tensor([[[0, 0], [1, 0]]])
    logits = _logits_for([[1, 0], [1, 2]], [[True, True], [True, False]]).requires_grad_(True)
    corrected, _ = self_correct_targets(logits, target)
    assert not corrected.requires_grad and corrected.grad_fn is None

    loss_fn = DistillationLoss(num_classes=3)
    out = loss_fn({"fine": logits}, target, correct=True)
    out.total.backward()
    grad = logits.grad.clone()

    # the same loss with the corrected target given as a constant has the same gradient
    fixed = logits.detach().clone().requires_grad_(True)
    expected_target = torch.tensor([[[1, 0], [1, 0]]])
    F.cross_entropy(fixed, expected_target, weight=class_weights(3)).backward()
    assert torch.allclose(grad, fixed.grad, atol=1e-7)


def test_correction_off_keeps_pseudo_labels_and_reports_share() -> None:
    target = torch.tensor([[[0, 0, 255, 1]]])
    logits = _logits_for([[2, 2, 2, 2]], [[True, True, True, True]])
    loss_fn = DistillationLoss(num_classes=3)
    off = loss_fn({"fine": logits}, target, correct=False)
    on = loss_fn({"fine": logits}, target, correct=True)
    assert off.corrected_pixels == 0
    assert on.corrected_pixels == 2 and on.valid_pixels == 3
    assert on.corrected_share == pytest.approx(2 / 3)
    assert on.fine.item() < off.fine.item()  # corrected targets agree with the prediction


def _binary_logits(prob_defect: list[float]) -> torch.Tensor:
    """1×2×1×N logits with softmax defect probabilities (0 or 1 exactly)."""
    p = torch.tensor(prob_defect)
    return torch.stack([(1 - p) * 100, p * 100]).view(1, 2, 1, -1)


def test_asymmetric_dice_matches_formula() -> None:
    target = torch.tensor([[[1, 2, 0, 0]]])  # two defect pixels (any defect class counts)
    beta, eps = 0.4, 1.0
    over = asymmetric_dice_loss(_binary_logits([1, 1, 1, 0]), target, beta=beta, eps=eps)
    under = asymmetric_dice_loss(_binary_logits([1, 0, 0, 0]), target, beta=beta, eps=eps)
    assert over.item() == pytest.approx(1 - (2 + eps) / (2 + beta * 1 + 0 + eps), abs=1e-6)
    assert under.item() == pytest.approx(1 - (1 + eps) / (1 + 0 + 1 + eps), abs=1e-6)


def test_beta_below_one_penalises_false_positives_less_than_false_negatives() -> None:
    # one true positive plus one wrong pixel: a false alarm vs a missed defect
    fp_case = asymmetric_dice_loss(_binary_logits([1, 1]), torch.tensor([[[1, 0]]]), beta=0.4)
    fn_case = asymmetric_dice_loss(_binary_logits([1, 0]), torch.tensor([[[1, 1]]]), beta=0.4)
    assert fp_case.item() < fn_case.item()
    # with β = 1 (plain Dice) both cost the same
    fp_dice = asymmetric_dice_loss(_binary_logits([1, 1]), torch.tensor([[[1, 0]]]), beta=1.0)
    assert fp_dice.item() == pytest.approx(fn_case.item(), abs=1e-6)


def test_perfect_prediction_has_zero_dice_loss() -> None:
    target = torch.tensor([[[1, 0, 2, 0]]])
    assert asymmetric_dice_loss(_binary_logits([1, 0, 1, 0]), target).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_ignore_index_is_left_out_of_both_losses() -> None:
    torch.manual_seed(0)
    target = torch.tensor([[[0, 1, 255, 2], [255, 0, 0, 1]]])
    fine = torch.randn(1, 3, 2, 4)
    binary = torch.randn(1, 2, 2, 4)
    loss_fn = DistillationLoss(num_classes=3)
    base = loss_fn({"fine": fine, "binary": binary}, target)
    ignored = target == 255
    fine2, binary2 = fine.clone(), binary.clone()
    fine2[:, :, ignored[0]] = torch.randn(3, int(ignored.sum())) * 50
    binary2[:, :, ignored[0]] = torch.randn(2, int(ignored.sum())) * 50
    other = loss_fn({"fine": fine2, "binary": binary2}, target)
    assert other.total.item() == pytest.approx(base.total.item(), abs=1e-6)
    assert base.valid_pixels == 6


def test_all_ignore_batch_gives_zero_finite_loss() -> None:
    target = torch.full((1, 2, 2), 255)
    fine = torch.randn(1, 3, 2, 2, requires_grad=True)
    out = DistillationLoss(num_classes=3)({"fine": fine}, target)
    assert out.total.item() == 0.0
    out.total.backward()
    assert torch.equal(fine.grad, torch.zeros_like(fine))


def test_class_weighted_cross_entropy_and_total() -> None:
    torch.manual_seed(2)
    fine = torch.randn(1, 3, 1, 3)
    binary = torch.randn(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 2]]])
    out = DistillationLoss(num_classes=3)({"fine": fine, "binary": binary}, target, correct=False)
    logp = torch.log_softmax(fine, dim=1)[0, :, 0]
    w = [0.4, 4.0, 4.0]
    nll = [-logp[t, i].item() * w[t] for i, t in enumerate([0, 1, 2])]
    expected_ce = sum(nll) / sum(w)
    assert out.fine.item() == pytest.approx(expected_ce, rel=1e-5)
    dice = asymmetric_dice_loss(binary, target).item()
    assert out.total.item() == pytest.approx(0.5 * dice + 0.5 * expected_ce, rel=1e-5)
    without_binary = DistillationLoss(num_classes=3)({"fine": fine}, target, correct=False)
    assert without_binary.binary is None
    assert without_binary.total.item() == pytest.approx(expected_ce, rel=1e-5)


def test_nan_logits_give_non_finite_loss() -> None:
    fine = torch.full((1, 3, 1, 2), math.nan)
    out = DistillationLoss(num_classes=3)({"fine": fine}, torch.zeros(1, 1, 2, dtype=torch.long))
    assert not torch.isfinite(out.total)


def test_wrong_channel_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="4 channels"):
        DistillationLoss(num_classes=3)({"fine": torch.zeros(1, 4, 2, 2)}, torch.zeros(1, 2, 2))
