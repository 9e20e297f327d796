"""PGD adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks"): minimise the loss at the last iterate of PGD from a random start.

Cost per batch: ``steps`` forward + input-gradient passes with frozen parameters, then one
forward + backward for the step. The clean batch is not forwarded: the epoch's accuracy metric
is the adversarial one, measured by the training forward itself.
"""

from __future__ import annotations

import torch
from torch import nn

from workers.science.attacks import pgd
from workers.science.attacks.common import LossFn
from workers.science.losses import classification_loss
from workers.science.training.common import (
    BatchLoss,
    BatchSetup,
    ModeLocked,
    attacker,
    buffers_preserved,
    supervised_loss,
)


def attack_loss(scale: float) -> LossFn:
    """The attack's per-example loss: cross-entropy in float32, times ``scale`` (fp16)."""

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits.float(), y, reduction="none") * scale

    return loss


def pgd_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, setup: BatchSetup, *,
                 steps: int, random_start: bool) -> torch.Tensor:
    """Madry et al.'s inner maximisation, model left in its mode, running statistics kept.

    The last iterate, as in Madry et al.: tracking the worst one would cost a forward per batch
    that the training step repeats anyway.
    """
    with buffers_preserved(model), setup.autocast():
        x_adv = pgd(ModeLocked(model), x, y, norm=setup.adversary.norm, eps=setup.eps,
                    step_size=setup.step_size, steps=steps, random_start=random_start,
                    best_iterate=False, loss=attack_loss(setup.attack_loss_scale))
    return x_adv.detach()


def pgd_training(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 setup: BatchSetup) -> BatchLoss:
    """One batch of PGD training: the loss at PGD's last iterate inside the training ball."""
    x_adv = pgd_examples(attacker(model, setup), x, y, setup, steps=setup.adversary.steps,
                         random_start=setup.adversary.random_start)
    losses, hits = supervised_loss(model, x_adv, y, setup)
    return BatchLoss(loss=losses.mean(), losses=losses.detach(), clean_hits=None, adv_hits=hits)
