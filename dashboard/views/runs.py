"""Runs: every run's status and progress; one run's error, provenance, spec and training curves;
a cancel button and a delete button with confirmation (the dashboard's writes, through the
repository and ``service.deletion``, for members only)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from contract.status import PENDING, RunStatus
from dashboard import charts, components
from dashboard.auth import Role, may
from dashboard.launch import ACCENT
from service.deletion import delete_runs
from service.recording import STALE_AFTER_S
from service.settings import get_settings
from service.store import queries
from service.store.repository import Store

PROVENANCE_FIELDS = ("submitted_by", "spec_hash", "seed", "git_sha", "data_hash", "host", "device", "queue",
                     "task_id", "attempts", "created_at", "started_at", "finished_at",
                     "heartbeat_at")


def with_liveness(frame: pd.DataFrame) -> pd.DataFrame:
    """A 'running' run without a heartbeat for ``STALE_AFTER_S`` is shown as stale (its process
    died: SIGKILL, out of memory, a lost machine), its duration ending at its last heartbeat;
    the ``stale`` column marks it. The same rule as ``robustlab runs`` (``service.recording``)."""
    if frame.empty or "heartbeat_at" not in frame:
        return frame.assign(stale=False)
    beat = pd.to_datetime(frame["heartbeat_at"], utc=True).fillna(
        pd.to_datetime(frame["started_at"], utc=True))
    age = (pd.Timestamp.now(tz="UTC") - beat).dt.total_seconds()
    stale = (frame["status"] == RunStatus.RUNNING.value) & (age >= STALE_AFTER_S)
    shown_status = frame["status"].where(
        ~stale, age.map(lambda seconds: f"stale (no heartbeat for {seconds:.0f} s)"))
    until_beat = (beat - pd.to_datetime(frame["started_at"], utc=True)).dt.total_seconds()
    return frame.assign(status=shown_status, stale=stale,
                        duration_s=frame["duration_s"].where(~stale, until_beat))


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One page of the runs as a table; returns that page (the runs one can pick below it)."""
    page = components.paginate(frame, key="runs_page")
    shown = with_liveness(page).assign(
        params=page["params"].map(lambda p: " ".join(f"{k}={v}" for k, v in (p or {}).items())),
        error=page["error"].map(lambda e: e.strip().splitlines()[-1] if isinstance(e, str) else ""),
    )
    st.dataframe(
        shown,
        hide_index=True,
        column_order=["id", "experiment", "kind", "params", "status", "progress", "stage",
                      "duration_s", "error", "submitted_by", "created_at"],
        column_config={
            # The theme's blue, whatever the theme says: a healthy run's bar is never red.
            "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1,
                                                        color=ACCENT),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
        },
    )
    return page


def cancel_button(url: str, run: dict[str, Any]) -> None:
    if run["status"] not in PENDING or not may(Role.MEMBER):
        return
    if run["cancel_requested"]:
        st.info("Cancellation requested; the run stops at its next batch boundary.")
        return
    if st.button("Cancel this run", key="runs_cancel"):
        store = Store(components.write_database_url())  # the pages may read as a reader login
        try:
            after = store.request_cancel(run["id"])
        finally:
            store.engine.dispose()
        st.cache_data.clear()
        st.success(f"Run {after.id}: {after.status}"
                   + (" (cancel requested)" if after.cancel_requested else ""))


def delete_button(run: dict[str, Any]) -> None:
    """Delete a finished run with its results and files, after a confirmation."""
    if run["status"] in PENDING or not may(Role.MEMBER):
        return
    confirming = st.session_state.get("runs_delete_pending") == run["id"]
    if not confirming:
        if st.button("Delete this run", key="runs_delete"):
            st.session_state["runs_delete_pending"] = run["id"]
            st.rerun()
        return
    st.warning(f"Delete run {run['id']} with its results, metrics, artifacts, checkpoints and "
               "run directory? A checkpoint another run reads is kept.")
    yes, no = st.columns(2)
    if no.button("Keep it", key="runs_delete_keep"):
        st.session_state.pop("runs_delete_pending", None)
        st.rerun()
    if yes.button("Yes, delete it", key="runs_delete_confirm", type="primary"):
        store = Store(components.write_database_url())  # the pages may read as a reader login
        try:
            (done,) = delete_runs(store, [run["id"]], settings=get_settings())
        finally:
            store.engine.dispose()
        st.session_state.pop("runs_delete_pending", None)
        st.cache_data.clear()
        st.success(f"Run {done.run_id} deleted ({done.files_removed} file(s) removed).")
        for path in done.kept:
            st.info("Kept a checkpoint another run reads:")
            st.code(path, language=None)


def curves(url: str, run_id: str) -> None:
    """Training curves (metrics logged at several steps, one line per tag set, one panel per
    metric); single values as a table."""
    frame = components.metrics(url, (run_id,))
    if frame.empty:
        st.caption("No metrics recorded.")
        return
    data = charts.curve_data(frame)
    if not data.empty:
        st.markdown("**Training curves**")
        components.chart(charts.curves_chart(data), data, f"curves_{run_id}")
    on_curves = set(zip(data["name"], data["tag_text"], strict=True)) if len(data) else set()
    tags = frame["tags"].map(charts.tag_label)
    scalars = frame[[(n, t) not in on_curves for n, t in zip(frame["name"], tags, strict=True)]]
    if not scalars.empty:
        st.markdown("**Values**")
        st.dataframe(scalars.assign(tags=scalars["tags"].map(charts.tag_label)), hide_index=True)


def run_detail(url: str, run_id: str) -> None:
    run = components.run_detail(url, run_id)
    if run is None:
        st.warning(f"Run {run_id} no longer exists.")
        return
    st.subheader(f"{run['experiment']} · {run['id']} · {run['status']}")
    st.progress(float(run["progress"] or 0), text=run["stage"] or run["status"])
    if bool(with_liveness(pd.DataFrame([run]).assign(duration_s=None))["stale"].iloc[0]):
        st.warning("Stale: this run is marked running but wrote no heartbeat for "
                   f"{STALE_AFTER_S:.0f} s or more, so its process is gone. "
                   f"`robustlab resume {run['id']}` continues it from its last checkpoint.")
    cancel_button(url, run)
    delete_button(run)
    if run["error"]:
        # The error can carry user text (a dataset path, a spec value): shown as code, never
        # read as Markdown (an image link in it would make the browser fetch it).
        st.error("This run failed:")
        st.code(run["error"].strip().splitlines()[-1], language=None)
        with st.expander("Full error"):
            st.code(run["error"])
    left, right = st.columns(2)
    with left:
        st.markdown("**Provenance**")
        facts = {key: run[key] for key in PROVENANCE_FIELDS if run.get(key) is not None}
        facts |= {"package_versions": run["package_versions"], "provenance": run["provenance"]}
        st.json(json.dumps(facts, default=str), expanded=1)
    with right:
        st.markdown("**Resolved spec**")
        st.code(yaml.safe_dump(run["resolved_spec"], sort_keys=False), language="yaml")
    st.markdown("**Metrics**")
    curves(url, run_id)


url = components.require_database()
st.title("Runs")
left, middle, right = st.columns([2, 2, 1])
with left:
    experiment = components.pick("Experiment", components.experiments(url), key="runs_experiment")
with middle:
    status = components.pick("Status", list(queries.RUN_STATUSES), key="runs_status")
with right:
    st.button("Refresh", key="runs_refresh", help="Results are cached for a few seconds.")
frame = components.runs(url, experiment, status)
if frame.empty:
    st.info("No runs match.")
else:
    page = runs_table(frame)
    labels = dict(zip(page["id"], page["experiment"] + " · " + page["id"] + " · "
                      + page["status"], strict=True))
    chosen = st.selectbox("Run", list(labels), format_func=labels.__getitem__, key="runs_run")
    run_detail(url, chosen)
