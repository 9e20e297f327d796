"""YAML -> validated spec: numbers, messages, lines, overrides, and the shipped specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.specs.kinds import SPEC_KINDS, EvaluateSpec, TheorySpec, TrainSpec
from contract.specs.loading import (
    LoadedSpec,
    Problem,
    SpecError,
    load_spec_file,
    load_spec_text,
    parse_override,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "specs").rglob("*.yaml"))

THEORY = """\
name: e1_small
kind: theory
distribution: {p: 0.7, d: 100, eta: 0.3}
eps: [0.6]
"""

TRAIN = """\
name: mnist_pgd
kind: train
dataset:
  name: mnist
  train_subset: 1000
model: {arch: mnist_cnn}
adversary: {norm: linf, eps: 0.3}
evaluation:
  attacks:
    - {kind: pgd, norm: linf, eps: 0.3, steps: 10}
    - {kind: fgsm, eps: 0.3}
"""

EVALUATE = """\
name: attack_checkpoint
kind: evaluate
source: {run: 0123456789ab}
evaluation:
  attacks: [{kind: pgd, norm: l2, eps: 1.5}]
"""


def problems_of(text: str, overrides: tuple[str, ...] = ()) -> list[Problem]:
    with pytest.raises(SpecError) as raised:
        load_spec_text(text, "spec.yaml", overrides)
    return raised.value.problems


def only_problem(text: str, overrides: tuple[str, ...] = ()) -> Problem:
    problems = problems_of(text, overrides)
    assert len(problems) == 1, problems
    return problems[0]


# --------------------------------------------------------------------------- valid specs


@pytest.mark.parametrize(
    ("text", "model"), [(THEORY, TheorySpec), (TRAIN, TrainSpec), (EVALUATE, EvaluateSpec)]
)
def test_each_kind_loads_into_its_model(text: str, model: type) -> None:
    loaded = load_spec_text(text, "spec.yaml")
    assert isinstance(loaded, LoadedSpec)
    assert isinstance(loaded.spec, model)
    assert SPEC_KINDS[loaded.spec.kind] is model
    assert loaded.source_yaml == text
    assert loaded.source_path is None
    assert loaded.overrides == ()


def test_a_file_keeps_its_path_and_text(tmp_path: Path) -> None:
    path = tmp_path / "e1.yaml"
    path.write_text(THEORY)
    loaded = load_spec_file(path, ["seed=3"])
    assert loaded.source_path == str(path)
    assert loaded.source_yaml == THEORY
    assert loaded.overrides == ("seed=3",)
    assert loaded.spec.seed == 3


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_spec_loads(path: Path) -> None:
    assert load_spec_file(path).spec.name


# --------------------------------------------------------------------------- numbers


def test_fractions_are_parsed_without_eval() -> None:
    adversary = "adversary: {norm: linf, eps: 0.3}"
    spec = load_spec_text(TRAIN.replace(adversary, "adversary: {eps: 8/255}")).spec
    assert spec.adversary.eps == 8 / 255
    problem = only_problem(TRAIN.replace(adversary, "adversary: {eps: __import__('os')}"))
    assert (problem.line, problem.path) == (7, "adversary.eps")


def test_e_notation_is_a_number_everywhere() -> None:
    text = THEORY + "n_train: 1e3\nsvm_c: 1e-3\n"
    spec = load_spec_text(text, overrides=["distribution.eta=2.5e-1", "eps=[1e-3, 8/255]"]).spec
    assert spec.n_train == 1000 and isinstance(spec.n_train, int)
    assert spec.svm_c == 0.001
    assert spec.distribution.eta == 0.25
    assert spec.eps == [0.001, 8 / 255]


def test_sweep_and_override_values_take_fractions_and_e_notation() -> None:
    spec = load_spec_text(TRAIN + "sweep:\n  adversary.eps: [0, 8/255, 1e-3]\n",
                          overrides=["adversary.eps=2/255"]).spec
    assert spec.adversary.eps == 2 / 255
    assert spec.sweep == {"adversary.eps": [0.0, 8 / 255, 0.001]}  # normalised at load time


# --------------------------------------------------------------------------- messages


def test_problem_renders_file_line_path_message() -> None:
    assert str(Problem("s.yaml", 12, "distribution.p", "must be in (0.5, 1)")) == \
        "s.yaml:12 distribution.p: must be in (0.5, 1)"
    assert str(Problem("s.yaml", None, "seed", "must be >= 0")) == "s.yaml seed: must be >= 0"
    assert str(Problem("s.yaml", 3, "", "YAML syntax error: x")) == "s.yaml:3: YAML syntax error: x"
    error = SpecError([Problem("a", 1, "x", "m"), Problem("a", 2, "y", "n")])
    assert str(error) == "a:1 x: m\na:2 y: n"


def test_every_problem_is_reported_at_once() -> None:
    text = THEORY + "seed: -1\ncolour: red\nn_test: lots\n"
    problems = problems_of(text)
    assert [(p.line, p.path) for p in problems] == [(5, "seed"), (6, "colour"), (7, "n_test")]


def test_unknown_kind_lists_the_registered_kinds() -> None:
    problem = only_problem("name: x\nkind: attack\n")
    assert (problem.line, problem.path) == (2, "kind")
    for kind in SPEC_KINDS:
        assert repr(kind) in problem.message


def test_unknown_field_suggests_the_nearest_field() -> None:
    problem = only_problem(THEORY + "n_tran: 5\n")
    assert problem.message == "unknown field 'n_tran' (did you mean 'n_train'?)"


def test_missing_nested_field_points_at_its_parent_mapping() -> None:
    text = TRAIN.replace("  name: mnist\n", "")
    problem = only_problem(text)
    assert (problem.line, problem.path, problem.message) == (3, "dataset.name", "field required")


def test_literal_choices_are_listed() -> None:
    problem = only_problem(TRAIN.replace("{norm: linf, eps: 0.3}", "{norm: linfinity, eps: 0.3}"))
    assert problem.message == "must be one of 'linf', 'l2' (got 'linfinity')"


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as raised:
        load_spec_file(tmp_path / "nope.yaml")
    assert [str(p) for p in raised.value.problems] == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_yaml_syntax_error_names_its_line() -> None:
    problem = only_problem("name: x\nkind: theory\neps: [0.1\nseed: 1\n")
    assert str(problem).startswith("spec.yaml:4: YAML syntax error: ")


# --------------------------------------------------------------------------- overrides


def test_parse_override_reads_the_value_as_yaml() -> None:
    assert parse_override("eps=[0,0.1]") == ("eps", [0, 0.1])
    assert parse_override("distribution.p=0.8") == ("distribution.p", 0.8)
    assert parse_override("description=a=b") == ("description", "a=b")
    assert parse_override("sweep.adversary.eps=[0, 8/255]") == ("sweep.adversary.eps", [0, "8/255"])


@pytest.mark.parametrize("item", ["foo", "=3", "a..b=1", "eps=[0,"])
def test_a_malformed_override_names_the_set(item: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_override(item)
    assert str(raised.value).startswith(f"--set {item}: ")
    with pytest.raises(SpecError) as raised:
        load_spec_text(THEORY, overrides=["seed=1", item])
    assert [p.file for p in raised.value.problems] == [f"--set {item}"]


def test_overrides_reach_any_field() -> None:
    spec = load_spec_text(TRAIN, overrides=[
        "evaluation.attacks.0.eps=0.1", "training.optimizer.lr=0.01", "sweep.adversary.eps=[0,0.1]",
        "model.arch=linear",
    ]).spec
    assert spec.evaluation.attacks[0].eps == 0.1
    assert spec.evaluation.attacks[1].eps == 0.3
    assert spec.training.optimizer.lr == 0.01
    assert spec.sweep == {"adversary.eps": [0.0, 0.1]}
    assert spec.model.arch == "linear"
    theory = load_spec_text(THEORY, overrides=["eps=[0,0.1]", "distribution.p=0.8"]).spec
    assert theory.eps == [0.0, 0.1] and theory.distribution.p == 0.8


def test_overrides_apply_before_validation() -> None:
    broken = THEORY.replace("p: 0.7", "p: 1.7")
    assert load_spec_text(broken, overrides=["distribution.p=0.6"]).spec.distribution.p == 0.6


def test_a_bad_overridden_value_blames_the_set() -> None:
    problem = only_problem(THEORY, ("distribution.p=1.5",))
    assert problem.line is None
    assert str(problem) == \
        "spec.yaml distribution.p: must be in (0.5, 1) (got 1.5) (from --set distribution.p=1.5)"


def test_a_mapping_created_by_a_set_blames_the_set() -> None:
    problem = only_problem(EVALUATE, ("dataset.train_subset=10",))
    assert problem.path == "dataset.name"
    assert problem.message.endswith("(from --set dataset.train_subset=10)")


def test_an_override_through_a_list_needs_an_index_in_range() -> None:
    with pytest.raises(SpecError) as raised:
        load_spec_text(TRAIN, overrides=["evaluation.attacks.2.eps=0.1"])
    assert str(raised.value) == ("--set evaluation.attacks.2.eps=0.1: evaluation.attacks has 2 "
                                 "item(s): there is no item 2")
