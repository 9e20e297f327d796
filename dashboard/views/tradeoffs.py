"""Trade-offs: standard accuracy against eps_train (Figure 1), adversarial against standard
accuracy with Theorem 2.1's bound, and the top-k pixels curve (Figure 2c)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, components


def figure1(rows: pd.DataFrame) -> None:
    st.subheader("Standard accuracy against ε_train (Figure 1)")
    data = charts.figure1_data(rows)
    if data.empty:
        st.caption("No clean-accuracy rows (attack 'none', eval ε 0) match the filters.")
        return
    components.chart(charts.figure1_chart(data), data, "figure1")


def tradeoff(rows: pd.DataFrame, url: str) -> None:
    st.subheader("Adversarial against standard accuracy (Theorem 2.1)")
    pairs = charts.adversarial_pairs(rows, components.theory_parameters(url))
    if pairs.empty:
        st.caption("No model has both a clean and an adversarial accuracy under these filters.")
        return
    radii = sorted(pairs["eval_eps"].unique())
    radius = st.selectbox("Evaluation ε", ["(all)", *radii], key="tradeoffs_eval_eps",
                          format_func=lambda r: r if isinstance(r, str) else f"{r:g}")
    if radius != "(all)":
        pairs = pairs[pairs["eval_eps"] == radius]
    theory = pairs[pairs["p"].notna()]
    bounds = charts.bound_data(theory["p"].tolist())
    components.chart(charts.tradeoff_chart(pairs, bounds), pairs, "tradeoff")
    if not theory.empty:
        etas = ", ".join(f"{2 * eta:.4g}" for eta in sorted(theory["eta"].unique()))
        st.caption("Dashed: adversarial accuracy ≤ p/(1−p)·(1 − standard accuracy), which holds "
                   f"for theory runs evaluated at l∞ ε ≥ 2η (here 2η = {etas}); faded points "
                   "were evaluated at a smaller ε, where it does not apply.")


def topk(rows: pd.DataFrame) -> None:
    st.subheader("Accuracy against the k most correlated pixels (Figure 2c)")
    data = charts.topk_data(rows)
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
    filtered = components.evaluation_filters(evaluations, key="tradeoffs", keep_clean=True)
    figure1(filtered)
    tradeoff(filtered, url)
    topk(filtered)
