"""Trade-offs: Figure 1 per dataset (every attack, filterable), evaluate runs beside the models
they attacked, Theorem 2.1 over the theory runs in its own chart, adversarial against standard
accuracy of the trained models, and Figure 2(c).

Every number comes from ``service.analysis`` through ``dashboard.charts``: the report shows
the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from dashboard import charts, components
from dashboard.submission import inert_html
from service.analysis.common import RunFacts
from service.analysis.figure1 import STANDARD_NORM


def figure1(evaluations: pd.DataFrame, runs: Sequence[RunFacts]) -> None:
    st.subheader("Figure 1: test accuracy against ε_train")
    data = charts.figure1_data(evaluations, runs)
    if data.empty:
        st.caption("No succeeded train runs on an image dataset match the filters.")
        return
    attacks = sorted(set(data["measure"]) - {charts.STANDARD})
    shown = st.multiselect("Attacks shown beside standard accuracy", attacks, default=attacks,
                           key="tradeoffs_fig1_attacks")
    data = data[data["measure"].isin([charts.STANDARD, *shown])]
    st.caption("Each point is the mean over repeats that differ only by the seed, from the "
               "newest spec of each cell; bars: its 95% interval (t over the seeds where "
               "repeated, else Wilson over the test examples), covering sampling and seed "
               "variation, not the weakness of an attack; experiments are never mixed. "
               f"'{STANDARD_NORM}' curves are standard models recorded without a norm.")
    for dataset, norm in charts.figure1_panels(data):
        mine = data[(data["dataset"] == dataset) & (data["train_norm"] == norm)]
        title = f"{mine['title'].iloc[0]} · {norm}"
        components.chart(charts.figure1_chart(mine, title), mine, f"figure1_{dataset}_{norm}")
        for curve, eps in charts.one_point_curves(mine):
            # The curve names an experiment and a model: character references, never Markdown.
            st.caption(f"{inert_html(curve)}: one training ε ({eps:.4g}), so a dot and not a "
                       "line. Sweep adversary.eps in its spec (sweep: adversary.eps: [0, …]) "
                       "to draw a curve.")


def evaluated(evaluations: pd.DataFrame, runs: Sequence[RunFacts]) -> None:
    st.subheader("Evaluations of trained models (evaluate runs)")
    data = charts.evaluated_data(evaluations, runs)
    if data.empty:
        st.caption("No succeeded evaluate runs match the filters.")
        return
    st.caption("One row per evaluate run: the model it attacked (its training run, method, "
               "norm, ε_train) and accuracy (%) clean and under each attack, on the same "
               "examples. AutoAttack is the ensemble's per-example worst case.")
    st.dataframe(data, hide_index=True)
    components.csv_download(data, "evaluations.csv", key="tradeoffs_evaluations_csv")


def theory(evaluations: pd.DataFrame, runs: Sequence[RunFacts]) -> None:
    st.subheader("Theorem 2.1: adversarial against standard accuracy (theory runs)")
    pairs = charts.theory_data(evaluations, runs)
    if pairs.empty:
        st.caption("No succeeded theory runs (specs/paper/e1_theory.yaml) match the filters.")
        return
    bounds = charts.bound_data(pairs["p"].tolist())
    components.chart(charts.theory_chart(pairs, bounds), pairs, "theorem_2_1")
    radii = ", ".join(f"{2 * eta:.4g}" for eta in sorted(pairs["eta"].unique()))
    st.caption("Dashed: adversarial accuracy ≤ p/(1−p)·(1 − standard accuracy), clipped to "
               f"[0, 1]; it applies at l∞ ε ≥ 2η (here 2η = {radii}). Triangles were evaluated "
               "at a smaller ε, where the theorem says nothing.")


def tradeoff(evaluations: pd.DataFrame) -> None:
    st.subheader("Adversarial against standard accuracy (trained models)")
    pairs = charts.adversarial_pairs(evaluations)
    if pairs.empty:
        st.caption("No trained model has both a clean and an adversarial accuracy here.")
        return
    radii = sorted(pairs["eval_eps"].unique())
    radius = st.selectbox("Evaluation ε", ["(all)", *radii], key="tradeoffs_eval_eps",
                          format_func=lambda r: r if isinstance(r, str) else f"{r:g}")
    if radius != "(all)":
        pairs = pairs[pairs["eval_eps"] == radius]
    components.chart(charts.tradeoff_chart(pairs), pairs, "tradeoff")


def topk(evaluations: pd.DataFrame, runs: Sequence[RunFacts]) -> None:
    st.subheader("Figure 2(c): accuracy against the k most correlated pixels")
    data = charts.topk_data(evaluations, runs)
    if data.empty:
        st.caption("No rows with a variant 'topk=K' (the linear_features experiment) match.")
        return
    components.chart(charts.topk_chart(data), data, "topk")


url = components.require_database()
st.title("Trade-offs")
evaluations = components.evaluations(url)
if evaluations.empty:
    st.info("No evaluations yet.")
else:
    runs = components.analysis_runs(url)
    filtered = components.evaluation_filters(evaluations, key="tradeoffs", keep_clean=True)
    figure1(filtered, runs)
    evaluated(filtered, runs)
    theory(filtered, runs)
    tradeoff(filtered)
    topk(filtered, runs)
