"""Figure 1's aggregation rule: mean ± std over seeds of one spec, the newest spec per cell,
experiments apart, every attack kept, standard models shared, non-image datasets left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.analysis.claims import beta_claim
from service.analysis.common import RunRecord
from service.analysis.figure1 import (
    Figure1Point,
    FrontierKey,
    figure1_frame,
    figure1_points,
    standard_curves,
    trades_frontiers,
)
from service.analysis.paper import Scale

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(run_id: str, minutes: int, *, seed: int = 0, epochs: int = 10, experiment: str = "e2",
        kind: str = "train") -> RunRecord:
    spec = {"name": experiment, "seed": seed, "training": {"epochs": epochs}}
    return RunRecord(run_id, experiment, kind, T0 + timedelta(minutes=minutes), seed, spec)


def row(run_id: str, accuracy: float, *, eps: float = 0.0, norm: str | None = "linf",
        attack: str = "none", eval_eps: float = 0.0, dataset: str = "mnist",
        experiment: str = "e2", method: str | None = None, kind: str = "train",
        n: int = 100) -> dict[str, Any]:
    return {"run_id": run_id, "experiment": experiment, "kind": kind, "model": "cnn",
            "dataset": dataset, "split": "test", "train_norm": norm, "train_eps": eps,
            "train_method": method, "eval_norm": None if attack == "none" else norm,
            "eval_eps": eval_eps, "attack": attack, "accuracy": accuracy, "n": n, "variant": ""}


def test_repeats_of_one_spec_are_averaged_and_the_newest_spec_wins() -> None:
    runs = [run("old", 0, epochs=2), run("a", 1, seed=0), run("b", 2, seed=1)]
    rows = [row("old", 0.10, eps=0.3), row("a", 0.80, eps=0.3), row("b", 0.90, eps=0.3)]
    (point,) = figure1_points(rows, runs)
    assert point.run_ids == ("a", "b"), "the 2-epoch spec is older: left out, not averaged"
    assert point.accuracy == pytest.approx(0.85)
    assert point.accuracy_std == pytest.approx(0.0707107, rel=1e-5)
    assert (point.seeds, point.n) == (2, 200)


def test_a_newer_spec_replaces_older_repeats() -> None:
    runs = [run("a", 0), run("b", 1, seed=1), run("new", 5, epochs=20)]
    rows = [row("a", 0.80), row("b", 0.90), row("new", 0.95)]
    (point,) = figure1_points(rows, runs)
    assert (point.run_ids, point.accuracy, point.accuracy_std) == (("new",), 0.95, None)


def test_every_attack_has_its_points_worst_per_run() -> None:
    runs = [run("r", 0)]
    rows = [row("r", 0.9, eps=0.3), row("r", 0.5, eps=0.3, attack="pgd", eval_eps=0.3),
            row("r", 0.4, eps=0.3, attack="pgd", eval_eps=0.3),  # 100 steps: worse
            row("r", 0.3, eps=0.3, attack="autoattack", eval_eps=0.3)]
    points = {p.attack: p.accuracy for p in figure1_points(rows, runs)}
    assert points == {"none": 0.9, "pgd": 0.4, "autoattack": 0.3}
    frame = figure1_frame(figure1_points(rows, runs))
    assert set(frame["attack"]) == {"none", "pgd", "autoattack"}


def test_experiments_methods_and_datasets_stay_apart() -> None:
    runs = [run("e", 0), run("q", 1, experiment="quickstart"), run("t", 2),
            run("bin", 3), run("th", 4, kind="theory")]
    rows = [row("e", 0.9), row("q", 0.5, experiment="quickstart"),
            row("t", 0.8, eps=0.3, method="trades"), row("bin", 0.99, dataset="binary_mnist"),
            row("th", 0.7, dataset="theory", kind="theory")]
    curves = standard_curves(figure1_points(rows, runs))
    assert set(curves) == {("mnist", "linf", "e2", None, "cnn"),
                           ("mnist", "linf", "e2", "trades", "cnn"),
                           ("mnist", "linf", "quickstart", None, "cnn")}
    trades = curves[("mnist", "linf", "e2", "trades", "cnn")]
    assert [(p.train_eps, p.run_ids) for p in trades] == [(0.0, ("e",)), (0.3, ("t",))], \
        "a TRADES curve starts at the experiment's standard model"


def test_a_curve_without_eps_0_borrows_the_standard_model() -> None:
    runs = [run("std", 0), run("l2", 1)]
    rows = [row("std", 0.99), row("l2", 0.95, eps=1.5, norm="l2")]
    curves = standard_curves(figure1_points(rows, runs))
    assert [p.run_ids for p in curves[("mnist", "l2", "e2", None, "cnn")]] == [("std",), ("l2",)]


def trades(run_id: str, minutes: int, beta: float, experiment: str = "e2") -> RunRecord:
    spec = {"name": experiment, "seed": 0, "training": {"epochs": 10},
            "adversary": {"method": "trades", "eps": 0.1, "beta": beta}}
    return RunRecord(run_id, experiment, "train", T0 + timedelta(minutes=minutes), 0, spec)


def test_a_trades_beta_sweep_keeps_one_curve_per_beta() -> None:
    runs = [run("std", 0), trades("b1", 1, 1.0), trades("b6", 2, 6.0)]
    rows = [row("std", 0.90), row("b1", 0.85, eps=0.1, method="trades"),
            row("b6", 0.80, eps=0.1, method="trades")]
    curves = standard_curves(figure1_points(rows, runs))
    by_beta = {key[3]: [(p.train_eps, p.accuracy) for p in points]
               for key, points in curves.items() if key[3] and key[3].startswith("trades")}
    assert by_beta == {"trades β=1": [(0.0, 0.90), (0.1, 0.85)],
                       "trades β=6": [(0.0, 0.90), (0.1, 0.80)]}, \
        "the newer β must not hide the older one: each β is a point of the frontier"


def frontier_of(accuracies: dict[float, float],
                n: int = 2000) -> tuple[FrontierKey, list[tuple[float, Figure1Point]]]:
    """The one TRADES frontier of a β sweep without a standard model (its own experiment)."""
    runs = [trades(f"b{beta:g}", i, beta, "tr") for i, beta in enumerate(accuracies)]
    rows = [row(f"b{beta:g}", accuracy, eps=0.1, method="trades", experiment="tr", n=n)
            for beta, accuracy in accuracies.items()]
    ((key, points),) = trades_frontiers(standard_curves(figure1_points(rows, runs))).items()
    return key, points


def test_a_beta_sweep_is_one_frontier_ordered_by_beta() -> None:
    key, points = frontier_of({6.0: 0.70, 0.5: 0.80, 1.0: 0.78})
    assert key == ("mnist", "linf", "tr", "cnn", 0.1)
    assert [(beta, p.accuracy) for beta, p in points] == [(0.5, 0.80), (1.0, 0.78), (6.0, 0.70)]


@pytest.mark.parametrize(("accuracies", "verdict"), [
    ({0.5: 0.80, 1.0: 0.78, 6.0: 0.70}, "holds"),
    ({0.5: 0.80, 1.0: 0.805, 6.0: 0.70}, "holds"),  # a rise within sampling noise
    ({0.5: 0.70, 1.0: 0.78, 6.0: 0.80}, "does not hold"),  # robustness bought nothing
    ({0.5: 0.80, 1.0: 0.70, 6.0: 0.79}, "does not hold"),  # falls, then rises beyond noise
    ({6.0: 0.70}, "no data"),
])
def test_the_trades_claim_is_that_standard_accuracy_falls_as_beta_grows(
    accuracies: dict[float, float], verdict: str
) -> None:
    key, points = frontier_of(accuracies)
    claim = beta_claim(key, points)
    assert claim.verdict == verdict, claim.evidence
    assert "β" in claim.text and claim.section == "Figure 1 (tr)"


def test_the_trades_claim_is_not_judged_on_a_few_epochs() -> None:
    key, points = frontier_of({0.5: 0.80, 6.0: 0.70})
    few = Scale(train_examples=4000, epochs=2, test_examples=1000)
    assert beta_claim(key, points, few).verdict == "no data"
