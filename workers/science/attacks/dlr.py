"""Logit-difference losses: the margin, DLR and targeted DLR (Croce & Hein 2020, Sec. 4).

Cross-entropy can be driven up by scaling the logits without changing the decision, and a
model whose logits are huge (or saturated) gives it almost no gradient. The *difference of
logits ratio* is invariant to shifting and scaling the logits, so it measures progress towards
the decision boundary whatever their scale:

    DLR(z, y)      = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)
    DLR_T(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)

where z_pi1 >= z_pi2 >= ... are the sorted logits. Both are maximised by the attack; DLR needs
at least 3 classes, the targeted one at least 4. ``margin`` is the plain z_y - max_{i != y} z_i
that the Square Attack minimises (<= 0 means misclassified).
"""

from __future__ import annotations

import torch

DLR_TINY = 1e-12
"""Added to the denominators: a model with tied top logits gives a finite loss."""


def _check_classes(logits: torch.Tensor, needed: int, name: str) -> None:
    if logits.dim() != 2 or logits.shape[1] < needed:
        raise ValueError(f"{name} needs logits (B, K) with K >= {needed} classes; "
                         f"got shape {tuple(logits.shape)} (use loss 'ce' for fewer classes)")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i per example (B,): positive while ``y`` is still predicted."""
    _check_classes(logits, 2, "the margin")
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)  # (B,)
    others = logits.scatter(1, y.view(-1, 1), -torch.inf)  # (B, K)
    return true - others.max(dim=1).values


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The untargeted DLR loss (B,), to maximise: -margin / (z_pi1 - z_pi3)."""
    _check_classes(logits, 3, "the DLR loss")
    top = logits.sort(dim=1, descending=True).values  # (B, K)
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + DLR_TINY)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The targeted DLR loss (B,), to maximise: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    _check_classes(logits, 4, "the targeted DLR loss")
    top = logits.sort(dim=1, descending=True).values  # (B, K)
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    towards = logits.gather(1, target.view(-1, 1)).squeeze(1)
    return -(true - towards) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_TINY)


def ranked_targets(logits: torch.Tensor, rank: int) -> torch.Tensor:
    """The class the model ranks ``rank``-th (1 = its prediction) per example (B,).

    APGD-T and FAB-T aim at the classes ranked 2, 3, ... by the clean logits: the nearest
    wrong classes first.
    """
    if not 1 <= rank <= logits.shape[1]:
        raise ValueError(f"rank must be in [1, {logits.shape[1]}], got {rank}")
    return logits.argsort(dim=1, descending=True)[:, rank - 1]
