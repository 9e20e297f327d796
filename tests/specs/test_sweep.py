"""Sweep expansion (grid size, order, values) and dotted-path assignment."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.specs.loading import load_spec_file, load_spec_text
from contract.specs.sweep import Cell, expand, get_path, grid, set_path

REPO = Path(__file__).resolve().parents[2]

THEORY = """\
name: e1_grid
kind: theory
distribution: {p: 0.7, d: 100, eta: 0.3}
"""

TRAIN = """\
name: mnist_grid
kind: train
dataset: {name: mnist}
model: {arch: linear}
evaluation:
  attacks: [{kind: pgd, norm: linf, eps: 0.3, steps: 10}]
"""


def test_a_spec_without_sweep_is_one_cell() -> None:
    spec = load_spec_text(THEORY).spec
    assert expand(spec) == [Cell(0, {}, spec)]


def test_the_grid_is_the_cartesian_product_in_the_order_written() -> None:
    spec = load_spec_text(THEORY + "sweep:\n  seed: [1, 2, 3]\n  device: [cpu, cuda]\n").spec
    cells = expand(spec)
    assert [cell.index for cell in cells] == list(range(6))
    assert [(c.params["seed"], c.params["device"]) for c in cells] == [
        (1, "cpu"), (1, "cuda"), (2, "cpu"), (2, "cuda"), (3, "cpu"), (3, "cuda")]
    for cell in cells:
        assert list(cell.params) == ["seed", "device"]
        assert (cell.spec.seed, cell.spec.device) == (cell.params["seed"], cell.params["device"])
        assert cell.spec.sweep == {}
        assert cell.spec.distribution == spec.distribution  # the rest is the base spec's


def test_grid_size_is_the_product_of_the_list_lengths() -> None:
    sweep = {"a": [1, 2, 3], "b": [4, 5], "c": [6, 7, 8, 9]}
    assert len(grid(sweep)) == 3 * 2 * 4
    assert len({tuple(params.values()) for params in grid(sweep)}) == 24


def test_params_hold_the_validated_values() -> None:
    spec = load_spec_text(TRAIN + "sweep:\n  adversary.eps: [0, 8/255, 1e-3]\n").spec
    cells = expand(spec)
    assert [cell.params for cell in cells] == [
        {"adversary.eps": 0.0}, {"adversary.eps": 8 / 255}, {"adversary.eps": 0.001}]
    assert [cell.spec.adversary.eps for cell in cells] == [0.0, 8 / 255, 0.001]


def test_a_sweep_can_reach_into_lists_and_swap_an_attack_kind() -> None:
    text = TRAIN + (
        "sweep:\n"
        "  evaluation.attacks.0:\n"
        "    - {kind: fgsm, eps: 0.1}\n"
        "    - {kind: exact_linear, norm: l2, eps: 2}\n"
        "  evaluation.attacks.0.eps: [0.5]\n"
    )
    cells = expand(load_spec_text(text).spec)
    attacks = [cell.spec.evaluation.attacks[0] for cell in cells]
    assert [(a.kind, a.norm, a.eps) for a in attacks] == [("fgsm", "linf", 0.5),
                                                         ("exact_linear", "l2", 0.5)]


def test_the_quickstart_sweeps_standard_and_adversarial_training() -> None:
    cells = expand(load_spec_file(REPO / "specs" / "quickstart.yaml").spec)
    assert [cell.spec.adversary.eps for cell in cells] == [0.0, 0.25]


def test_set_path_creates_missing_mappings_and_replaces_null() -> None:
    data: dict = {"dataset": None, "evaluation": {"attacks": [{"eps": 1}]}}
    set_path(data, "dataset.name", "mnist")
    set_path(data, "training.optimizer.lr", 0.1)
    set_path(data, "evaluation.attacks.0.eps", 0.5)
    set_path(data, "sweep.adversary.eps", [0, 1])
    assert data == {
        "dataset": {"name": "mnist"},
        "evaluation": {"attacks": [{"eps": 0.5}]},
        "training": {"optimizer": {"lr": 0.1}},
        "sweep": {"adversary.eps": [0, 1]},
    }
    assert get_path(data, "evaluation.attacks.0.eps") == 0.5
    assert get_path(data, "sweep.adversary.eps") == [0, 1]


@pytest.mark.parametrize(("dotted", "message"), [
    ("name.x", "name is 'x', not a mapping"),
    ("items.first", "items is a list: address its items by number, e.g. items.0"),
    ("items.5", "items has 2 item(s): there is no item 5"),
    ("a..b", "'a..b' is not a dotted field path"),
])
def test_set_path_refuses_impossible_paths(dotted: str, message: str) -> None:
    data = {"name": "x", "items": [1, 2]}
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        set_path(data, dotted, 0)
    assert data == {"name": "x", "items": [1, 2]}
