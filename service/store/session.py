"""Engines and managed sessions: the one place that talks to the database driver.

SQLite gets WAL journalling (readers never block the writer), a busy timeout (writers queue
instead of failing at once) and foreign keys (so deleting a run deletes its rows). PostgreSQL
URLs go through psycopg 3. Every unit of work runs in ``ManagedSessions.run``: it commits or
rolls back, retries with exponential backoff while the database is unreachable (a worker must
survive a database restart), and turns driver errors into the project's own exceptions, so
callers never catch SQLAlchemy types (the pattern of mlflow's ``_get_managed_session_maker``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 30.0
DEFAULT_RETRY_ATTEMPTS = 5
DEFAULT_RETRY_BASE_DELAY_S = 0.5

_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "unable to open",
                     "disk i/o error")
"""SQLite reports every failure as OperationalError; only these are worth waiting out."""

_POSTGRES_PERMANENT = ("does not exist", "password authentication failed",
                       "no pg_hba.conf entry", "authentication failed", "permission denied",
                       "invalid connection option", "invalid dsn", "sslmode value")
"""Connection failures that no wait cures: a missing database or role, refused credentials, a
malformed URL. psycopg reports them as OperationalError with no SQLSTATE (the server's FATAL
message is all there is), like a refused connection or a restarting server, which are
transient: the message tells them apart."""


class StoreError(Exception):
    """Something the store could not do; the message says what, for a user to read."""


class RunNotFound(StoreError, LookupError):
    """No run has the given id (or id prefix)."""


class SchemaOutOfDate(StoreError):
    """The database schema is not the code's; the message names the command that fixes it."""


class DatabaseUnavailable(StoreError):
    """The database could not be reached, even after retrying."""


def safe_url(url: str) -> str:
    """The URL as it may be shown on a page or a terminal: without its password."""
    try:
        return normalise_url(url).render_as_string(hide_password=True)
    except StoreError:
        return "(an invalid database URL)"


def normalise_url(url: str) -> URL:
    """Parse a database URL; bare ``postgresql://`` (and ``postgres://``) means psycopg 3.

    SQLAlchemy would pick psycopg2 for a bare PostgreSQL URL, which is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database URL {parsed.render_as_string()!r}: "
                         "use sqlite:///PATH or postgresql://USER@HOST/DB")
    return parsed


def make_engine(url: str) -> Engine:
    """An engine for a SQLite file or a PostgreSQL database, configured for this project."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection pragmas: they are not stored in the database file (except WAL)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_transient(exc: SQLAlchemyError, engine: Engine) -> bool:
    """Whether waiting could help: connection lost or refused, or SQLite busy beyond its timeout.

    On SQLite, "no such table" is an OperationalError too, and retrying it only delays the
    real message; on PostgreSQL, so is a database that does not exist (``_POSTGRES_PERMANENT``).
    """
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if engine.dialect.name == "sqlite":
        return any(marker in str(exc.orig).lower() for marker in _SQLITE_TRANSIENT)
    return not any(marker in str(exc.orig).lower() for marker in _POSTGRES_PERMANENT)


def describe(exc: SQLAlchemyError) -> str:
    """The driver's own message (first line), without SQLAlchemy's SQL and background link."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait out an unreachable database before giving up.

    Args:
        attempts: how many times an action is tried (1: no retry, errors mapped at once).
        base_delay_s: the first wait between attempts; it doubles after each failure.
    """

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    base_delay_s: float = DEFAULT_RETRY_BASE_DELAY_S

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def call(self, engine: Engine, action: Callable[[], T]) -> T:
        """``action()``, retried after transient errors; SQLAlchemy errors become StoreErrors."""
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except SQLAlchemyError as exc:
                if not is_transient(exc, engine):
                    raise StoreError(_with_hint(describe(exc))) from exc
                if attempt == self.attempts:
                    raise DatabaseUnavailable(
                        f"database unavailable after {attempt} attempt(s): {describe(exc)}"
                    ) from exc
                delay = self.base_delay_s * 2 ** (attempt - 1)
                log.warning("database error (attempt %d/%d), retrying in %.2fs: %s",
                            attempt, self.attempts, delay, describe(exc))
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _with_hint(message: str) -> str:
    """A missing PostgreSQL database gets the command that creates it."""
    if "database" in message and "does not exist" in message:
        return f"{message} (`robustlab db upgrade` creates it)"
    return message


NO_RETRY = RetryPolicy(attempts=1)


class ManagedSessions:
    """Runs units of work in their own transaction, with retries and the project's exceptions."""

    def __init__(self, engine: Engine, retry: RetryPolicy | None = None) -> None:
        self.engine = engine
        self.retry = retry or RetryPolicy()
        self._maker = sessionmaker(engine, expire_on_commit=False)

    def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in one transaction, committed if it returns, rolled back if not.

        The whole unit is tried again (a fresh session) after a transient failure, so ``work``
        must be safe to repeat: upserts and updates, not blind inserts of new rows.
        """
        return self.retry.call(self.engine, lambda: self._once(work))

    def _once(self, work: Callable[[Session], T]) -> T:
        with self._maker() as session, session.begin():
            return work(session)
