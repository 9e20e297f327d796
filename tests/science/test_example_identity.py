"""Evaluation rows name their examples: the dataset's content hash and a hash of the indices.

The hash is checked against a reference written here (sha256 of the indices as little-endian
int64); a real tiny train run and an evaluate run of its checkpoint, on 120 real binary-MNIST
digits, record the identity on every row, and the two runs' rows name the same examples.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from contract.records import EvaluationRecord, MemoryReporter
from contract.specs.architecture import CheckpointSource, ModelConfig
from contract.specs.attacks import PGDAttack
from contract.specs.data import DatasetConfig
from contract.specs.evaluation import EvaluationConfig
from contract.specs.kinds import EvaluateSpec, TrainSpec
from contract.specs.training import AdversaryConfig, OptimizerConfig, TrainingConfig
from workers.science.context import RunContext
from workers.science.datasets import data_hash
from workers.science.example_identity import (
    WholeSplitIdentity,
    example_indices,
    examples_hash,
)
from workers.science.experiments.evaluate import run as run_evaluate_kind
from workers.science.experiments.train import run as run_train_kind

CPU = torch.device("cpu")


def reference(indices: list[int]) -> str:
    return hashlib.sha256(b"".join(i.to_bytes(8, "little", signed=True) for i in indices)
                          ).hexdigest()


def test_examples_hash_is_sha256_of_int64_little_endian_indices_in_order() -> None:
    assert examples_hash(range(5)) == reference([0, 1, 2, 3, 4])
    assert examples_hash(np.array([7, 3, 2**40])) == reference([7, 3, 2**40])
    assert examples_hash([1, 0]) != examples_hash([0, 1])
    assert len(examples_hash([])) == 64


def test_example_indices_resolve_nested_subsets_to_the_split() -> None:
    base = TensorDataset(torch.zeros(10, 1), torch.zeros(10))
    assert example_indices(base).tolist() == list(range(10))
    inner = Subset(base, [9, 8, 7, 6, 5])
    assert example_indices(Subset(inner, range(1, 3))).tolist() == [8, 7]


def test_whole_split_identity_stamps_records_that_name_no_examples() -> None:
    memory = MemoryReporter()
    reporter = WholeSplitIdentity(memory, "d" * 64)
    reporter.evaluation(EvaluationRecord(model="m", dataset="d", accuracy=0.5, n=4))
    reporter.evaluation(EvaluationRecord(model="m", dataset="d", accuracy=0.5, n=4,
                                         attack="pgd", examples_hash="e" * 64))
    reporter.provenance(data_hash="d" * 64)
    first, second = memory.evaluations.values()
    assert (first.dataset_hash, first.examples_hash) == ("d" * 64, reference([0, 1, 2, 3]))
    assert second.examples_hash == "e" * 64 and memory.facts == {"data_hash": "d" * 64}


def test_a_real_tiny_run_and_its_evaluation_name_the_same_examples(
        tmp_path: Path, mnist_data_dir: Path) -> None:
    dataset = DatasetConfig(name="binary_mnist", train_subset=120, test_subset=120)
    attacks = [PGDAttack(norm="linf", eps=0.2, steps=3)]
    trained = MemoryReporter()
    run_train_kind(TrainSpec(
        kind="train", name="identity", seed=1, dataset=dataset, model=ModelConfig(arch="linear"),
        training=TrainingConfig(epochs=1, batch_size=60,
                                optimizer=OptimizerConfig(name="sgd", lr=0.1, weight_decay=0)),
        adversary=AdversaryConfig(norm="linf", eps=0.0),
        evaluation=EvaluationConfig(attacks=attacks, checks=False),
    ), RunContext(run_id="t1", run_dir=tmp_path / "train", device=CPU, reporter=trained,
                  data_dir=mnist_data_dir))
    final = next(c for c in trained.checkpoints if c.final)
    evaluated = MemoryReporter()
    run_evaluate_kind(EvaluateSpec(
        kind="evaluate", name="identity-eval", source=CheckpointSource(checkpoint=str(final.path)),
        evaluation=EvaluationConfig(attacks=attacks, checks=False, subset=120),
    ), RunContext(run_id="e1", run_dir=tmp_path / "eval", device=CPU, reporter=evaluated,
                  data_dir=mnist_data_dir))

    digest = data_hash(dataset, mnist_data_dir)
    assert trained.facts["data_hash"] == evaluated.facts["data_hash"] == digest
    for reporter in (trained, evaluated):
        rows = reporter.rows()
        assert {row["attack"] for row in rows} >= {"none", "pgd", "worst_case"}
        for row in rows:
            assert (row["n"], row["dataset_hash"]) == (120, digest)
            assert row["examples_hash"] == reference(list(range(120)))


def test_a_theory_run_names_its_test_sample(tmp_path: Path) -> None:
    """E1 scores every model on its whole test sample: each row names the sample's hash and
    the examples 0..n_test-1, so two runs drawing the same sample are paired."""
    from contract.specs.kinds import TheorySpec
    from workers.science.experiments.theory import run as run_theory

    spec = TheorySpec(name="e1-identity", kind="theory",
                      distribution={"p": 0.7, "d": 20, "eta": 0.9},
                      n_train=50, n_test=40, eps=[1.8], epochs=3, seed=2)
    reporter = MemoryReporter()
    run_theory(spec, RunContext(run_id="t", run_dir=tmp_path, device=CPU, reporter=reporter,
                                data_dir=tmp_path))
    rows = reporter.rows()
    assert rows and all(row["dataset_hash"] == reporter.facts["data_hash"] for row in rows)
    assert {row["examples_hash"] for row in rows} == {reference(list(range(40)))}
