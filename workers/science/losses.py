"""The classification loss, prediction and correctness for both kinds of model output.

Two output conventions exist in robustlab (see ``workers.science.models``):

- K > 1 logits, shape (B, K), labels are class indices in [0, K): cross-entropy, argmax.
- one logit f(x), shape (B, 1) (or (B,)), labels in {-1, +1} (binary MNIST, the theory's
  linear models): the logistic loss softplus(-y f(x)) and the prediction sign(f(x)).

Training, the attacks and the evaluation all use these three functions, so "correct" means
the same thing everywhere.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["none", "mean", "sum"]


def is_binary(logits: torch.Tensor) -> bool:
    """True for a single logit per example (the -1/+1 convention)."""
    return logits.dim() == 1 or logits.shape[1] == 1


def _scores(logits: torch.Tensor) -> torch.Tensor:
    """The single logit f(x) of a binary model as shape (B,)."""
    return logits.reshape(logits.shape[0])


def classification_loss(
    logits: torch.Tensor, y: torch.Tensor, reduction: Reduction = "none"
) -> torch.Tensor:
    """Cross-entropy for (B, K > 1) logits; logistic loss softplus(-y f) for (B, 1) logits.

    Args:
        logits: (B, K) or (B, 1) / (B,).
        y: (B,) int64 class indices, or -1/+1 labels for a single logit.
        reduction: "none" (default, one loss per example), "mean" or "sum".
    """
    if is_binary(logits):
        losses = F.softplus(-y.to(logits.dtype) * _scores(logits))  # (B,)
    else:
        losses = F.cross_entropy(logits, y, reduction="none")  # (B,)
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Predicted labels (B,) int64: argmax, or sign(f) for one logit.

    A binary score of exactly 0 predicts 0, which equals neither label: a tie counts as an error,
    so a worst-case margin of 0 (the exact linear attack's boundary) is not a correct answer.
    """
    if is_binary(logits):
        return torch.sign(_scores(logits)).to(torch.int64)
    return logits.argmax(dim=1)


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example correctness (B,) bool."""
    return predict(logits) == y
