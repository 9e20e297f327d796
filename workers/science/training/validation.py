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

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from torch.utils.data import Dataset

from contract.specs.attacks import PGDAttack
from workers.science.attacks import pgd
from workers.science.training.scoring import held_examples, scored


def split_indices(n: int, held_out: int, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, validation indices) of ``n`` examples, both sorted; ``held_out`` of
    them drawn by ``seed`` for validation. Raises ValueError when nothing would be left."""
    if held_out >= n:
        raise ValueError(f"dataset.validation {held_out} leaves no training examples out of the "
                         f"{n} in use; hold out fewer (or raise train_subset)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[held_out:]), sorted(order[:held_out])


@dataclass(frozen=True)
class ValidationSet:
    """Held-out examples (un-augmented) and the attack of ``val_robust_accuracy``."""

    data: Dataset
    attack: PGDAttack | None

    @cached_property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples stacked once, on the host: every epoch scores the same ones."""
        return held_examples(self.data)


def validate(model: nn.Module, validation: ValidationSet, *, device: torch.device,
             seed: int) -> tuple[float, float | None]:
    """(clean accuracy, robust accuracy or None) of ``model`` in eval mode on the split.

    The attack's random starts come from a device generator seeded with ``seed``; the model's
    mode is put back afterwards (``scoring``).
    """
    spec = validation.attack
    generator = torch.Generator(device=device).manual_seed(seed)

    def attack(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert spec is not None
        return pgd(net, x, y, norm=spec.norm, eps=spec.eps, step_size=spec.resolved_step_size,
                   steps=spec.steps, random_start=spec.random_start, restarts=spec.restarts,
                   generator=generator)

    x_all, y_all = validation.tensors
    clean, robust = scored(model, x_all, y_all, device=device,
                           attack=attack if spec is not None else None)
    assert clean is not None
    return clean, robust
