"""The dashboard's chart data over the seeded store: Figure 1 per image dataset, Theorem 2.1
over theory runs only, the trained models' pairs, the top-k curve, training curves; and valid
Vega-Lite with legends that are not all black dots."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from dashboard import charts
from service.analysis.common import RunRecord
from service.store import queries
from tests.dashboard.seed import FIG1_EPS, THEORY_ETA, THEORY_P, TOPK, Seeded


@pytest.fixture(scope="module")
def evaluations(seeded: Seeded) -> pd.DataFrame:
    return queries.evaluations_frame(seeded.url)


@pytest.fixture(scope="module")
def runs(seeded: Seeded) -> list[RunRecord]:
    frame = queries.analysis_runs(seeded.url)
    return [RunRecord.from_mapping(row) for row in frame.to_dict("records")]


def test_bound_is_the_clipped_theorem_2_1_line() -> None:
    bound = charts.bound_data([0.7, 0.7, 0.9])
    assert set(bound["bound"]) == {"Theorem 2.1, p=0.7", "Theorem 2.1, p=0.9"}
    seven = bound[bound["bound"] == "Theorem 2.1, p=0.7"]
    assert seven["accuracy"].tolist() == pytest.approx(
        [min(1.0, 7 / 3 * (1 - x)) for x in seven["standard"]])
    assert seven["accuracy"].max() == 1.0 and seven["accuracy"].min() == 0.0


def test_figure1_has_image_datasets_only(evaluations: pd.DataFrame,
                                         runs: list[RunRecord]) -> None:
    data = charts.figure1_data(evaluations, runs)
    assert charts.figure1_panels(data) == [("mnist", "linf"), ("mnist", "l2")], \
        "per dataset and norm; no theory, no binary MNIST"
    standard = data[data["measure"] == charts.STANDARD]
    expected = {("linf", e) for e in FIG1_EPS[("mnist", "linf")]} | {
        ("l2", e) for e in FIG1_EPS[("mnist", "l2")]}
    assert set(zip(standard["train_norm"], standard["train_eps"], strict=True)) == expected
    assert standard["accuracy"].tolist() == pytest.approx(
        [0.99 - 0.05 * e for e in standard["train_eps"]])
    attacked = data[data["measure"] != charts.STANDARD]
    assert set(attacked["measure"]) == {"pgd ε=0.3"}
    assert (attacked["eval_norm"] == attacked["train_norm"]).all(), "the curve's own norm"


def test_theory_chart_has_theory_points_only(evaluations: pd.DataFrame,
                                             runs: list[RunRecord], seeded: Seeded) -> None:
    pairs = charts.theory_data(evaluations, runs)
    assert set(pairs["run_id"]) == {seeded.theory}
    assert len(pairs) == 3, "transfer rows have no standard accuracy of their own"
    assert pairs["bound_applies"].all() and set(pairs["theorem_2_1"]) == {charts.BOUND_APPLIES}
    assert (pairs["accuracy"] <= pairs["bound"] + 1e-9).all()
    averaging = pairs[pairs["model"] == "averaging"].iloc[0]
    phi = 0.5 * (1 + math.erf(4 / math.sqrt(2)))
    assert averaging["standard"] == pytest.approx(phi)
    assert averaging["accuracy"] == pytest.approx(1 - phi)
    assert set(pairs["p"]) == {THEORY_P} and pairs["eta"].tolist() == pytest.approx([THEORY_ETA] * 3)


def test_trained_pairs_leave_theory_out(evaluations: pd.DataFrame, seeded: Seeded) -> None:
    pairs = charts.adversarial_pairs(evaluations)
    assert seeded.theory not in set(pairs["run_id"])
    fig1 = pairs[pairs["experiment"].str.startswith("fig1")]
    assert len(fig1) == len(seeded.fig1)
    assert fig1["std_accuracy"].tolist() == pytest.approx(
        [0.99 - 0.05 * e for e in fig1["train_eps"]])


def test_topk_curve(evaluations: pd.DataFrame, runs: list[RunRecord]) -> None:
    data = charts.topk_data(evaluations, runs)
    assert sorted(data["k"].unique()) == TOPK
    standard = data[data["series"] == "standard"].set_index("k")["accuracy"]
    adversarial = data[data["series"] == "adversarial"].set_index("k")["accuracy"]
    assert standard.to_dict() == pytest.approx({k: 0.9 + k / 10_000 for k in TOPK})
    assert adversarial.to_dict() == pytest.approx({k: 0.8 - k / 1000 for k in TOPK})


def test_training_curves_one_line_per_run_and_tags(seeded: Seeded) -> None:
    run_id = seeded.fig1[("mnist", "linf", 0.3)]
    data = charts.curve_data(queries.metrics_frame(seeded.url, run_ids=(run_id,)))
    assert sorted(data["name"].unique()) == ["train_accuracy", "train_loss"]
    assert len(data) == 6 and set(data["series"]) == {run_id}
    scalars = charts.curve_data(queries.metrics_frame(seeded.url, run_ids=(seeded.gallery,)))
    assert scalars.empty, "single values are not curves"


def test_charts_build_valid_vega_lite_with_real_legends(
        evaluations: pd.DataFrame, runs: list[RunRecord], seeded: Seeded) -> None:
    figure1 = charts.figure1_data(evaluations, runs)
    spec = charts.figure1_chart(figure1, "MNIST").to_dict(validate=True)
    line, points = (layer["encoding"] for layer in spec["layer"][:2])
    assert line["color"]["field"] == "line", "one coloured legend entry per curve and measure"
    assert line["strokeDash"]["field"] == points["shape"]["field"] == "measure"
    assert line["strokeDash"]["title"] == points["shape"]["title"], \
        "one legend of dashed lines with markers (not blank or black symbols)"
    pairs = charts.theory_data(evaluations, runs)
    metrics = queries.metrics_frame(seeded.url)
    for chart in (charts.theory_chart(pairs, charts.bound_data(pairs["p"])),
                  charts.tradeoff_chart(charts.adversarial_pairs(evaluations)),
                  charts.topk_chart(charts.topk_data(evaluations, runs)),
                  charts.curves_chart(charts.curve_data(metrics))):
        chart.to_dict(validate=True)


def _axis_titles(spec: dict[str, Any]) -> list[str]:
    """Every x/y axis title in a spec, however nested (layers, facets)."""
    found: list[str] = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("x", "y") and isinstance(value, dict) and value.get("title"):
                found.append(f"{key}: {value['title']}")
            else:
                found.extend(_axis_titles(value))
    elif isinstance(spec, list):
        for item in spec:
            found.extend(_axis_titles(item))
    return found


def test_every_chart_is_svg_with_axis_titles_and_legends_below(
        evaluations: pd.DataFrame, runs: list[RunRecord], seeded: Seeded) -> None:
    figure1 = charts.figure1_data(evaluations, runs)
    pairs = charts.theory_data(evaluations, runs)
    built = {
        "figure1": charts.figure1_chart(figure1[figure1["train_norm"] == "linf"], "MNIST"),
        "theory": charts.theory_chart(pairs, charts.bound_data(pairs["p"])),
        "tradeoff": charts.tradeoff_chart(charts.adversarial_pairs(evaluations)),
        "topk": charts.topk_chart(charts.topk_data(evaluations, runs)),
        "curves": charts.curves_chart(charts.curve_data(queries.metrics_frame(seeded.url))),
    }
    for name, chart in built.items():
        spec = chart.to_dict()
        assert spec["usermeta"] == {"embedOptions": {"renderer": "svg"}}, name
        assert spec["config"]["legend"]["orient"] == "bottom", name
        titles = _axis_titles(spec)
        assert any(t.startswith("x: ") for t in titles), (name, titles)
        assert any(t.startswith("y: ") for t in titles), (name, titles)
    titles = _axis_titles(built["figure1"].to_dict())
    assert "x: ε_train (l∞ radius, pixels in [0, 1])" in titles
    assert "y: test accuracy (%)" in titles


def test_coinciding_measures_get_their_own_dash_and_marker() -> None:
    order, dashes, shapes = charts.measure_styles(
        ["worst_case ε=0.3", charts.STANDARD, "pgd ε=0.3", "pgd ε=0.3"])
    assert order == [charts.STANDARD, "pgd ε=0.3", "worst_case ε=0.3"]
    assert dashes[0] == [1, 0], "standard accuracy is solid"
    assert len({tuple(d) for d in dashes}) == 3 and len(set(shapes)) == 3
    many = charts.measure_styles([charts.STANDARD, *(f"attack{i}" for i in range(12))])
    assert [1, 0] not in many[1][1:], "no attack is drawn solid, however many"


def test_a_one_point_curve_carries_a_note() -> None:
    data = pd.DataFrame({
        "curve": ["a", "a", "a", "a", "b", "b"], "experiment": ["qs"] * 4 + ["mine"] * 2,
        "train_eps": [0.0, 0.0, 0.3, 0.3, 0.3, 0.3],
        "measure": [charts.STANDARD, "pgd ε=0.3"] * 3,
        "accuracy": [0.99, 0.01, 0.97, 0.7, 0.96, 0.6], "accuracy_std": [None] * 6,
        "model": ["m"] * 6, "train_norm": ["linf"] * 6, "train_method": [None] * 6,
        "seeds": [1] * 6, "n": [500] * 6,
    })
    assert charts.one_point_curves(data) == [("b", 0.3)]
    (note,) = charts.one_point_notes(data).to_dict("records")
    assert note["note"] == f"mine: {charts.ONE_POINT_NOTE}"
    assert (note["train_eps"], note["accuracy"], note["side"]) == (0.3, 0.96, "right"), \
        "beside its top point, towards the middle of the plot"
    layers = charts.figure1_chart(data, "t").to_dict()["layer"]
    assert [layer["mark"]["type"] for layer in layers][-1] == "text"


def test_figure1_bars_are_95_percent_intervals() -> None:
    """Wilson over the examples for one run (scipy's binomtest), the t interval over seeds for
    repeats; the error-bar layer draws exactly those."""
    from scipy import stats as scipy_stats

    data = pd.DataFrame({
        "curve": ["a", "a"], "experiment": ["e", "e"], "train_eps": [0.0, 0.3],
        "measure": [charts.STANDARD] * 2, "accuracy": [0.9, 0.8], "accuracy_std": [None, 0.02],
        "model": ["m"] * 2, "train_norm": ["linf"] * 2, "train_method": [None] * 2,
        "seeds": [1, 3], "n": [500, 3 * 1000],
    })
    found = charts.with_intervals(data)
    wilson = scipy_stats.binomtest(450, 500).proportion_ci(method="wilson")
    assert (found["ci_low"][0], found["ci_high"][0]) == (pytest.approx(wilson.low),
                                                         pytest.approx(wilson.high))
    t_low, t_high = scipy_stats.t.interval(0.95, 2, loc=0.8, scale=0.02 / 3 ** 0.5)
    assert (found["ci_low"][1], found["ci_high"][1]) == (pytest.approx(t_low),
                                                         pytest.approx(t_high))
    layers = charts.figure1_chart(data, "t").to_dict()["layer"]
    (bars,) = [layer for layer in layers if layer["mark"]["type"] == "errorbar"]
    assert (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == (
        "ci_low", "ci_high")
