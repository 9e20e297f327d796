"""Compare: pick runs and see them side by side, as MLflow's compare view does: what differs in
their resolved specs, their metric curves overlaid, and their results and final metrics in
columns. ``?run=ID&run=ID`` in the URL picks the runs (a link to a comparison). The
comparison itself is ``service.analysis.compare`` (``robustlab compare`` prints
the same)."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, components
from service.analysis.compare import Comparison, RunSide, compare

MAX_RUNS = 8


def sides(url: str, run_ids: list[str]) -> list[RunSide]:
    """Each chosen run's resolved spec, result rows and metrics, from the cached queries."""
    evaluations = components.evaluations(url)
    metrics = components.metrics(url, tuple(run_ids))
    found = []
    for run_id in run_ids:
        detail = components.run_detail(url, run_id)
        if detail is None:
            continue
        results = components.records(evaluations[evaluations["run_id"] == run_id])
        own = components.records(metrics[metrics["run_id"] == run_id])
        found.append(RunSide(run_id, detail["resolved_spec"] or {}, results, own,
                             detail["experiment"], str(detail["status"])))
    return found


def show(comparison: Comparison) -> None:
    ids = list(comparison.run_ids)
    st.subheader("Spec differences")
    if comparison.spec_diff:
        st.dataframe(charts.spec_diff_frame(comparison.spec_diff, ids), hide_index=True)
    else:
        st.caption("The resolved specs are identical.")
    st.subheader("Metric curves")
    curves = charts.compare_curves_data(comparison.curves)
    if curves.empty:
        st.caption("None of these runs logged a metric at several steps.")
    else:
        components.chart(charts.curves_chart(curves), curves, "compare_curves")
    st.subheader("Results")
    if comparison.results:
        results = charts.side_by_side_frame(comparison.results, ids)
        st.dataframe(results, hide_index=True, column_config={
            run: st.column_config.NumberColumn(run, format="percent") for run in [*ids, "spread"]})
        components.csv_download(results, "compare_results.csv", key="compare_results_csv")
    else:
        st.caption("No evaluations recorded for these runs.")
    st.subheader("Metrics (last value of each series)")
    if comparison.metrics:
        st.dataframe(charts.side_by_side_frame(comparison.metrics, ids), hide_index=True)
    else:
        st.caption("No metrics recorded for these runs.")


url = components.require_database()
st.title("Compare runs")
runs = components.runs(url, None, None)
if runs.empty:
    st.info("No runs yet.")
else:
    labels = dict(zip(runs["id"], runs["experiment"] + " · " + runs["id"] + " · "
                      + runs["status"].astype(str), strict=True))
    linked = [run for run in st.query_params.get_all("run") if run in labels][:MAX_RUNS]
    chosen = st.multiselect(f"Runs (2 to {MAX_RUNS})", list(labels), default=linked,
                            format_func=labels.__getitem__, max_selections=MAX_RUNS,
                            key="compare_runs",
                            help="A link can choose them: /compare?run=ID&run=ID")
    if len(chosen) < 2:
        st.caption("Pick at least two runs to compare them.")
    else:
        show(compare(sides(url, chosen)))
