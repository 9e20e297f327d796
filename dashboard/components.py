"""Shared pieces of the dashboard pages: settings, cached queries, the getting-started panel,
filters, pagination and downloads.

Every query goes through ``service.store.queries`` and is cached for ``CACHE_TTL_S`` seconds,
so pages stay fast on reruns while results of running jobs still appear within seconds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from service.analysis.common import RunRecord
from service.settings import get_settings
from service.store import queries

CACHE_TTL_S = 5
PAGE_SIZE = 50
ALL = "(all)"
GET_STARTED = "robustlab db upgrade\nrobustlab run specs/quickstart.yaml"


# --------------------------------------------------------------------------- settings and status


def database_url() -> str:
    """What the pages read: the dashboard's own (read-only) login when one is configured."""
    settings = get_settings()
    return settings.dashboard_database_url or settings.database_url


def write_database_url() -> str:
    """What cancelling writes through (the one write of the dashboard)."""
    return get_settings().database_url


def artifact_dir() -> Path:
    return get_settings().artifact_dir


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def database_status(url: str) -> queries.DatabaseStatus:
    return queries.database_status(url)


def getting_started(reason: str) -> None:
    """Tell a first-time user what to run instead of showing an error."""
    st.info(f"{reason}. To get started, run in a terminal:")
    st.code(GET_STARTED, language="bash")


def require_database() -> str:
    """The database URL if its schema is current; otherwise show how to fix it and stop the page."""
    url = database_url()
    state = database_status(url)
    if not state.ready:
        st.warning(f"The results database ({queries.safe_url(url)}) cannot be read yet.")
        getting_started(state.message)
        st.stop()
    if state.runs == 0:
        getting_started("The database has no runs yet")
    return url


# --------------------------------------------------------------------------- cached queries


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def experiments(url: str) -> list[str]:
    return queries.experiments(url)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def runs(url: str, experiment: str | None, status: str | None) -> pd.DataFrame:
    return queries.runs_frame(url, experiment=experiment, status=status)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def run_detail(url: str, run_id: str) -> dict[str, Any] | None:
    return queries.run_detail(url, run_id)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def metrics(url: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return queries.metrics_frame(url, run_ids=run_ids)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def evaluations(url: str) -> pd.DataFrame:
    return queries.evaluations_frame(url)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def theory_parameters(url: str) -> pd.DataFrame:
    return queries.theory_parameters(url)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def analysis_runs(url: str) -> list[RunRecord]:
    """The succeeded runs as ``service.analysis`` reads them (the report reads the same)."""
    frame = queries.analysis_runs(url)
    return [RunRecord.from_mapping(row) for row in records(frame)]


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def artifacts(url: str) -> pd.DataFrame:
    return queries.artifacts_frame(url)


@st.cache_data(ttl=600, max_entries=500, show_spinner=False)
def artifact_bytes(root: Path, relpath: str) -> bytes:
    """Artifact files never change once written (the path holds the run id and name)."""
    return queries.read_artifact(root, relpath)


# --------------------------------------------------------------------------- filters


def _choices(frame: pd.DataFrame, column: str) -> list[str]:
    return sorted(str(v) for v in frame[column].dropna().unique())


FILTERS = (("experiment", "Experiment"), ("dataset", "Dataset"), ("train_norm", "Norm"),
           ("attack", "Attack"))


def evaluation_filters(frame: pd.DataFrame, key: str, *, keep_clean: bool = False) -> pd.DataFrame:
    """Multiselect filters (experiment, dataset, norm, attack) and the rows they keep.

    An empty selection keeps everything. The norm filter keeps standard-training rows
    (no training norm) with every norm, since eps_train 0 is the start of every norm's curve.
    With ``keep_clean`` the attack filter keeps clean rows (attack "none") too, which the
    trade-off charts need beside the chosen attacks.
    """
    keep = pd.Series(True, index=frame.index)
    for column, (name, label) in zip(st.columns(len(FILTERS)), FILTERS, strict=True):
        values = column.multiselect(label, _choices(frame, name), key=f"{key}_{name}")
        if not values:
            continue
        matches = frame[name].astype(str).isin(values)
        if name == "train_norm":
            matches |= frame[name].isna()
        if name == "attack" and keep_clean:
            matches |= frame[name] == "none"
        keep &= matches
    return frame[keep]


# --------------------------------------------------------------------------- pagination


def page_bounds(n_items: int, key: str, page_size: int = PAGE_SIZE) -> slice:
    """A page selector (only when there is more than one page) and the slice it selects."""
    pages = max(1, math.ceil(n_items / page_size))
    if pages == 1:
        return slice(0, n_items)
    page = st.number_input(f"Page (of {pages}, {n_items} rows)", min_value=1, max_value=pages,
                           value=1, step=1, key=key)
    start = (int(page) - 1) * page_size
    return slice(start, min(start + page_size, n_items))


def paginate(frame: pd.DataFrame, key: str, page_size: int = PAGE_SIZE) -> pd.DataFrame:
    return frame.iloc[page_bounds(len(frame), key, page_size)]


# --------------------------------------------------------------------------- results table

RESULTS_FIRST = ["model", "training", "threat model", "attack", "accuracy"]
"""What a results row is about and its number, leftmost: visible at 1366 px without
scrolling."""
RESULTS_NEXT = ["ci_low", "ci_high", "n", "dataset", "experiment", "run_id", "variant", "checkpoint"]
RESULTS_PINNED = {"model": 120, "training": 120, "threat model": 110}
"""What a row is about stays put when the table scrolls sideways (pixel widths)."""
RESULTS_PERCENT = ("accuracy", "ci_low", "ci_high")


def _training(norm: Any, eps: Any, method: Any) -> str:
    if eps is None or pd.isna(eps) or float(eps) == 0:
        return "standard"
    text = f"{norm} ε={float(eps):.4g}" if isinstance(norm, str) else f"ε={float(eps):.4g}"
    return f"{text} · {method}" if isinstance(method, str) and method else text


def _threat(attack: Any, norm: Any, eps: Any) -> str:
    if attack == "none" and (eps is None or pd.isna(eps) or float(eps) == 0):
        return "clean"
    radius = "" if eps is None or pd.isna(eps) else f"ε={float(eps):.4g}"
    return " ".join(part for part in (norm if isinstance(norm, str) else "", radius) if part)


def results_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """The results table as shown: a ``training`` column (standard, or norm and ε_train) and a
    ``threat model`` column (clean, or norm and ε) beside the model, pinned left in narrow
    columns, then attack and accuracy; the rest (the raw columns, for sorting) after.
    Returns the frame, its column order and its column configuration."""
    shown = frame.assign(
        training=[_training(n, e, m) for n, e, m in
                  zip(frame["train_norm"], frame["train_eps"], frame["train_method"],
                      strict=True)],
        **{"threat model": [_threat(a, n, e) for a, n, e in
                            zip(frame["attack"], frame["eval_norm"], frame["eval_eps"],
                                strict=True)]},
    )
    first = [c for c in RESULTS_FIRST + RESULTS_NEXT if c in shown.columns]
    order = first + [c for c in frame.columns if c not in first]
    config: dict[str, Any] = {
        column: st.column_config.Column(column, width=width, pinned=True)
        for column, width in RESULTS_PINNED.items()
    }
    config["attack"] = st.column_config.Column("attack", width=100)
    for column in RESULTS_PERCENT:
        if column in shown.columns:
            config[column] = st.column_config.NumberColumn(
                column, format="percent", width=90 if column == "accuracy" else 80)
    return shown, order, config


# --------------------------------------------------------------------------- gallery


def combined_figures(artifacts: pd.DataFrame, kinds: Iterable[str]) -> pd.Series:
    """Which rows are a run's side-by-side figure of pictures the gallery already shows: a
    ``figure`` whose metadata ``figure`` names a gallery kind (``large_eps``, ``gradients``,
    ...) of which the same run has pictures (E4-E6 record each model's picture and then all
    of them in one figure). A boolean Series over ``artifacts``."""
    kinds = set(kinds)
    pictures = set(zip(artifacts["run_id"], artifacts["kind"], strict=True))
    return pd.Series(
        [kind == "figure" and (meta or {}).get("figure") in kinds
         and (run_id, (meta or {}).get("figure")) in pictures
         for run_id, kind, meta in zip(artifacts["run_id"], artifacts["kind"],
                                       artifacts["metadata"], strict=True)],
        index=artifacts.index, dtype=bool)


def without_copies(artifacts: pd.DataFrame, read: Callable[[str], bytes]) -> pd.DataFrame:
    """Each picture once: of rows with the same kind, name and size whose bytes are identical
    (a re-run of a seeded experiment draws the same figure), the newest is kept. Only rows
    that share kind, name and size are read."""
    if artifacts.empty:
        return artifacts
    keep = pd.Series(True, index=artifacts.index)
    for _, rows in artifacts.groupby(["kind", "name", "size"], sort=False):
        if len(rows) < 2:
            continue
        seen: set[str] = set()
        for index in rows.sort_values("id", ascending=False).index:
            digest = hashlib.sha256(read(str(artifacts.at[index, "path"]))).hexdigest()
            keep[index] = digest not in seen
            seen.add(digest)
    return artifacts[keep]


def figure_matches(figure: dict[str, Any], item: dict[str, Any]) -> bool:
    """A side-by-side figure belongs under a picture of its run whose metadata agrees with
    every key of the figure's (its ``figure`` key aside)."""
    meta, own = figure["metadata"] or {}, item["metadata"] or {}
    return figure["run_id"] == item["run_id"] and all(
        str(own.get(key)) == str(value) for key, value in meta.items() if key != "figure")


# --------------------------------------------------------------------------- downloads


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with ``None`` for missing values (what CSV/LaTeX renderers expect)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def csv_download(frame: pd.DataFrame, file_name: str, key: str, label: str = "CSV") -> None:
    st.download_button(label, frame.to_csv(index=False).encode(), file_name=file_name,
                       mime="text/csv", key=key)


Chart = alt.Chart | alt.LayerChart | alt.FacetChart


def chart(chart_: Chart, data: pd.DataFrame, name: str) -> None:
    """Show an Altair chart with downloads of the plotted data (CSV) and the chart (HTML).

    Streamlit turns off vega-embed's action menu; the HTML file has it back (PNG/SVG export)
    when opened in a browser that can load vega-embed.
    """
    st.altair_chart(chart_, width="stretch")
    left, right, _ = st.columns([1, 1, 4])
    with left:
        csv_download(data, f"{name}.csv", key=f"{name}_csv", label="Plotted data (CSV)")
    with right:
        st.download_button("Chart (HTML, PNG/SVG export)", chart_.to_html().encode(),
                           file_name=f"{name}.html", mime="text/html", key=f"{name}_html")


def pick(label: str, options: Sequence[str], key: str) -> str | None:
    """A select box with an "(all)" choice first; returns ``None`` for it."""
    choice = st.selectbox(label, [ALL, *options], key=key)
    return None if choice == ALL else choice
