"""The Trade-offs charts' data: Figure 1's points, the standard/adversarial pairs with
Theorem 2.1's bound, and the top-k curve, checked against the seeded store and closed forms."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboard import charts
from service.store import queries
from tests.dashboard.seed import FIG1_EPS, THEORY_ETA, THEORY_P, TOPK, Seeded


@pytest.fixture(scope="module")
def evaluations(seeded: Seeded) -> pd.DataFrame:
    return queries.evaluations_frame(seeded.url)


def test_bound_is_p_over_1_minus_p_times_the_error() -> None:
    bound = charts.bound_data([0.7, 0.7, 0.9], points=11)
    assert bound["bound"].nunique() == 2 and len(bound) == 22
    seven = bound[bound["bound"] == "Theorem 2.1, p=0.7"]
    assert seven["adv_accuracy"].tolist() == pytest.approx(
        [7 / 3 * (1 - x) for x in seven["std_accuracy"]])
    assert seven["std_accuracy"].iloc[0] == pytest.approx(0.4 / 0.7), "where the bound reaches 1"
    assert seven["adv_accuracy"].iloc[0] == pytest.approx(1.0)
    assert (seven["std_accuracy"].iloc[-1], seven["adv_accuracy"].iloc[-1]) == (1.0, 0.0)
    nine = bound[bound["bound"] == "Theorem 2.1, p=0.9"]
    assert nine["adv_accuracy"].iloc[0] == pytest.approx(1.0)
    assert nine["std_accuracy"].iloc[0] == pytest.approx(0.8 / 0.9)


def test_figure1_has_one_point_per_dataset_norm_and_eps(evaluations: pd.DataFrame) -> None:
    data = charts.figure1_data(evaluations)
    mnist = data[data["dataset"] != "theory"]
    expected = {(d, n, e) for (d, n), radii in FIG1_EPS.items() for e in radii}
    assert set(zip(mnist["dataset"], mnist["train_norm"], mnist["train_eps"], strict=True)) \
        == expected
    assert mnist["accuracy"].tolist() == pytest.approx([0.99 - 0.05 * e for e in mnist["train_eps"]])
    assert (mnist["runs"] == 1).all()


def test_figure1_standard_theory_model_starts_each_norm_curve(evaluations: pd.DataFrame) -> None:
    theory = charts.figure1_data(evaluations).query("dataset == 'theory'")
    svm = theory[theory["model"] == "svm"].set_index("train_eps")
    assert list(svm["train_norm"]) == ["linf", "linf"], "the eps 0 point joins the linf curve"
    assert svm.loc[0.0, "accuracy"] == 0.995 and svm.loc[2 * THEORY_ETA, "accuracy"] == THEORY_P
    averaging = theory[theory["model"] == "averaging"]
    assert list(averaging["train_norm"]) == [charts.STANDARD_NORM], "no robust run to join"


def test_figure1_averages_repeated_runs_within_an_experiment_only() -> None:
    rows = pd.DataFrame([
        {"run_id": r, "experiment": e, "dataset": "mnist", "model": "m", "train_norm": "linf",
         "train_eps": 0.3, "attack": "none", "eval_eps": 0.0, "variant": "", "accuracy": a,
         "n": 100}
        for r, e, a in (("a", "e2", 0.8), ("b", "e2", 0.9), ("c", "quickstart", 0.5))
    ])
    data = charts.figure1_data(rows).set_index("experiment")
    assert len(data) == 2
    assert data.loc["e2", "accuracy"] == pytest.approx(0.85)
    assert data.loc["e2", "runs"] == 2 and data.loc["e2", "n"] == 200
    assert data.loc["quickstart", "accuracy"] == 0.5 and data.loc["quickstart", "runs"] == 1


def test_pairs_put_each_attack_beside_its_models_standard_accuracy(
    evaluations: pd.DataFrame, seeded: Seeded
) -> None:
    pairs = charts.adversarial_pairs(evaluations, queries.theory_parameters(seeded.url))
    fig1 = pairs[pairs["experiment"].str.startswith("fig1")]
    assert len(fig1) == len(seeded.fig1)
    assert fig1["std_accuracy"].tolist() == pytest.approx([0.99 - 0.05 * e for e in fig1["train_eps"]])
    assert fig1["bound_applies"].isna().all(), "the bound is about the theory distribution only"
    assert set(fig1["theorem_2_1"]) == {charts.NO_BOUND}
    theory = pairs[pairs["run_id"] == seeded.theory]
    assert len(theory) == 3, "transfer rows have no standard accuracy of their own"
    assert theory["bound_applies"].all(), "evaluated at eps = 2 * eta"
    assert set(theory["theorem_2_1"]) == {charts.BOUND_APPLIES}
    bound = theory["p"] / (1 - theory["p"]) * (1 - theory["std_accuracy"])
    assert (theory["adv_accuracy"] <= bound + 1e-9).all()


def test_bound_applies_only_from_twice_eta() -> None:
    base = {"run_id": "t", "experiment": "e", "kind": "theory", "model": "svm",
            "dataset": "theory", "split": "test", "train_norm": None, "train_eps": 0.0,
            "variant": "", "n": 100}
    rows = pd.DataFrame([
        base | {"attack": "none", "eval_norm": None, "eval_eps": 0.0, "accuracy": 0.99},
        *(base | {"attack": "exact_linear", "eval_norm": "linf", "eval_eps": eps, "accuracy": a}
          for eps, a in ((0.1, 0.6), (0.2, 0.01), (0.3, 0.0))),
    ])
    theory = pd.DataFrame([{"run_id": "t", "p": 0.7, "d": 100, "eta": 0.1}])
    pairs = charts.adversarial_pairs(rows, theory).set_index("eval_eps")
    assert pairs["theorem_2_1"].to_dict() == {0.1: charts.BOUND_OUTSIDE, 0.2: charts.BOUND_APPLIES,
                                              0.3: charts.BOUND_APPLIES}
    assert (pairs["std_accuracy"] == 0.99).all()


def test_averaging_classifier_sits_at_its_closed_form(evaluations: pd.DataFrame,
                                                      seeded: Seeded) -> None:
    pairs = charts.adversarial_pairs(evaluations, queries.theory_parameters(seeded.url))
    averaging = pairs[pairs["model"] == "averaging"].iloc[0]
    phi = 0.5 * (1 + math.erf(4 / math.sqrt(2)))
    assert averaging["std_accuracy"] == pytest.approx(phi)
    assert averaging["adv_accuracy"] == pytest.approx(1 - phi)


def test_topk_curve(evaluations: pd.DataFrame) -> None:
    data = charts.topk_data(evaluations)
    assert sorted(data["k"].unique()) == TOPK
    standard = data[data["series"] == "standard"].set_index("k")["accuracy"]
    adversarial = data[data["series"] == "adversarial (exact_linear, ε=0.2)"]
    assert standard.to_dict() == pytest.approx({k: 0.9 + k / 10_000 for k in TOPK})
    assert adversarial["accuracy"].tolist() == pytest.approx([0.8 - k / 1000 for k in TOPK])
    assert charts.topk_data(evaluations[evaluations["variant"] == ""]).empty


def test_charts_build_valid_vega_lite(evaluations: pd.DataFrame, seeded: Seeded) -> None:
    pairs = charts.adversarial_pairs(evaluations, queries.theory_parameters(seeded.url))
    for chart in (charts.figure1_chart(charts.figure1_data(evaluations)),
                  charts.tradeoff_chart(pairs, charts.bound_data([THEORY_P])),
                  charts.topk_chart(charts.topk_data(evaluations))):
        chart.to_dict(validate=True)
