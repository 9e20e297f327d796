"""The validation split (``dataset.validation``) and the epoch's validation accuracies.

Rice et al. 2020 ("Overfitting in adversarially robust deep learning") show that the robust
test accuracy of PGD training peaks early and then falls (53.49% at the best epoch, 45.59% at the
last, on their PreActResNet-18 log), and that early stopping on a held-out validation split
comes within 0.16 points of picking by the test set. Here the held-out examples are drawn by
the seed from the training examples in use, never trained on; after every epoch the weights the
run stands for (the EMA ones when ``training.ema`` is set) are scored on them, clean and under
the validation attack, in eval mode and from a generator of their own, so validation never
moves the training's random streams.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sized
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.utils.data import Dataset

from contract.specs.attacks import PGDAttack
from workers.science.attacks import pgd
from workers.science.losses import correct

VALIDATION_BATCH = 256


def split_indices(n: int, held_out: int, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, validation indices) of ``n`` examples, both sorted; ``held_out`` of
    them drawn by ``seed`` for validation. Raises ValueError when nothing would be left."""
    if held_out >= n:
        raise ValueError(f"dataset.validation {held_out} leaves no training examples out of the "
                         f"{n} in use; hold out fewer (or raise train_subset)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[held_out:]), sorted(order[:held_out])


def indices_hash(indices: list[int]) -> str:
    """sha256 of the indices as comma-separated text: which examples, in provenance."""
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()


@dataclass(frozen=True)
class ValidationSet:
    """Held-out examples (un-augmented) and the attack of ``val_robust_accuracy``."""

    data: Dataset
    attack: PGDAttack | None


def _tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(cast(Sized, data))
    items = [data[i] for i in range(n)]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def validate(model: nn.Module, validation: ValidationSet, *, device: torch.device,
             seed: int) -> tuple[float, float | None]:
    """(clean accuracy, robust accuracy or None) of ``model`` in eval mode on the split.

    The attack's random starts come from a device generator seeded with ``seed``; the model's
    mode is put back afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        x_all, y_all = _tensors(validation.data)
    attack = validation.attack
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    clean = robust = 0
    try:
        for start in range(0, len(y_all), VALIDATION_BATCH):
            x = x_all[start:start + VALIDATION_BATCH].to(device)  # (b, C, H, W)
            y = y_all[start:start + VALIDATION_BATCH].to(device)  # (b,)
            with torch.no_grad():
                clean += int(correct(model(x), y).sum())
            if attack is not None:
                x_adv = pgd(model, x, y, norm=attack.norm, eps=attack.eps,
                            step_size=attack.resolved_step_size, steps=attack.steps,
                            random_start=attack.random_start, restarts=attack.restarts,
                            generator=generator)
                with torch.no_grad():
                    robust += int(correct(model(x_adv), y).sum())
    finally:
        model.train(was_training)
    n = len(y_all)
    return clean / n, (robust / n if attack is not None else None)
