"""Alembic, driven from code: upgrade, downgrade, the current revision and the schema check.

The application never calls ``create_all``: the schema exists only through the migrations in
``migrations/versions``, and every command that opens the store first checks that the database
is at the code's head revision, refusing to run otherwise with the command that fixes it
(mlflow's ``_verify_schema``). The Alembic ``Config`` is built here, so no ``alembic.ini`` is
needed at run time; the root ``alembic.ini`` is for people who run ``alembic`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from service.store.session import (
    NO_RETRY,
    DatabaseUnavailable,
    RetryPolicy,
    SchemaOutOfDate,
    StoreError,
    describe,
    make_engine,
    normalise_url,
)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
FIX_COMMAND = "run `robustlab db upgrade`"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for this repository's migrations, optionally bound to a connection.

    ``migrations/env.py`` migrates through ``connection`` when it is given, so the engine's
    SQLite pragmas and psycopg URL handling apply to migrations too.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision``, creating the database first if it is missing."""
    _create_database_if_missing(url)
    _migrate(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` drops every table)."""
    _migrate(url, lambda config: command.downgrade(config, revision))


def current_revision(url_or_engine: str | Engine, *, retry: RetryPolicy = NO_RETRY) -> str | None:
    """The database's Alembic revision; ``None`` for an empty (or not yet created) database."""
    if isinstance(url_or_engine, Engine):
        return retry.call(url_or_engine, lambda: _read_revision(url_or_engine))
    engine = make_engine(url_or_engine)
    try:
        return retry.call(engine, lambda: _read_revision(engine))
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision in ``migrations/versions``: the schema this code expects."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def check_schema(engine: Engine, *, retry: RetryPolicy = NO_RETRY) -> None:
    """Raise ``SchemaOutOfDate`` (naming the fix) unless the database is at the head revision."""
    current = current_revision(engine, retry=retry)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDate(f"database is not initialised: {FIX_COMMAND}")
    if current not in {script.revision for script in _scripts().walk_revisions()}:
        raise SchemaOutOfDate(
            f"database schema is at revision {current}, which this code does not know "
            f"(it needs {head}): the database was migrated by a newer robustlab"
        )
    raise SchemaOutOfDate(
        f"database schema is at revision {current}, code needs {head}: {FIX_COMMAND}"
    )


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _migrate(url: str, step: Callable[[Config], None]) -> None:
    engine = make_engine(url)

    def in_one_transaction() -> None:
        with engine.begin() as connection:
            step(alembic_config(connection))

    try:
        NO_RETRY.call(engine, in_one_transaction)
    finally:
        engine.dispose()


def _read_revision(engine: Engine) -> str | None:
    if _sqlite_file_missing(engine.url):
        return None  # connecting would create an empty file as a side effect
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _sqlite_file_missing(url: URL) -> bool:
    database = url.database or ""
    return (url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
            and not database.startswith("file:") and not Path(database).exists())


def _create_database_if_missing(url: str) -> None:
    """SQLite: create the file's directory. PostgreSQL: ``CREATE DATABASE`` if it is absent.

    A new deployment then needs one command, ``robustlab db upgrade``, whatever the backend.
    The maintenance database is only touched when the target really does not exist, so a
    user without access to it can still migrate an existing database.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if _sqlite_file_missing(parsed):
            Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        return
    if parsed.database and not _postgres_database_exists(parsed):
        _create_postgres_database(parsed)


def _postgres_database_exists(url: URL) -> bool:
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect():
            return True
    except OperationalError as exc:
        if f'database "{url.database}" does not exist' in str(exc.orig):
            return False
        raise DatabaseUnavailable(f"database unavailable: {describe(exc)}") from exc
    finally:
        engine.dispose()


def _create_postgres_database(url: URL) -> None:
    server = make_engine(url.set(database="postgres").render_as_string(hide_password=False))
    try:
        with server.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            quoted = connection.dialect.identifier_preparer.quote(url.database or "")
            connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot create database {url.database!r}: {describe(exc)}") from exc
    finally:
        server.dispose()
