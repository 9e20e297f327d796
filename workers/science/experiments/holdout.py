"""The train kind's validation split and selected weights (``dataset.validation``, ``training.select``).

``hold_out`` cuts ``dataset.validation`` examples, drawn by the run's seed, out of the training
examples in use (after ``train_subset``): ``train_subset: 3000, validation: 500`` trains on
2,500. The held-out ones are read again without augmentation, and the run's provenance records
how many they are and which (``examples_hash`` of their indices in the training split), so two
runs can be checked to have validated on the same examples.
"""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import cast

from torch import nn
from torch.utils.data import Dataset, Subset

from contract.errors import Refusal
from contract.records import Reporter
from contract.specs.kinds import TrainSpec
from workers.science.checkpoints import load_model
from workers.science.context import RunContext
from workers.science.datasets import load_dataset
from workers.science.distributed import all_reduce_sum
from workers.science.example_identity import examples_hash
from workers.science.training import TrainOutcome
from workers.science.training.validation import ValidationSet, split_indices


def hold_out(spec: TrainSpec, data_dir: Path, train_data: Dataset,
             reporter: Reporter) -> tuple[Dataset, ValidationSet | None]:
    """(the examples to train on, the validation set or None) of ``spec``'s training data."""
    count = spec.dataset.validation
    if count is None:
        return train_data, None
    try:
        train_indices, held_out = split_indices(len(cast(Sized, train_data)), count, spec.seed)
    except ValueError as exc:
        raise Refusal(str(exc)) from None
    plain = load_dataset(spec.dataset.model_copy(update={"augment": False}), data_dir, train=True)
    attack = spec.training.resolved_validation_attack(spec.adversary)
    reporter.provenance(validation={
        "examples": len(held_out), "train_examples": len(train_indices),
        "examples_hash": examples_hash(held_out),
        "attack": None if attack is None else attack.label(),
    })
    return Subset(train_data, train_indices), ValidationSet(Subset(plain, held_out), attack)


def best_model(outcome: TrainOutcome, ctx: RunContext) -> nn.Module:
    """The selected epoch's weights, read from the file rank 0 wrote (after a barrier)."""
    if outcome.best is None:
        raise Refusal("evaluation.checkpoints names 'best' but training.select is 'final'")
    all_reduce_sum([0.0], ctx.world, ctx.device)  # rank 0 has written best.pt by now
    model, _ = load_model(outcome.best.checkpoint, ctx.device)
    return model
