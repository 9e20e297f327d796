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

from collections.abc import Sized
from typing import cast

import torch
from torch import nn
from torch.utils.data import Dataset

from contract.specs.training import AdversaryConfig
from workers.science.attacks import pgd
from workers.science.losses import correct

CHECK_BATCH = 256


class CatastrophicOverfitting(RuntimeError):
    """fgsm_rs lost its robustness to PGD; the message says when, by how much, and what to do."""


def _first_examples(data: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    count = min(n, len(cast(Sized, data)))
    items = [data[i] for i in range(count)]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def robust_accuracy(model: nn.Module, data: Dataset, adversary: AdversaryConfig, eps: float, *,
                    device: torch.device, seed: int) -> float:
    """PGD accuracy of ``model`` (in eval mode) on the first ``overfit_check_examples`` items.

    Items may be augmented from torch's global generator: it is forked, so the check never
    moves the training's random stream (with or without the check, training is the same).
    """
    with torch.random.fork_rng(devices=[]):
        x_all, y_all = _first_examples(data, adversary.overfit_check_examples)
    generator = torch.Generator(device=device).manual_seed(seed)
    steps = adversary.overfit_check_steps
    was_training = model.training
    model.eval()
    hits = 0
    try:
        for start in range(0, len(y_all), CHECK_BATCH):
            x = x_all[start:start + CHECK_BATCH].to(device)  # (b, C, H, W)
            y = y_all[start:start + CHECK_BATCH].to(device)  # (b,)
            x_adv = pgd(model, x, y, norm=adversary.norm, eps=eps, step_size=2.5 * eps / steps,
                        steps=steps, generator=generator)
            with torch.no_grad():
                hits += int(correct(model(x_adv), y).sum())
    finally:
        model.train(was_training)
    return hits / len(y_all)


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
