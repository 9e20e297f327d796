"""Fast adversarial training (Wong, Rice and Kolter 2020, "Fast is better than free:
Revisiting adversarial training"): FGSM from a uniform random start.

Per batch: a uniform random point of the ball, one gradient step of ``1.25 * eps`` (the sign of
the gradient for l_inf, its direction for l_2), projected back into the ball and the image box,
then the training step on that point: 1 forward + input-gradient pass, plus 1 forward + backward.

FGSM training can suddenly lose all robustness to PGD while its robustness to FGSM stays high
(catastrophic overfitting, Wong et al. Sec. 5); ``overfit.OverfitCheck`` watches for it after
every epoch and stops the run.
"""

from __future__ import annotations

import torch
from torch import nn

from workers.science.training.common import BatchLoss, BatchSetup, attacker, supervised_loss
from workers.science.training.pgd import pgd_examples


def fgsm_rs_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     setup: BatchSetup) -> torch.Tensor:
    """One FGSM step of ``setup.step_size`` (1.25 * eps by default) from a uniform start.

    This is PGD with one step and a random start, so it shares PGD's threat models and
    projection: the result lies in the ball around ``x`` and in [0, 1].
    """
    return pgd_examples(model, x, y, setup, steps=1, random_start=True)


def fgsm_rs_training(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     setup: BatchSetup) -> BatchLoss:
    """One batch of fast adversarial training: the loss at the FGSM-RS point."""
    losses, hits = supervised_loss(model, fgsm_rs_examples(attacker(model, setup), x, y, setup), y, setup)
    return BatchLoss(loss=losses.mean(), losses=losses.detach(), clean_hits=None, adv_hits=hits)
