"""Read-only queries for the dashboard: pandas DataFrames and plain dicts, never ORM rows.

The dashboard reads the results store only through this module (its one write, cancelling a
run, goes through ``repository.Store.request_cancel``). Every function takes the database URL,
so callers can cache results per URL. Driver errors arrive as the store's own exceptions
(``StoreError`` and its subclasses), never as SQLAlchemy types.

The ad-hoc SQL box (``run_select``, ``check_select``, its exceptions) lives in
``service.store.sql_box`` and is re-exported here: one SELECT, on a fresh read-only connection
as the least-privilege role ``robustlab_reader`` (PostgreSQL), capped in rows, bytes and time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Engine, func, select

from contract.columns import COLUMNS, DERIVED_COLUMNS, READ_COLUMNS
from contract.status import RunStatus
from service.analysis.stats import interval_columns
from service.store.migrate import check_schema
from service.store.models import EVALUATION_COLUMNS, RUN_STATUSES, Artifact, Evaluation, Metric, Run
from service.store.session import NO_RETRY, StoreError, make_engine, safe_url
from service.store.sql_box import (
    QueryFailed,
    QueryRefused,
    ReaderUnavailable,
    SelectResult,
    check_reader,
    check_select,
    run_select,
)
from service.store.storage import LocalStorage

T = TypeVar("T")

__all__ = [
    "RUN_STATUSES", "DatabaseStatus", "QueryFailed", "QueryRefused", "ReaderUnavailable",
    "SelectResult", "analysis_runs", "artifacts_frame", "check_reader", "check_select", "database_status",
    "evaluations_frame", "experiments",
    "metrics_frame", "read_artifact", "run_detail", "run_select", "runs_frame", "safe_url",
    "theory_parameters",
]

RUN_COLUMNS = (
    "id", "experiment", "kind", "cell", "params", "status", "progress", "stage", "error",
    "created_at", "started_at", "finished_at", "cancel_requested", "queue", "device",
    "submitted_by", "heartbeat_at",
)
RESULT_KEYS = COLUMNS
"""The keys of an evaluations frame: ``contract.columns.COLUMNS``, as the CLI's rows."""
METRIC_COLUMNS = ("run_id", "name", "step", "value", "tags")
ARTIFACT_COLUMNS = (
    "id", "run_id", "experiment", "kind", "name", "path", "media_type", "size", "metadata",
    "created_at",
)


# --------------------------------------------------------------------------- engine and status


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    """One pooled engine per URL for the life of the dashboard process."""
    return make_engine(url)


def _read(url: str, action: Callable[[Engine], T]) -> T:
    """Run ``action(engine)`` once, with SQLAlchemy errors mapped to the store's exceptions."""
    engine = _engine(url)
    return NO_RETRY.call(engine, lambda: action(engine))


@dataclass(frozen=True)
class DatabaseStatus:
    """Whether the dashboard can read the database, and what to tell the user if it cannot."""

    ready: bool
    """The schema is at the code's revision (the pages can query)."""
    runs: int
    message: str


def database_status(url: str) -> DatabaseStatus:
    """Check the schema and count the runs, turning every store failure into a message.

    An empty or un-migrated database is a normal first visit, not an error; the pages show how to
    get started instead of a traceback.
    """
    try:
        check_schema(_engine(url))
        runs = _read(url, _count_runs)
    except StoreError as exc:
        return DatabaseStatus(ready=False, runs=0, message=str(exc))
    message = "no runs yet" if runs == 0 else f"{runs} run{'s' if runs != 1 else ''}"
    return DatabaseStatus(ready=True, runs=runs, message=message)


def _count_runs(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Run)).scalar_one())


def _frame(engine: Engine, statement: Any, columns: Sequence[str]) -> pd.DataFrame:
    with engine.connect() as connection:
        rows = connection.execute(statement).mappings().all()
    return pd.DataFrame([dict(row) for row in rows], columns=list(columns))


# --------------------------------------------------------------------------- runs and metrics


def experiments(url: str) -> list[str]:
    """Experiment names that have runs, alphabetically."""
    statement = select(Run.experiment).distinct().order_by(Run.experiment)
    return _read(url, lambda engine: _frame(engine, statement, ["experiment"]))[
        "experiment"
    ].tolist()


def runs_frame(url: str, *, experiment: str | None = None,
               status: str | None = None) -> pd.DataFrame:
    """One row per run, newest first, with ``duration_s`` (finished or now minus started)."""
    statement = select(*(getattr(Run, c) for c in RUN_COLUMNS)).order_by(
        Run.created_at.desc(), Run.experiment, Run.cell
    )
    if experiment:
        statement = statement.where(Run.experiment == experiment)
    if status:
        statement = statement.where(Run.status == status)
    frame = _read(url, lambda engine: _frame(engine, statement, RUN_COLUMNS))
    return frame.assign(duration_s=_durations(frame))


def _durations(frame: pd.DataFrame) -> pd.Series:
    """Seconds from start to finish; runs still going count up to now."""
    started = pd.to_datetime(frame["started_at"], utc=True).dt.as_unit("us")
    finished = pd.to_datetime(frame["finished_at"], utc=True).dt.as_unit("us")
    now = pd.Timestamp.now(tz="UTC").as_unit("us")
    return (finished.fillna(now) - started).dt.total_seconds()


def run_detail(url: str, run_id: str) -> dict[str, Any] | None:
    """Every column of one run (provenance and resolved spec included); ``None`` if unknown."""

    def fetch(engine: Engine) -> dict[str, Any] | None:
        columns = [column.key for column in Run.__table__.columns]
        with engine.connect() as connection:
            row = connection.execute(
                select(*(getattr(Run, c) for c in columns)).where(Run.id == run_id)
            ).mappings().first()
        return dict(row) if row is not None else None

    return _read(url, fetch)


def metrics_frame(url: str, *, run_ids: Sequence[str] = (),
                  experiment: str | None = None) -> pd.DataFrame:
    """Metric rows (run_id, name, step, value, tags as a dict), ordered by run, name and step."""
    statement = select(*(getattr(Metric, c) for c in METRIC_COLUMNS)).order_by(
        Metric.run_id, Metric.name, Metric.step
    )
    if run_ids:
        statement = statement.where(Metric.run_id.in_(list(run_ids)))
    if experiment:
        statement = statement.join(Run, Run.id == Metric.run_id).where(
            Run.experiment == experiment
        )
    return _read(url, lambda engine: _frame(engine, statement, METRIC_COLUMNS))


def theory_parameters(url: str) -> pd.DataFrame:
    """p, d and eta of every theory run's distribution D(p, d, eta), from its resolved spec.

    Theorem 2.1's bound, adversarial accuracy <= p/(1-p) * (1 - standard accuracy), needs p;
    it holds for l_inf eps >= 2 * eta.
    """
    statement = select(Run.id, Run.resolved_spec).where(Run.kind == "theory")
    frame = _read(url, lambda engine: _frame(engine, statement, ["id", "resolved_spec"]))
    rows = [
        {"run_id": run_id, **{key: spec.get("distribution", {}).get(key) for key in ("p", "d", "eta")}}
        for run_id, spec in zip(frame["id"], frame["resolved_spec"], strict=True)
    ]
    return pd.DataFrame(rows, columns=["run_id", "p", "d", "eta"])


ANALYSIS_RUN_COLUMNS = ("id", "experiment", "kind", "created_at", "seed", "resolved_spec",
                        "provenance")
"""What ``service.analysis`` reads of a run (``service.analysis.common.RunFacts``)."""


def analysis_runs(url: str) -> pd.DataFrame:
    """The succeeded runs with their resolved spec, seed and provenance, newest first: what
    the analysis layer needs to aggregate repeats (the report reads the same runs)."""
    statement = (select(*(getattr(Run, c) for c in ANALYSIS_RUN_COLUMNS))
                 .where(Run.status == RunStatus.SUCCEEDED.value)
                 .order_by(Run.created_at.desc(), Run.id))
    return _read(url, lambda engine: _frame(engine, statement, ANALYSIS_RUN_COLUMNS))


# --------------------------------------------------------------------------- evaluations


def evaluations_frame(url: str, *, experiments: Sequence[str] = ()) -> pd.DataFrame:
    """One row per evaluation with its run's experiment and kind (``RESULT_KEYS``), the derived
    ``ci_low``/``ci_high`` computed from accuracy and n as ``robustlab results`` does.

    Ordered like ``robustlab results``: experiment, run cell, model, train_eps, eval_eps, attack.
    """
    columns = [Run.experiment, Run.kind] + [
        getattr(Evaluation, c) for c in READ_COLUMNS if c not in ("experiment", "kind")
    ]
    statement = (
        select(*columns)
        .join(Run, Run.id == EVALUATION_COLUMNS.run_id)
        .order_by(Run.experiment, Run.cell, EVALUATION_COLUMNS.model, EVALUATION_COLUMNS.train_eps,
                  EVALUATION_COLUMNS.eval_eps, EVALUATION_COLUMNS.attack, EVALUATION_COLUMNS.variant)
    )
    if experiments:
        statement = statement.where(Run.experiment.in_(list(experiments)))
    frame = _read(url, lambda engine: _frame(engine, statement, RESULT_KEYS))
    derived = [interval_columns(accuracy, n)
               for accuracy, n in zip(frame["accuracy"].tolist(), frame["n"].tolist(), strict=True)]
    for column in DERIVED_COLUMNS:
        frame[column.name] = pd.Series([row[column.name] for row in derived], index=frame.index,
                                       dtype=float)
    return frame


# --------------------------------------------------------------------------- artifacts


def artifacts_frame(url: str, *, kinds: Sequence[str] = (),
                    experiments: Sequence[str] = ()) -> pd.DataFrame:
    """Artifact rows with their run's experiment; ``metadata`` is a dict, ``path`` relative."""
    columns = [Artifact.id, Artifact.run_id, Run.experiment, Artifact.kind, Artifact.name,
               Artifact.path, Artifact.media_type, Artifact.size,
               Artifact.meta.label("metadata"), Artifact.created_at]
    statement = (
        select(*columns)
        .join(Run, Run.id == Artifact.run_id)
        .order_by(Artifact.kind, Run.experiment, Artifact.name)
    )
    if kinds:
        statement = statement.where(Artifact.kind.in_(list(kinds)))
    if experiments:
        statement = statement.where(Run.experiment.in_(list(experiments)))
    return _read(url, lambda engine: _frame(engine, statement, ARTIFACT_COLUMNS))


def read_artifact(artifact_dir: Path, relpath: str) -> bytes:
    """The bytes of one artifact, from the same storage the store wrote it to."""
    return LocalStorage(artifact_dir).get(relpath)
