"""AutoAttack: the composition (each component only on the points still standing, per-example
worst case), its versions, its rows in an evaluation, and the black-box check on a model whose
gradients are masked by a non-differentiable quantisation layer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from contract.specs.attacks import APGDAttack, AutoAttack, PGDAttack, SquareAttack
from contract.specs.evaluation import EvaluationConfig
from contract.specs.kinds import EvaluateSpec, TrainSpec
from tests.science.attack_cases import (
    MnistCase,
    Quantised,
    Recorder,
    accuracy,
    in_ball,
    train_small_cnn,
)
from workers.science.attacks import autoattack
from workers.science.attacks.autoattack import VERSIONS
from workers.science.evaluate import AttackSpec, evaluate, unpack_correct

CPU = torch.device("cpu")
STEPS, QUERIES = 10, 150
"""A cut-down budget: the composition is under test here, not the reference's strength."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_versions_are_the_reference_ones() -> None:
    assert VERSIONS["standard"] == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert VERSIONS["rand"] == ("apgd-ce", "apgd-dlr")
    assert set(VERSIONS["plus"]) == {"apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"}


def test_each_component_attacks_only_what_still_stands(robust_small_cnn: MnistCase) -> None:
    case = robust_small_cnn
    x, y = case.x[:100], case.y[:100]
    model = Recorder(case.model)
    result = autoattack(model, x, y, norm="linf", eps=0.3, steps=STEPS, queries=QUERIES,
                        generator=torch.Generator().manual_seed(0))
    assert [c.name for c in result.components] == list(VERSIONS["standard"])
    standing = result.clean
    for component in result.components:
        assert not (component.robust & ~standing).any(), "robustness only ever goes down"
        assert torch.equal(component.broke, standing & ~component.robust)
        assert component.seconds > 0
        standing = component.robust
    assert torch.equal(result.robust, standing)
    assert in_ball("linf", result.x_adv, x, 0.3)
    with torch.no_grad():
        at_points = case.model(result.x_adv).argmax(1) == y
    assert torch.equal(at_points & result.clean, result.robust), "x_adv is the worst case"
    largest = max(len(seen) for seen in model.inputs[1:])
    assert largest <= int(result.clean.sum()), "no component ever sees a misclassified point"
    assert accuracy(case.model, result.x_adv, y) < accuracy(case.model, x, y)


def test_rand_version_runs_eot_and_a_seed_fixes_the_result(robust_small_cnn: MnistCase) -> None:
    case = robust_small_cnn
    x, y = case.x[:16], case.y[:16]

    def run(seed: int) -> torch.Tensor:
        return autoattack(case.model, x, y, norm="l2", eps=1.5, version="rand", steps=2,
                          generator=torch.Generator().manual_seed(seed)).robust

    assert [c.name for c in autoattack(case.model, x, y, norm="l2", eps=1.5, version="rand",
                                       steps=2).components] == ["apgd-ce", "apgd-dlr"]
    assert torch.equal(run(1), run(1))


def test_autoattack_refuses_an_unknown_version() -> None:
    x, y = torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown AutoAttack version 'fast'"):
        autoattack(torch.nn.Flatten(), x, y, norm="linf", eps=0.1, version="fast")


def test_evaluation_rows_one_per_component_and_the_worst_case(
    robust_small_cnn: MnistCase, caplog: pytest.LogCaptureFixture
) -> None:
    case = robust_small_cnn
    data = TensorDataset(case.x[:48], case.y[:48])
    attacks: list[AttackSpec] = [PGDAttack(norm="linf", eps=0.3, steps=10, step_size=0.03),
                                 AutoAttack(norm="linf", eps=0.3, steps=STEPS, queries=QUERIES)]
    with caplog.at_level(logging.INFO, logger="workers.science.evaluate"):
        result = evaluate(case.model, data, attacks, device=CPU, batch_size=24)
    assert any("checks: +" in line and "forward-backward passes" in line
               for line in caplog.messages)
    records = result.to_records("small_cnn", "mnist", "test", "linf", 0.3)
    aa = [r for r in records if r.attack == "autoattack"]
    assert [r.variant for r in aa] == ["", "apgd-ce", "apgd-t", "fab-t", "square"]
    accuracies = [r.accuracy for r in aa[1:]]
    assert accuracies == sorted(accuracies, reverse=True), "accuracy after each, cumulative"
    assert aa[0].accuracy == aa[-1].accuracy
    assert all(r.details["seconds"] >= 0 for r in aa)
    assert len({r.key for r in records}) == len(records)
    worst = next(r for r in records if r.attack == "worst_case")
    bits = [torch.from_numpy(unpack_correct(r.per_example or b"", r.n))
            for r in records if r.attack in ("pgd", "autoattack") and r.variant == ""]
    assert torch.equal(torch.from_numpy(unpack_correct(worst.per_example or b"", worst.n)),
                       bits[0] & bits[1])
    clean = records[0]
    assert clean.details["check_cost"]["forward_passes"] > 0
    assert "blackbox_beats_whitebox[linf eps=0.3]" in result.checks


def test_checks_scope_first_batch_all_and_off(robust_small_cnn: MnistCase) -> None:
    case = robust_small_cnn
    data = TensorDataset(case.x[:60], case.y[:60])
    attacks = [PGDAttack(norm="linf", eps=0.3, steps=4, step_size=0.1)]
    costs = {}
    for scope in ("first_batch", "all", "off"):
        result = evaluate(case.model, data, attacks, device=CPU, batch_size=20, checks=scope)
        costs[scope] = result.check_cost.get("example_passes", 0)
        assert bool(result.checks) == (scope != "off")
    assert costs["off"] == 0 < costs["first_batch"] < costs["all"]
    assert costs["all"] == pytest.approx(3 * costs["first_batch"], rel=0.2)
    assert EvaluationConfig.model_validate({"checks": True}).checks == "first_batch"
    assert EvaluationConfig.model_validate({"checks": False}).checks == "off"


@pytest.fixture(scope="module")
def masked_cnn(mnist_data_dir: Path) -> MnistCase:
    """A standard small CNN behind input quantisation: gradients zero, decisions unchanged."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        case = train_small_cnn(mnist_data_dir, eps=0.0, epochs=2, n_test=60)
    finally:
        torch.set_num_threads(threads)
    return MnistCase(Quantised(case.model), case.x, case.y)


def test_masked_gradients_are_flagged_and_autoattack_still_breaks_the_model(
    masked_cnn: MnistCase,
) -> None:
    case = masked_cnn
    data = TensorDataset(case.x, case.y)
    attacks: list[AttackSpec] = [PGDAttack(norm="linf", eps=0.3, steps=10, step_size=0.03),
                                 APGDAttack(norm="linf", eps=0.3, steps=10),
               SquareAttack(norm="linf", eps=0.3, queries=200),
               AutoAttack(norm="linf", eps=0.3, steps=STEPS, queries=QUERIES)]
    result = evaluate(case.model, data, attacks, device=CPU, batch_size=60)
    assert result.clean_accuracy > 0.7
    pgd_acc, apgd_acc, square_acc, aa_acc = (o.accuracy for o in result.attacks)
    assert pgd_acc > 0.3 and apgd_acc > 0.3, "white-box attacks stall on zero gradients"
    assert square_acc < 0.1, "the black box breaks the model anyway"
    assert aa_acc < min(pgd_acc, apgd_acc) / 2, "and so does AutoAttack (through Square)"
    flagged = result.checks["blackbox_beats_whitebox[linf eps=0.3]"]
    assert not flagged["passed"] and flagged["value"] > 10


def test_bad_spec_values_are_one_line_errors() -> None:
    base = {"kind": "evaluate", "name": "e", "source": {"checkpoint": "m.pt"}}
    for attack, needle in [
        ({"kind": "square", "norm": "linf", "eps": 0.3, "queries": 0}, "greater than or equal to 1"),
        ({"kind": "autoattack", "norm": "linf", "eps": 0.3, "version": "fast"}, "'standard', 'plus' or 'rand'"),
        ({"kind": "apgd", "norm": "linf", "eps": 0.3, "targeted": True, "n_target_classes": 10},
         "below the dataset's 10 classes"),
        ({"kind": "fab", "norm": "l2", "eps": 1.5, "n_target_classes": 12}, "below the dataset's 10"),
    ]:
        with pytest.raises(ValueError, match=needle):
            EvaluateSpec.model_validate({**base, "dataset": {"name": "mnist"},
                                         "evaluation": {"attacks": [attack]}})
    with pytest.raises(ValueError, match="below the dataset's 2 classes"):
        TrainSpec.model_validate({"kind": "train", "name": "t", "dataset": {"name": "binary_mnist"},
                                  "model": {"arch": "linear"},
                                  "evaluation": {"attacks": [{"kind": "autoattack", "norm": "linf",
                                                              "eps": 0.2}]}})
    untargeted = EvaluateSpec.model_validate({**base, "dataset": {"name": "binary_mnist"},
                                              "evaluation": {"attacks": [
                                                  {"kind": "apgd", "norm": "linf", "eps": 0.2}]}})
    assert untargeted.evaluation.attacks[0].kind == "apgd"
