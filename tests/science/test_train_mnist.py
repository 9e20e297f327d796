"""E2 in miniature: PGD adversarial training of ``mnist_cnn`` on real MNIST digits buys robustness.

Two runs of the ``train`` kind (standard, and l_inf PGD at eps 0.2) on the same 1000 real
digits, each evaluated with PGD at eps 0.2 on 200 test digits. The adversarially trained model
must be clearly more accurate under attack, as in the paper's Figure 1 / Table 4 pattern.
Sized for ~1 minute on two CPU cores: one epoch, a 2-step training adversary (random start,
step 2.5 * eps / steps), a 10-step evaluation attack. Measured here (seed 0): standard
training 83% clean / 4% under attack, adversarial training 53% clean / 28% under attack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from contract.records import MemoryReporter
from contract.specs.architecture import ModelConfig
from contract.specs.attacks import PGDAttack
from contract.specs.data import DatasetConfig
from contract.specs.evaluation import EvaluationConfig
from contract.specs.kinds import TrainSpec
from contract.specs.training import AdversaryConfig, OptimizerConfig, TrainingConfig
from workers.science.context import RunContext
from workers.science.experiments.train import run

EPS = 0.2

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def two_threads() -> Iterator[None]:
    """The CNN's convolutions use both cores; more threads than cores only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    yield
    torch.set_num_threads(threads)


def mnist_spec(train_eps: float) -> TrainSpec:
    return TrainSpec(
        kind="train",
        name="mnist-adversarial-vs-standard",
        seed=0,
        dataset=DatasetConfig(name="mnist", train_subset=1000, test_subset=200),
        model=ModelConfig(arch="mnist_cnn"),
        training=TrainingConfig(epochs=1, batch_size=32,
                                optimizer=OptimizerConfig(name="adam", lr=1e-3, weight_decay=0)),
        adversary=AdversaryConfig(norm="linf", eps=train_eps, steps=2),
        evaluation=EvaluationConfig(attacks=[PGDAttack(norm="linf", eps=EPS, steps=10)],
                                    checks=False),
    )


def accuracies(train_eps: float, run_dir: Path, data_dir: Path) -> dict[str, float]:
    reporter = MemoryReporter()
    ctx = RunContext(run_id=f"eps-{train_eps}", run_dir=run_dir, device=torch.device("cpu"),
                     reporter=reporter, data_dir=data_dir)
    run(mnist_spec(train_eps), ctx)
    rows = reporter.rows()
    assert all(row["train_eps"] == train_eps and row["n"] == 200 for row in rows)
    return {row["attack"]: row["accuracy"] for row in rows if row["attack"] in ("none", "pgd")}


def test_adversarial_training_on_real_mnist_beats_standard_training_under_attack(
    tmp_path: Path, mnist_data_dir: Path
) -> None:
    standard = accuracies(0.0, tmp_path / "standard", mnist_data_dir)
    robust = accuracies(EPS, tmp_path / "robust", mnist_data_dir)
    assert standard["none"] > 0.7  # both models learnt the task ...
    assert robust["none"] > 0.3
    assert robust["pgd"] > standard["pgd"] + 0.1  # ... and only one resists the attack
    assert robust["pgd"] <= robust["none"]
