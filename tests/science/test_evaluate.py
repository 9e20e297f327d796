"""Evaluation: accuracies, per-example worst cases, records, and validity checks that can fail.

The checks are tested on models built to break them: one whose gradients are masked by a
non-differentiable quantisation (PGD cannot move, so a huge eps leaves it "robust"), and one
whose output is random (eps 0 no longer reproduces clean accuracy).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from contract.records import Cancelled, MemoryReporter
from contract.specs.attacks import ExactLinearAttack, FGSMAttack, PGDAttack
from contract.specs.kinds import EvaluateSpec
from workers.science.checkpoints import capture_rng, save_checkpoint
from workers.science.context import RunContext
from workers.science.datasets import load_dataset
from workers.science.evaluate import EvaluationResult, evaluate, unpack_correct
from workers.science.experiments.evaluate import run
from workers.science.losses import classification_loss
from workers.science.models import build_model

CPU = torch.device("cpu")
CLASSES, SIDE = 3, 8
ATTACKS = [
    PGDAttack(norm="linf", eps=0.15, steps=10, restarts=2),
    FGSMAttack(eps=0.15),
    PGDAttack(norm="l2", eps=0.8, steps=10),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def template_task(n: int = 60) -> tuple[torch.Tensor, TensorDataset]:
    """Images 0.5 + 0.15 * s_y + noise for one random +-1 pattern s_c per class, and the patterns."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(0, 2, (CLASSES, SIDE * SIDE), generator=g).float() * 2 - 1  # (K, D)
    y = torch.arange(n) % CLASSES
    noise = 0.05 * torch.randn((n, SIDE * SIDE), generator=g)
    x = (0.5 + 0.15 * patterns[y] + noise).clamp(0, 1).view(n, 1, SIDE, SIDE)
    return patterns, TensorDataset(x, y)


class TemplateModel(nn.Module):
    """Scores each class by agreement with its pattern; ``quantise`` masks the gradients."""

    def __init__(self, patterns: torch.Tensor, quantise: bool = False) -> None:
        super().__init__()
        self.scores = nn.Linear(patterns.shape[1], patterns.shape[0])
        with torch.no_grad():
            self.scores.weight.copy_(patterns)
            self.scores.bias.copy_(-0.5 * patterns.sum(1))
        self.quantise = quantise

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, K)
        if self.quantise:
            x = torch.round(x * 16) / 16  # zero gradient almost everywhere
        return self.scores(x.flatten(1))


class RandomisedModel(TemplateModel):
    """Adds fresh noise to the logits at every call: a stochastic 'defence'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits + 20 * torch.randn_like(logits)


def test_accuracies_worst_case_and_records() -> None:
    patterns, data = template_task()
    result = evaluate(TemplateModel(patterns), data, ATTACKS, device=CPU, batch_size=16)
    assert result.n == 60 and result.clean_accuracy == 1.0
    linf = result.worst_case("linf", 0.15)
    for outcome in result.attacks:
        assert not (outcome.correct & ~result.clean).any()  # never above clean, per example
    for index in (0, 1):
        assert not (linf & ~result.attacks[index].correct).any()
    assert float(linf.float().mean()) <= min(result.attacks[0].accuracy, result.attacks[1].accuracy)
    assert 0 < result.attacks[0].accuracy < 1 and 0 < result.attacks[2].accuracy < 1

    records = result.to_records("template", "synthetic", "test", "linf", 0.0)
    by_attack = {(r.attack, r.eval_norm): r for r in records}
    assert set(by_attack) == {("none", None), ("pgd", "linf"), ("fgsm", "linf"), ("pgd", "l2"),
                              ("worst_case", "linf"), ("worst_case", "l2")}
    assert len({r.key for r in records}) == len(records)
    pgd_linf = by_attack[("pgd", "linf")]
    assert (pgd_linf.steps, pgd_linf.restarts, pgd_linf.eval_eps) == (10, 2, 0.15)
    assert pgd_linf.step_size == pytest.approx(5 * 0.15 / 10)  # PGD_STEP_FACTOR
    for record in records:
        bits = unpack_correct(record.per_example, record.n)
        assert record.accuracy == pytest.approx(bits.mean())
        assert record.checks and all(check["passed"] for check in record.checks.values())
    assert torch.equal(torch.from_numpy(unpack_correct(by_attack[("worst_case", "linf")].per_example, 60)), linf)


def test_checks_pass_for_an_honest_model_and_cover_every_attack() -> None:
    patterns, data = template_task()
    result = evaluate(TemplateModel(patterns), data, ATTACKS, device=CPU, batch_size=30)
    assert set(result.checks) == {
        "eps0_equals_clean", "large_eps[linf]", "large_eps[l2]",
        "more_steps[pgd linf eps=0.15 steps=10 restarts=2]",
        "no_weaker_than_fgsm[pgd linf eps=0.15 steps=10 restarts=2]",
        "more_steps[pgd l2 eps=0.8 steps=10 restarts=1]",
    }
    failed = {name: check for name, check in result.checks.items() if not check["passed"]}
    assert not failed
    assert result.checks["large_eps[linf]"]["value"] <= 0.05


def test_large_eps_check_flags_masked_gradients() -> None:
    patterns, data = template_task()
    result = evaluate(TemplateModel(patterns, quantise=True), data, ATTACKS, device=CPU, batch_size=30)
    assert result.clean_accuracy == 1.0
    assert result.attacks[0].accuracy == 1.0  # PGD cannot move: the model looks robust
    for norm in ("linf", "l2"):
        check = result.checks[f"large_eps[{norm}]"]
        assert not check["passed"] and check["value"] > 0.5
    record = result.to_records("masked", "synthetic", "test", None, 0.0)[0]
    assert not all(check["passed"] for check in record.checks.values())


def test_eps0_check_flags_a_randomised_model() -> None:
    patterns, data = template_task()
    torch.manual_seed(0)
    result = evaluate(RandomisedModel(patterns), data, ATTACKS[:1], device=CPU, batch_size=30)
    assert not result.checks["eps0_equals_clean"]["passed"]


def test_binary_linear_model_worst_case_is_the_exact_attack() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    x = torch.rand(48, 1, 4, 4)
    with torch.no_grad():
        y = torch.where(model(x).flatten() > 0, 1, -1)
    y[::5] *= -1
    attacks = [PGDAttack(norm="linf", eps=0.05, steps=10), FGSMAttack(eps=0.05),
               ExactLinearAttack(norm="linf", eps=0.05),
               PGDAttack(norm="l2", eps=0.1, steps=10), ExactLinearAttack(norm="l2", eps=0.1)]
    result = evaluate(model, TensorDataset(x, y), attacks, device=CPU, batch_size=16)
    assert torch.equal(result.worst_case("linf", 0.05), result.attacks[2].correct)
    assert torch.equal(result.worst_case("l2", 0.1), result.attacks[4].correct)
    assert 0 < result.attacks[2].accuracy < result.clean_accuracy
    bounds = [name for name in result.checks if name.startswith("exact_is_lower_bound")]
    assert len(bounds) == 3 and all(result.checks[name]["passed"] for name in bounds)


def test_evaluation_reports_batches_restores_mode_and_can_be_cancelled() -> None:
    patterns, data = template_task()
    model = TemplateModel(patterns).train()
    seen: list[tuple[int, int]] = []
    evaluate(model, data, ATTACKS[:1], device=CPU, batch_size=25, checks=False,
             on_batch=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    with pytest.raises(Cancelled):
        evaluate(model, data, ATTACKS[:1], device=CPU, should_stop=lambda: True)


def test_the_same_seed_gives_the_same_result() -> None:
    patterns, data = template_task()
    model = TemplateModel(patterns)
    first, again = (evaluate(model, data, ATTACKS, device=CPU, seed=5, checks=False) for _ in range(2))
    assert all(torch.equal(a.correct, b.correct) for a, b in zip(first.attacks, again.attacks, strict=True))
    assert isinstance(first, EvaluationResult)


# --------------------------------------------------------------------------- the experiment kind


def _trained_binary_checkpoint(data_dir: Path, path: Path) -> Path:
    """A linear model on binary MNIST after 40 full-batch Adam steps (standard training)."""
    spec = EvaluateSpec.model_validate({"kind": "evaluate", "name": "x", "source": {"run": "r"},
                                        "dataset": {"name": "binary_mnist", "train_subset": 1000}})
    x, y = load_dataset(spec.dataset, data_dir, train=True).tensors()
    torch.manual_seed(0)
    model = build_model("linear", 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        optimizer.zero_grad()
        classification_loss(model(x), y, reduction="mean").backward()
        optimizer.step()
    meta = {"arch": "linear", "dataset": "binary_mnist", "num_classes": 2,
            "train_norm": "linf", "train_eps": 0.0}
    return save_checkpoint(path, model=model, optimizer=None, scheduler=None, epoch=40,
                           rng=capture_rng(), meta=meta)


def test_evaluate_experiment_on_a_binary_mnist_checkpoint(mnist_data_dir: Path, tmp_path: Path) -> None:
    checkpoint = _trained_binary_checkpoint(mnist_data_dir, tmp_path / "model.pt")
    spec = EvaluateSpec.model_validate({
        "kind": "evaluate", "name": "e3-eval", "source": {"run": "run-1"},
        "evaluation": {"subset": 200, "batch_size": 100, "attacks": [
            {"kind": "exact_linear", "norm": "linf", "eps": 0.2},
            {"kind": "pgd", "norm": "linf", "eps": 0.2, "steps": 20},
        ]},
    })
    reporter = MemoryReporter()
    ctx = RunContext(run_id="r", run_dir=tmp_path, device=CPU, reporter=reporter,
                     data_dir=mnist_data_dir, resolve_run_checkpoint=lambda run_id: checkpoint)
    run(spec, ctx)
    rows = {row["attack"]: row for row in reporter.rows()}
    assert set(rows) == {"none", "exact_linear", "pgd", "worst_case"}
    assert all(row["n"] == 200 and row["dataset"] == "binary_mnist" and row["model"] == "linear"
               and row["train_norm"] == "linf" and row["train_eps"] == 0.0 for row in rows.values())
    assert rows["none"]["accuracy"] > 0.9  # the paper's pattern: accurate, and not robust at 0.2
    assert rows["exact_linear"]["accuracy"] < rows["none"]["accuracy"] - 0.3
    assert rows["exact_linear"]["accuracy"] <= rows["pgd"]["accuracy"] <= rows["exact_linear"]["accuracy"] + 0.01
    assert all(check["passed"] for check in rows["none"]["checks"].values()), rows["none"]["checks"]
    assert reporter.last_progress == (2, 2, "evaluation")
    assert reporter.facts["checkpoint"] == str(checkpoint)
    # the data it read, as train runs record it (issue 11): hash, files, examples evaluated
    assert len(reporter.facts["data_hash"]) == 64 and reporter.facts["data_name"] == "binary_mnist"
    assert "MNIST/raw/t10k-images-idx3-ubyte" in reporter.facts["data_files"]
    assert reporter.facts["data_evaluated_examples"] == 200


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.pt"
    spec = EvaluateSpec.model_validate({"kind": "evaluate", "name": "e",
                                        "source": {"checkpoint": str(missing)}})
    ctx = RunContext(run_id="r", run_dir=tmp_path, device=CPU, reporter=MemoryReporter(),
                     data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        run(spec, ctx)
