"""Alembic environment: migrates through the project's own engine (SQLite pragmas, psycopg 3).

``service.store.migrate`` hands in an open connection (``config.attributes["connection"]``).
Run as ``alembic upgrade head`` from the repository root, the URL comes from
``ROBUSTLAB_DATABASE_URL`` (or ``sqlalchemy.url`` in ``alembic.ini`` if set there).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from service.settings import get_settings
from service.store.models import Base
from service.store.session import make_engine

config = context.config
target_metadata = Base.metadata
if config.config_file_name is not None:  # run as `alembic ...` with alembic.ini
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations(connection: Connection) -> None:
    """Batch mode on SQLite, which can alter a table only by copying it.

    Foreign keys are turned off on SQLite first: a batch copy drops the old table, and with
    foreign keys on that drop would cascade-delete every row pointing at it. The pragma is a
    no-op inside a transaction, so it comes before the first statement; the connection is
    closed after migrating (``service.store.migrate`` disposes its engine).
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=sqlite, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(database_url())
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    url = database_url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"),
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
