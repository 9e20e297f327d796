"""The catastrophic-overfitting check of fast adversarial training (Wong et al. 2020, Sec. 5).

FGSM training can, within an epoch, lose all robustness to PGD while it still resists FGSM.
Wong et al. detect it by attacking a training minibatch with PGD after each epoch and stop when
the robust accuracy drops sharply. Here: after every epoch of ``fgsm_rs`` with eps > 0, PGD
with ``overfit_check_steps`` steps (step size 2.5 * eps / steps, one random start drawn from a
generator seeded per epoch, so the check never moves the training's random streams) attacks the
first ``overfit_check_examples`` training examples in eval mode; a robust accuracy more than
``overfit_check_drop`` below the best of the earlier epochs stops the run before that epoch's
checkpoint is written.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from contract.specs.training import AdversaryConfig
from workers.science.attacks import pgd
from workers.science.training.scoring import held_examples, scored


class CatastrophicOverfitting(RuntimeError):
    """fgsm_rs lost its robustness to PGD; the message says when, by how much, and what to do."""


def robust_accuracy(model: nn.Module, data: Dataset, adversary: AdversaryConfig, eps: float, *,
                    device: torch.device, seed: int) -> float:
    """PGD accuracy of ``model`` (in eval mode) on the first ``overfit_check_examples`` items
    (``scoring``: the training's random streams are left alone)."""
    x_all, y_all = held_examples(data, adversary.overfit_check_examples)
    generator = torch.Generator(device=device).manual_seed(seed)
    steps = adversary.overfit_check_steps

    def attack(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd(net, x, y, norm=adversary.norm, eps=eps, step_size=2.5 * eps / steps,
                   steps=steps, generator=generator)

    _, robust = scored(model, x_all, y_all, device=device, attack=attack, clean=False)
    assert robust is not None
    return robust


def check_overfitting(accuracy: float, earlier: list[tuple[int, float]], *, epoch: int,
                      adversary: AdversaryConfig) -> None:
    """Raise ``CatastrophicOverfitting`` when ``accuracy`` fell too far below the best earlier.

    Args:
        earlier: (epoch, check accuracy) of the earlier epochs checked at the same eps (in an
            eps ramp, accuracy at a larger eps is lower by design, not by overfitting).
    """
    if not earlier:
        return
    best_epoch, best = max(earlier, key=lambda pair: pair[1])
    if accuracy < best - adversary.overfit_check_drop:
        raise CatastrophicOverfitting(
            f"fgsm_rs: catastrophic overfitting in epoch {epoch}: PGD-{adversary.overfit_check_steps} "
            f"accuracy on {adversary.overfit_check_examples} training examples fell from "
            f"{100 * best:.1f}% (epoch {best_epoch}) to {100 * accuracy:.1f}%; the last checkpoint "
            "before it is kept. Use a smaller step_size or eps, fewer epochs, or method pgd "
            "(set adversary.overfit_check: false to train on regardless)"
        )
