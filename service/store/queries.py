"""Read-only queries for the dashboard: pandas DataFrames and plain dicts, never ORM rows.

The dashboard reads the results store only through this module (its one write, cancelling a
run, goes through ``repository.Store.request_cancel``). Every function takes the database URL,
so callers can cache results per URL. Driver errors arrive as the store's own exceptions
(``StoreError`` and its subclasses), never as SQLAlchemy types.

The ad-hoc SQL box (``run_select``) is guarded twice: ``check_select`` refuses anything that is
not a single SELECT/WITH statement with a clear message, and the statement then runs on a
read-only connection (SQLite ``mode=ro`` and ``PRAGMA query_only``; PostgreSQL ``SET TRANSACTION
READ ONLY``) under a row limit and a deadline. The read-only connection is the real guard; the
text check is there to explain the refusal. A deployment that exposes the dashboard to untrusted
users should also give it a database role that can only read.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from service.store.migrate import check_schema
from service.store.models import RUN_STATUSES, Artifact, Evaluation, Metric, Run
from service.store.session import NO_RETRY, StoreError, describe, make_engine, normalise_url
from service.store.storage import LocalStorage

T = TypeVar("T")

__all__ = [
    "RUN_STATUSES", "DatabaseStatus", "QueryFailed", "QueryRefused", "SelectResult",
    "artifacts_frame", "check_select", "database_status", "evaluations_frame", "experiments",
    "metrics_frame", "read_artifact", "run_detail", "run_select", "runs_frame", "safe_url",
    "theory_parameters",
]

RUN_COLUMNS = (
    "id", "experiment", "kind", "cell", "params", "status", "progress", "stage", "error",
    "created_at", "started_at", "finished_at", "cancel_requested", "queue", "device",
)
EVALUATION_COLUMNS = (
    "run_id", "experiment", "kind", "model", "dataset", "split", "train_norm", "train_eps",
    "eval_norm", "eval_eps", "attack", "steps", "step_size", "restarts", "accuracy", "n",
    "variant", "checks_passed",
)
"""The same keys, in the same order, as ``service.results.COLUMNS`` (the CLI's CSV rows)."""
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


def safe_url(url: str) -> str:
    """The URL as it may be shown on a page: without its password."""
    try:
        return normalise_url(url).render_as_string(hide_password=True)
    except StoreError:
        return "(an invalid database URL)"


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


# --------------------------------------------------------------------------- evaluations


def evaluations_frame(url: str, *, experiments: Sequence[str] = ()) -> pd.DataFrame:
    """One row per evaluation with its run's experiment and kind (``EVALUATION_COLUMNS``).

    Ordered like ``robustlab results``: experiment, run cell, model, train_eps, eval_eps, attack.
    """
    columns = [Run.experiment, Run.kind] + [
        getattr(Evaluation, c) for c in EVALUATION_COLUMNS if c not in ("experiment", "kind")
    ]
    statement = (
        select(*columns)
        .join(Run, Run.id == Evaluation.run_id)
        .order_by(Run.experiment, Run.cell, Evaluation.model, Evaluation.train_eps,
                  Evaluation.eval_eps, Evaluation.attack, Evaluation.variant)
    )
    if experiments:
        statement = statement.where(Run.experiment.in_(list(experiments)))
    return _read(url, lambda engine: _frame(engine, statement, EVALUATION_COLUMNS))


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


# --------------------------------------------------------------------------- the SQL box


class QueryRefused(ValueError):
    """The text is not a single read-only SELECT/WITH statement; the message says why."""


class QueryFailed(RuntimeError):
    """The database rejected or interrupted the statement (syntax, timeout, write attempt)."""


@dataclass(frozen=True)
class SelectResult:
    frame: pd.DataFrame
    truncated: bool
    """More rows existed than the limit; only the first ``limit`` are in ``frame``."""


_SQL_TOKENS = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<estring>[Ee]'(?:[^'\\]|\\.|'')*')      # PostgreSQL E'...' strings: backslash escapes
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])
    | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$)
    | (?P<semicolon>;)
    | (?P<word>[A-Za-z_]\w*)
    | (?P<other>.)
    """,
    re.S | re.X,
)
_WRITE_WORDS = frozenset({
    "insert", "update", "delete", "drop", "alter", "create", "attach", "detach", "pragma",
    "grant", "revoke", "truncate", "vacuum", "copy", "merge", "reindex", "call", "lock",
    "cluster", "refresh", "listen", "notify", "set", "reset", "begin", "commit", "rollback",
    "savepoint", "release",
})
"""Keywords that have no business in a read-only query; seen outside strings and comments."""


def check_select(sql: str) -> str:
    """The statement (without a trailing ``;``) if it is one SELECT or WITH query.

    Raises ``QueryRefused`` for anything else: other statements, several statements
    (``SELECT 1; DROP TABLE runs``), or a data-modifying keyword anywhere in a WITH query.
    Comments and string literals are skipped, so ``WHERE stage = 'drop'`` is fine.
    """
    words: list[str] = []
    statements = 1
    trailing = False
    for match in _SQL_TOKENS.finditer(sql):
        group = match.lastgroup
        if group == "semicolon":
            trailing = True
        elif group != "comment" and not match.group().isspace():
            if trailing:
                statements += 1
                trailing = False
            if group == "word":
                words.append(match.group().lower())
    if not words:
        raise QueryRefused("empty query: write one SELECT statement")
    if statements > 1:
        raise QueryRefused("only one statement is allowed (no ';' between statements)")
    if words[0] not in ("select", "with"):
        raise QueryRefused(
            f"only SELECT (or WITH ... SELECT) queries are allowed, not {words[0].upper()}"
        )
    forbidden = sorted(set(words) & _WRITE_WORDS)
    if forbidden:
        raise QueryRefused(
            "read-only queries only: remove " + ", ".join(w.upper() for w in forbidden)
        )
    return sql.strip().rstrip(";").strip()


def run_select(url: str, sql: str, *, limit: int = 1000, timeout_s: float = 5.0) -> SelectResult:
    """Run one SELECT on a read-only connection, keeping at most ``limit`` rows.

    Raises ``QueryRefused`` before touching the database, ``QueryFailed`` when the database
    refuses the statement or it runs longer than ``timeout_s``.
    """
    statement = check_select(sql)
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_select(_sqlite_path(parsed), statement, limit, timeout_s)
    return _postgres_select(url, statement, limit, timeout_s)


def _sqlite_path(url: URL) -> Path:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise QueryFailed(f"the SQL box needs a SQLite file, not {database or 'memory'!r}")
    path = Path(database).resolve()
    if not path.exists():
        raise QueryFailed(f"no database file at {path}")
    return path


def _sqlite_select(path: Path, statement: str, limit: int, timeout_s: float) -> SelectResult:
    """SQLite: a ``mode=ro`` connection, ``query_only``, and a progress handler as the deadline."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        connection.execute("PRAGMA query_only = ON")
        cursor = connection.execute(statement)
        rows = cursor.fetchmany(limit + 1)
        columns = [d[0] for d in cursor.description or ()]
    except sqlite3.OperationalError as exc:
        if time.monotonic() > deadline:
            raise QueryFailed(f"query stopped after {timeout_s:g} s (the time limit)") from exc
        raise QueryFailed(str(exc)) from exc
    except sqlite3.Error as exc:
        raise QueryFailed(str(exc)) from exc
    finally:
        connection.close()
    return _result(rows, columns, limit)


def _postgres_select(url: str, statement: str, limit: int, timeout_s: float) -> SelectResult:
    """PostgreSQL: a READ ONLY transaction with a ``statement_timeout``, always rolled back.

    The statement goes through psycopg's extended protocol (``prepare=True``), which makes the
    server itself refuse a second statement hidden in the text.
    """
    import psycopg  # only PostgreSQL deployments need the driver loaded here

    try:
        raw = _engine(url).raw_connection()
    except SQLAlchemyError as exc:
        raise QueryFailed(describe(exc)) from exc
    try:
        driver = raw.driver_connection
        assert driver is not None, "a pooled connection always has its driver's connection"
        cursor = driver.cursor()  # psycopg's own cursor: execute(..., prepare=True)
        try:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
            cursor.execute(statement, prepare=True)
            rows = cursor.fetchmany(limit + 1)
            columns = [d[0] for d in cursor.description or ()]
        except psycopg.errors.QueryCanceled as exc:
            raise QueryFailed(f"query stopped after {timeout_s:g} s (the time limit)") from exc
        except psycopg.Error as exc:
            raise QueryFailed(str(exc).strip().splitlines()[0]) from exc
        finally:
            raw.rollback()
    finally:
        raw.close()
    return _result(rows, columns, limit)


def _result(rows: Sequence[Sequence[Any]], columns: list[str], limit: int) -> SelectResult:
    frame = pd.DataFrame([tuple(row) for row in rows[:limit]], columns=columns)
    return SelectResult(frame=frame, truncated=len(rows) > limit)
