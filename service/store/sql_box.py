"""The dashboard's ad-hoc SQL box: one SELECT, least privilege, bounded in rows, bytes and time.

``service.store.queries`` re-exports ``run_select`` (the contract) and the exceptions. What
guards what (docs/security.md has the threat model):

- ``check_select`` refuses anything but one SELECT/WITH statement, with a message that says
  why. It explains refusals; it is not the guard (a string passed to ``query_to_xml`` is SQL
  it cannot see).
- PostgreSQL: a fresh connection per query (no pool, so no advisory lock, prepared statement,
  temporary table or setting outlives the query; closing the session is the whole cleanup),
  a READ ONLY transaction that is always rolled back, ``statement_timeout``, ``SET LOCAL ROLE
  robustlab_reader`` (migration 0004: NOLOGIN, SELECT on robustlab's tables only), and the
  query itself run by the reader's SECURITY DEFINER function ``robustlab_select``, inside which
  PostgreSQL refuses ``set_config('role', ...)``: without it a superuser deployment's session
  could switch back to itself in the middle of the query. The function computes rows one at a
  time and stops after ``limit`` + 1 rows or at the byte cap; the client reads them through a
  server-side cursor with ``fetchmany``, counting bytes again.
- SQLite: the file opened ``mode=ro`` with ``query_only``, ATTACH disabled, a progress handler
  as the deadline, ``SQLITE_LIMIT_LENGTH`` at the byte cap (no single string or blob can grow
  past it), SQLite's process-wide hard heap limit as the memory cap, and an authorizer
  (``sqlite3.Connection.set_authorizer``, SQLite's own per-statement check at prepare time)
  that lets the statement read robustlab's tables and call ``SQLITE_FUNCTIONS`` only: no
  ``fts3_tokenizer`` (which hands out a pointer SQLite would call), ``load_extension``,
  ``readfile``-style functions, PRAGMA, ATTACH, virtual tables or ``sqlite_master``; a denial
  is one line naming what was denied.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import URL

from service.settings import get_settings
from service.store.models import Base
from service.store.session import normalise_url

READER_ROLE = "robustlab_reader"
SELECT_FUNCTION = "robustlab_select"
"""Created by migration 0004 (``migrations/versions/0004_reader_role.py``)."""
FETCH_BATCH = 200
CONNECT_TIMEOUT_S = 5

__all__ = ["READER_ROLE", "QueryFailed", "QueryRefused", "ReaderUnavailable", "SelectResult",
           "check_reader", "check_select", "run_select"]


class QueryRefused(ValueError):
    """The text is not a single read-only SELECT/WITH statement; the message says why."""


class QueryFailed(RuntimeError):
    """The database rejected or interrupted the statement (syntax, timeout, a cap, privileges)."""


class ReaderUnavailable(QueryFailed):
    """The connection cannot become ``robustlab_reader``; the message says what to fix."""


@dataclass(frozen=True)
class SelectResult:
    frame: pd.DataFrame
    truncated: bool
    """More rows existed than the limit; only the first ``limit`` are in ``frame``."""


# --------------------------------------------------------------------------- the text check


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
    "savepoint", "release", "set_config",
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


# --------------------------------------------------------------------------- entry points


def run_select(url: str, sql: str, *, limit: int = 1000, timeout_s: float = 5.0,
               max_bytes: int | None = None) -> SelectResult:
    """Run one SELECT as described in the module docstring, keeping at most ``limit`` rows.

    ``limit`` is capped at ``ROBUSTLAB_SQL_MAX_ROWS`` and ``max_bytes`` (the values' total size)
    defaults to ``ROBUSTLAB_SQL_MAX_BYTES``. Raises ``QueryRefused`` before touching the
    database, ``QueryFailed`` when the database refuses the statement, it runs longer than
    ``timeout_s``, or its result passes the byte cap.
    """
    statement = check_select(sql)
    settings = get_settings()
    limit = max(1, min(int(limit), settings.sql_max_rows))
    max_bytes = settings.sql_max_bytes if max_bytes is None else max_bytes
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_select(_sqlite_path(parsed), statement, limit, timeout_s, max_bytes)
    return _postgres_select(url, statement, limit, timeout_s, max_bytes)


def check_reader(url: str) -> None:
    """Raise ``ReaderUnavailable`` unless the SQL box can become ``robustlab_reader`` on ``url``.

    The dashboard calls this when it starts, so a login that is not a member of the role (or a
    database migrated before 0004) is one clear line then, not a puzzle in the SQL box later.
    SQLite has no roles: nothing to check.
    """
    if normalise_url(url).get_backend_name() == "sqlite":
        return
    with _pg_connect(url) as connection:
        try:
            _enter_reader(connection, timeout_s=CONNECT_TIMEOUT_S)
            found = connection.execute(
                "SELECT to_regprocedure(%s) IS NOT NULL",
                (f"{SELECT_FUNCTION}(text, bigint, bigint)",)).fetchone()
        finally:
            connection.rollback()
    if not found or not found[0]:
        raise ReaderUnavailable(
            f"the SQL box's function {SELECT_FUNCTION} is missing: run `robustlab db upgrade` "
            "(migration 0004)")


# --------------------------------------------------------------------------- PostgreSQL


def _pg_connect(url: str) -> Any:
    """A fresh psycopg connection (never pooled: closing it ends every piece of session state)."""
    import psycopg  # only PostgreSQL deployments need the driver loaded here

    conninfo = normalise_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    try:
        return psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="robustlab SQL box")
    except psycopg.Error as exc:
        raise QueryFailed(f"cannot connect: {_first_line(exc)}") from exc


def _enter_reader(connection: Any, *, timeout_s: float) -> None:
    """Open the READ ONLY transaction with its deadline, then become the reader role."""
    import psycopg

    connection.execute("SET TRANSACTION READ ONLY")
    milliseconds = max(1, int(timeout_s * 1000))
    connection.execute(f"SET LOCAL statement_timeout = {milliseconds}")
    connection.execute(f"SET LOCAL lock_timeout = {milliseconds}")
    connection.execute(f"SET LOCAL idle_in_transaction_session_timeout = {milliseconds + 5000}")
    try:
        connection.execute(f"SET LOCAL ROLE {READER_ROLE}")
    except psycopg.Error as exc:
        user = connection.info.user
        raise ReaderUnavailable(
            f"the SQL box cannot SET ROLE {READER_ROLE} as database user {user!r} "
            f"({_first_line(exc)}): run `robustlab db upgrade` (migration 0004) and "
            f"GRANT {READER_ROLE} TO {user}") from exc


def _postgres_select(url: str, statement: str, limit: int, timeout_s: float,
                     max_bytes: int = 32 << 20) -> SelectResult:
    import psycopg

    deadline = time.monotonic() + timeout_s
    with _pg_connect(url) as connection:
        try:
            _enter_reader(connection, timeout_s=timeout_s)
            columns = _describe(connection, statement)
            cursor = connection.cursor(name="robustlab_sql_box")  # DECLARE ... CURSOR: server side
            cursor.execute(f"SELECT {SELECT_FUNCTION}(%s, %s, %s)",
                           (statement, limit, max_bytes))
            rows: list[list[Any]] = []
            size = 0
            while batch := cursor.fetchmany(FETCH_BATCH):
                for (text,) in batch:
                    size += len(text)
                    rows.append(_json_row(text))
                _check_caps(size, max_bytes, deadline, timeout_s)
        except psycopg.errors.QueryCanceled as exc:
            raise QueryFailed(f"query stopped after {timeout_s:g} s (the time limit)") from exc
        except psycopg.errors.ProgramLimitExceeded as exc:
            raise QueryFailed(f"{_first_line(exc)}: ask for fewer or smaller rows") from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise QueryFailed(f"{_first_line(exc)} (the SQL box reads as {READER_ROLE}, which "
                              "may read robustlab's tables only)") from exc
        except psycopg.Error as exc:
            raise QueryFailed(_first_line(exc)) from exc
        finally:
            connection.rollback()
    return _result(rows, columns, limit)


def _describe(connection: Any, statement: str) -> list[str]:
    """The statement's column names, from preparing it (nothing runs), even for zero rows."""
    from psycopg import pq

    pgconn = connection.pgconn
    prepared = pgconn.prepare(b"", statement.encode())
    if prepared.status != pq.ExecStatus.COMMAND_OK:
        raise QueryFailed(_first_line(prepared.error_message.decode(errors="replace")))
    described = pgconn.describe_prepared(b"")
    if described.status != pq.ExecStatus.COMMAND_OK:
        raise QueryFailed(_first_line(described.error_message.decode(errors="replace")))
    if described.nfields == 0:
        raise QueryFailed("the statement returns no rows: the SQL box runs read-only SELECTs")
    return [(described.fname(i) or b"?").decode(errors="replace")
            for i in range(described.nfields)]


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as parsed, keys in order and duplicates kept (``SELECT 1 AS a, 2 AS a``)."""


def _json_row(text: str) -> list[Any]:
    """One row from ``to_json(q)``: the values in column order, nested objects as dicts."""
    pairs = json.loads(text, object_pairs_hook=_Pairs)
    return [_plain(value) for _, value in pairs]


def _plain(value: Any) -> Any:
    if isinstance(value, _Pairs):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# --------------------------------------------------------------------------- SQLite


SQLITE_TABLES = frozenset(Base.metadata.tables) | {"alembic_version"}
"""What the box may read on SQLite: robustlab's tables (as the reader role on PostgreSQL)."""
SQLITE_FUNCTIONS = frozenset({
    "->", "->>", "abs", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "avg", "ceil",
    "ceiling", "char", "coalesce", "concat", "concat_ws", "cos", "cosh", "count", "cume_dist",
    "current_date", "current_time", "current_timestamp", "date", "datetime", "degrees",
    "dense_rank", "exp", "first_value", "floor", "format", "glob", "group_concat", "hex", "ifnull",
    "iif", "instr", "json", "json_array", "json_array_length", "json_extract", "json_group_array",
    "json_group_object", "json_insert", "json_object", "json_patch", "json_quote", "json_remove",
    "json_replace", "json_set", "json_type", "json_valid", "julianday", "lag", "last_value",
    "lead", "length", "like", "likelihood", "likely", "ln", "log", "log10", "log2", "lower",
    "ltrim", "max", "min", "mod", "nth_value", "ntile", "nullif", "octet_length", "percent_rank",
    "pi", "pow", "power", "printf", "quote", "radians", "random", "randomblob", "rank", "replace",
    "round", "row_number", "rtrim", "sign", "sin", "sinh", "soundex", "sqrt", "strftime",
    "string_agg", "substr", "substring", "sum", "tan", "tanh", "time", "timediff", "total", "trim",
    "trunc", "typeof", "unhex", "unicode", "unixepoch", "unlikely", "upper", "zeroblob"
})
"""SQLite's plain functions: pure computations on values (no files, extensions, pointers or
logs). Anything else, ``fts3_tokenizer``, ``load_extension`` and ``readfile`` included, is
denied."""


def _sqlite_authorizer(denied: list[str]) -> Any:
    """The authorizer: reads of ``SQLITE_TABLES``, ``SQLITE_FUNCTIONS``, SELECT and recursive
    CTEs; everything else is denied, the reason kept in ``denied`` for the one-line error."""
    allowed_actions = {sqlite3.SQLITE_SELECT, getattr(sqlite3, "SQLITE_RECURSIVE", 33)}

    def authorize(action: int, first: str | None, second: str | None, _database: str | None,
                  _trigger: str | None) -> int:
        if action in allowed_actions:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and first in SQLITE_TABLES:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and (second or "").lower() in SQLITE_FUNCTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            denied.append(f"the SQL box does not call the function {second!r}: only SQLite's "
                          "plain functions (no files, extensions, tokenizers or pointers)")
        elif action == sqlite3.SQLITE_READ:
            denied.append(f"the SQL box reads robustlab's tables only, not {first!r}")
        elif action == sqlite3.SQLITE_PRAGMA:
            denied.append(f"the SQL box runs no PRAGMA ({first!r})")
        elif action == sqlite3.SQLITE_UPDATE and first == "sqlite_master":  # a vtab's set-up
            denied.append("the SQL box reads robustlab's tables only, no table-valued function "
                          "(json_each, pragma_table_info, ...)")
        elif action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            denied.append("ATTACH is denied: no database is attached to the SQL box")
        else:
            denied.append("the SQL box runs one read-only SELECT on robustlab's tables: "
                          f"{_ACTION_NAMES.get(action, str(action))} is denied")
        return sqlite3.SQLITE_DENY

    return authorize


_ACTION_NAMES = {getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ").lower()
                 for name in ("SQLITE_INSERT", "SQLITE_UPDATE", "SQLITE_DELETE",
                              "SQLITE_TRANSACTION", "SQLITE_SAVEPOINT", "SQLITE_CREATE_TABLE",
                              "SQLITE_DROP_TABLE", "SQLITE_ANALYZE", "SQLITE_ALTER_TABLE",
                              "SQLITE_REINDEX", "SQLITE_CREATE_VTABLE", "SQLITE_DROP_VTABLE")
                 if hasattr(sqlite3, name)}


def _sqlite_path(url: URL) -> Path:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise QueryFailed(f"the SQL box needs a SQLite file, not {database or 'memory'!r}")
    path = Path(database).resolve()
    if not path.exists():
        raise QueryFailed(f"no database file at {path}")
    return path


def _sqlite_select(path: Path, statement: str, limit: int, timeout_s: float,
                   max_bytes: int = 32 << 20) -> SelectResult:
    """SQLite: read-only, no ATTACH, a deadline, a length limit and the hard heap limit."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1024, min(max_bytes, 1_000_000_000)))
    connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    try:
        connection.execute("PRAGMA query_only = ON")
        # Process-wide, and the pragma can only lower it: every SQLite connection of the
        # dashboard process shares this one cap (their page caches are a few MiB each).
        connection.execute(f"PRAGMA hard_heap_limit = {get_settings().sql_sqlite_heap_bytes}")
        denied: list[str] = []
        connection.set_authorizer(_sqlite_authorizer(denied))
        try:
            cursor = connection.execute(statement)
        except sqlite3.DatabaseError:
            if denied:
                raise QueryFailed(denied[0]) from None
            raise
        columns = [d[0] for d in cursor.description or ()]
        rows: list[Sequence[Any]] = []
        size = 0
        while len(rows) <= limit and (batch := cursor.fetchmany(min(FETCH_BATCH,
                                                                     limit + 1 - len(rows)))):
            rows.extend(batch)
            size += sum(_sqlite_size(value) for row in batch for value in row)
            _check_caps(size, max_bytes, deadline, timeout_s)
    except MemoryError as exc:
        raise QueryFailed("the query ran out of the SQL box's memory cap "
                          "(ROBUSTLAB_SQL_SQLITE_HEAP_BYTES)") from exc
    except sqlite3.DataError as exc:  # "string or blob too big"
        raise QueryFailed(f"{exc}: no value may pass the {max_bytes} byte cap") from exc
    except sqlite3.OperationalError as exc:
        if time.monotonic() > deadline:
            raise QueryFailed(f"query stopped after {timeout_s:g} s (the time limit)") from exc
        raise QueryFailed(str(exc)) from exc
    except sqlite3.Error as exc:
        raise QueryFailed(str(exc)) from exc
    finally:
        connection.close()
    return _result(rows, columns, limit)


def _sqlite_size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 8


# --------------------------------------------------------------------------- shared


def _check_caps(size: int, max_bytes: int, deadline: float, timeout_s: float) -> None:
    if size > max_bytes:
        raise QueryFailed(f"the result passed the {max_bytes} byte cap: ask for fewer or "
                          "smaller rows")
    if time.monotonic() > deadline:
        raise QueryFailed(f"query stopped after {timeout_s:g} s (the time limit)")


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _result(rows: Sequence[Sequence[Any]], columns: list[str], limit: int) -> SelectResult:
    frame = pd.DataFrame([tuple(row) for row in rows[:limit]], columns=columns)
    return SelectResult(frame=frame, truncated=len(rows) > limit)
