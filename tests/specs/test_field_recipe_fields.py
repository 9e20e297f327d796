"""The recipe fields (schedules, nesterov, EMA, validation, selection): one-line refusals, and
hashes that stay put while a spec leaves them at their defaults."""

from __future__ import annotations

import pytest

from contract.specs.hashing import spec_hash
from contract.specs.loading import SpecError, load_spec_text

BASE = """\
name: recipe
kind: train
dataset: {name: mnist, train_subset: 100}
model: {arch: mnist_cnn}
adversary: {norm: linf, eps: 0.3}
"""


def hash_of(*overrides: str) -> str:
    return spec_hash(load_spec_text(BASE, overrides=overrides).spec)


def test_the_new_fields_at_their_defaults_leave_the_hash_unchanged() -> None:
    written_out = hash_of(
        "training.optimizer.nesterov=false", "training.ema=null", "training.select=final",
        "training.validation_attack=null", "training.schedule.peak=0.4",
        "training.schedule.points=[]", "training.schedule.warmup_epochs=0",
        "dataset.validation=null", "evaluation.checkpoints=null",
    )
    assert written_out == hash_of()


@pytest.mark.parametrize("override", [
    "training.optimizer.nesterov=true", "training.ema=0.999", "training.schedule.kind=one_cycle",
    "training.schedule.warmup_epochs=1", "dataset.validation=10",
    "training.validation_attack={kind: pgd, norm: linf, eps: 0.2, steps: 5}",
])
def test_setting_a_new_field_changes_the_hash(override: str) -> None:
    assert hash_of(override) != hash_of()


@pytest.mark.parametrize(("overrides", "says"), [
    (["training.schedule={kind: one_cycle, peak: 1}"], "peak must be in (0, 1), got 1.0"),
    (["training.schedule={kind: one_cycle, peak: 0}"], "peak must be in (0, 1)"),
    (["training.schedule={kind: piecewise, points: [[2, 0.1], [1, 0.1]]}"],
     "points must not decrease in epoch"),
    (["training.schedule={kind: piecewise, points: [[0, -0.1]]}"], "must be >= 0"),
    (["training.schedule={kind: piecewise, points: [[-1, 0.1]]}"], "must be >= 0"),
    (["training.schedule.kind=piecewise"], "kind piecewise needs points"),
    (["training.schedule.points=[[0, 1]]"], "points are for kind piecewise"),
    (["training.schedule.warmup_epochs=-1"], "warmup_epochs must be >= 0"),
    (["training.optimizer={name: adam, nesterov: true}"], "nesterov needs name: sgd"),
    (["training.optimizer={momentum: 0, nesterov: true}"], "momentum > 0"),
    (["training.ema=1"], "ema is a decay in (0, 1)"),
    (["training.select=best_robust"], "needs a validation split: set dataset.validation"),
    (["training.select=best_clean"], "needs a validation split"),
    (["adversary.eps=0", "dataset.validation=10", "training.select=best_robust"],
     "needs a validation attack"),
    (["evaluation.checkpoints=[best]"], "'best' needs training.select best_robust or best_clean"),
    (["evaluation.checkpoints=[latest]"], "evaluation.checkpoints.0"),
    (["dataset.validation=0"], "dataset.validation"),
    (["dataset.validation=100"], "validation 100 leaves none of the train_subset 100"),
])
def test_impossible_recipes_are_refused_in_one_line(overrides: list[str], says: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_spec_text(BASE, overrides=overrides)
    message = str(raised.value)
    assert says in message and "\n" not in message.strip(), message


def test_best_robust_with_standard_training_is_fine_given_a_validation_attack() -> None:
    spec = load_spec_text(BASE, overrides=[
        "adversary.eps=0", "dataset.validation=10", "training.select=best_robust",
        "training.validation_attack={kind: pgd, norm: l2, eps: 1, steps: 5}"]).spec
    attack = spec.training.resolved_validation_attack(spec.adversary)  # type: ignore[union-attr]
    assert (attack.norm, attack.eps, attack.steps) == ("l2", 1.0, 5)


def test_the_default_validation_attack_is_pgd10_at_the_training_threat() -> None:
    spec = load_spec_text(BASE, overrides=["dataset.validation=10"]).spec
    attack = spec.training.resolved_validation_attack(spec.adversary)  # type: ignore[union-attr]
    assert (attack.kind, attack.norm, attack.eps, attack.steps) == ("pgd", "linf", 0.3, 10)
    evaluation = spec.evaluation  # type: ignore[union-attr]
    assert evaluation.resolved_checkpoints("final") == ["final"]
    assert evaluation.resolved_checkpoints("best_robust") == ["best"]


def test_checkpoints_belong_to_train_runs() -> None:
    with pytest.raises(SpecError, match="evaluation.checkpoints is for train runs"):
        load_spec_text("name: e\nkind: evaluate\nsource: {run: abc}\n"
                       "evaluation: {checkpoints: [final]}\n")


def test_a_visualize_spec_with_a_validation_split_is_refused_in_one_line() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "specs/paper/e4_large_eps.yaml").read_text()
    load_spec_text(text)  # valid as shipped
    with pytest.raises(SpecError) as refused:
        load_spec_text(text, overrides=["dataset.validation=100"])
    message = str(refused.value)
    assert "dataset.validation is for train runs" in message and len(message.splitlines()) == 1
