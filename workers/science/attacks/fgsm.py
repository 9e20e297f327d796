"""The fast gradient sign method: one l_inf step of length eps, no random start, no tracking."""

from __future__ import annotations

import torch
from torch import nn

from contract.specs.attacks import FGSMAttack
from workers.science.attacks.common import (
    AttackRun,
    LossFn,
    attack_mode,
    check_inputs,
    per_example_loss,
)
from workers.science.losses import classification_loss
from workers.science.threat_models import LinfBall


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    targeted: bool = False,
    loss: LossFn | None = None,
) -> torch.Tensor:
    r"""FGSM in the paper "Explaining and Harnessing Adversarial Examples" (Goodfellow et al. 2015).

    Distance measure: Linf, in pixel space, within the image box [0, 1].

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (B, K) or a binary logit (B, 1).
        x (torch.Tensor): clean images (B, C, H, W) in [0, 1].
        y (torch.Tensor): (B,) labels; the target classes when ``targeted``.
        eps (float): radius of the l_inf ball, and the length of the single step.
        targeted (bool): step towards ``y`` instead of away from it. (Default: False)
        loss (callable): ``loss(logits, y) -> (B,)``. (Default: ``classification_loss``)

    Shape:
        - x: (B, C, H, W) in [0, 1]; y: (B,); output: (B, C, H, W) in [0, 1].

    The point returned is x + eps * sign(grad), clipped to [0, 1], whether or not it is worse
    than x (for a linear model it is the exact worst case; in general it need not be).

    Examples::
        >>> x_adv = fgsm(model, x, y, eps=0.3)
    """
    check_inputs(x, y, eps)
    x = x.detach()
    ball = LinfBall(x, eps, step_size=eps)
    with attack_mode(model):
        x_in = x.clone().requires_grad_(True)
        losses = per_example_loss(loss or classification_loss, model(x_in), y)  # (B,)
        objective = -losses if targeted else losses
        (grad,) = torch.autograd.grad(objective.sum(), x_in)  # (B, C, H, W)
    return ball.project(ball.step(x, grad))


def run_spec(spec: FGSMAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> AttackRun:
    """``evaluation.attacks`` entry ``kind: fgsm`` (``contract.specs.attacks.FGSMAttack``)."""
    return AttackRun(fgsm(model, x, y, eps=spec.eps))
