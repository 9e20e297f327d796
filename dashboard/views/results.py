"""Results: the evaluations table with filters and CSV/LaTeX downloads, and a SQL box that runs
one SELECT on a read-only connection with a row limit and a time limit."""

from __future__ import annotations

import streamlit as st

from dashboard import components
from dashboard.auth import Role, may
from service.results import to_csv, to_latex
from service.store import queries

SQL_EXAMPLE = ("SELECT dataset, train_norm, train_eps, accuracy\nFROM evaluations\n"
               "WHERE attack = 'none' AND eval_eps = 0\nORDER BY dataset, train_norm, train_eps")
SQL_TIMEOUT_S = 5.0


def evaluations_table(url: str) -> None:
    frame = components.evaluations(url)
    if frame.empty:
        st.info("No evaluations yet.")
        return
    filtered = components.evaluation_filters(frame, key="results")
    st.caption(f"{len(filtered)} of {len(frame)} rows")
    shown, order, config = components.results_frame(
        components.paginate(filtered, key="results_page"))
    st.dataframe(shown, hide_index=True, column_order=order, column_config=config)
    rows = components.records(filtered)
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("CSV", to_csv(rows).encode(), file_name="results.csv", mime="text/csv",
                         key="results_csv")
    right.download_button("LaTeX", to_latex(rows).encode(), file_name="results.tex",
                          mime="text/x-tex", key="results_latex")


def sql_box(url: str) -> None:
    st.subheader("SQL")
    if not may(Role.MEMBER):
        st.caption("The SQL box is for members; viewers browse the table above.")
        return
    st.caption("One SELECT (or WITH … SELECT) statement on a read-only connection; tables: "
               "specs, runs, evaluations, metrics, artifacts, checkpoints.")
    sql = st.text_area("Query", value=SQL_EXAMPLE, height=140, key="results_sql")
    limit = int(st.number_input("Row limit", min_value=1, max_value=100_000, value=1000,
                                key="results_sql_limit"))
    if not st.button("Run query", key="results_sql_run"):
        return
    try:
        result = queries.run_select(url, sql, limit=limit, timeout_s=SQL_TIMEOUT_S)
    except queries.QueryRefused as exc:
        st.error("Refused:")
        st.code(str(exc), language=None)  # may quote the statement: never read as Markdown
        return
    except queries.QueryFailed as exc:
        st.error("The database refused the query:")
        st.code(str(exc), language=None)
        return
    if result.truncated:
        st.warning(f"Showing the first {limit} rows only (the row limit).")
    st.dataframe(result.frame, hide_index=True)
    components.csv_download(result.frame, "query.csv", key="results_sql_csv")


url = components.require_database()
st.title("Results")
evaluations_table(url)
sql_box(url)
