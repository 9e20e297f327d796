"""Accuracy of a model on a few held examples, clean and under an attack, between epochs.

The fgsm_rs catastrophic-overfitting check (``overfit``) and the validation split
(``validation``) both score the model the training is changing: in eval mode (put back
afterwards), in batches, the attack's random starts from a generator of their own, and the
examples read under a forked torch generator, so scoring never moves the training's random
streams (with or without it, training is the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import cast

import torch
from torch import nn
from torch.utils.data import Dataset

from workers.science.losses import correct

SCORE_BATCH = 256

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""(model, x, y) -> adversarial x, within its ball."""


def held_examples(data: Dataset, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (default all) items of ``data`` stacked: (N, C, H, W), (N,). Items that
    augment themselves draw from a forked generator, leaving the training's stream alone."""
    count = len(cast(Sized, data)) if n is None else min(n, len(cast(Sized, data)))
    with torch.random.fork_rng(devices=[]):
        items = [data[i] for i in range(count)]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def scored(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, *,
           device: torch.device, attack: Attack | None, clean: bool = True
           ) -> tuple[float | None, float | None]:
    """(clean accuracy or None, accuracy under ``attack`` or None) of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    clean_hits = attacked_hits = 0
    try:
        for start in range(0, len(y_all), SCORE_BATCH):
            x = x_all[start:start + SCORE_BATCH].to(device)  # (b, C, H, W)
            y = y_all[start:start + SCORE_BATCH].to(device)  # (b,)
            if clean:
                with torch.no_grad():
                    clean_hits += int(correct(model(x), y).sum())
            if attack is not None:
                x_adv = attack(model, x, y)
                with torch.no_grad():
                    attacked_hits += int(correct(model(x_adv), y).sum())
    finally:
        model.train(was_training)
    n = len(y_all)
    return (clean_hits / n if clean else None), (attacked_hits / n if attack is not None else None)
