"""Alembic migrations on both backends: they build exactly the models' schema, and go both ways."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from contract.records import EvaluationRecord
from service.store import migrate
from service.store.models import Base
from service.store.repository import SchemaOutOfDate, Store
from service.store.session import make_engine
from tests.store.helpers import record_runs

REPO_MIGRATIONS = migrate.MIGRATIONS_DIR
TABLES = set(Base.metadata.tables)
NEXT = "9999"

NEXT_REVISION = '''"""A later schema change, for testing a database one revision behind."""
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("note")
'''


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.fixture
def next_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The code's migrations plus one more on top: what a newer robustlab would ship.

    Returns the revision it was added on (the code's head).
    """
    head = migrate.head_revision()
    directory = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, directory,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "versions" / f"{NEXT}_note.py").write_text(
        NEXT_REVISION.format(revision=NEXT, down_revision=head))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", directory)
    return head


def test_migrated_schema_equals_the_models(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
    assert _tables(database_url) == TABLES


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    assert migrate.current_revision(database_url) is None
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()
    migrate.downgrade(database_url, "base")
    assert migrate.current_revision(database_url) is None
    assert _tables(database_url) == set()
    migrate.upgrade(database_url)
    assert _tables(database_url) == TABLES
    Store(database_url).close()  # the schema check passes


def test_unmigrated_database_names_the_fix(database_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match="not initialised: run `robustlab db upgrade`"):
        Store(database_url)


def test_unmigrated_sqlite_file_is_not_created_by_the_check(sqlite_url: str) -> None:
    with pytest.raises(SchemaOutOfDate):
        Store(sqlite_url)
    assert not Path(make_url(sqlite_url).database or "").exists()


def test_database_behind_head_names_the_fix(database_url: str, next_revision: str) -> None:
    migrate.upgrade(database_url, next_revision)
    expected = (f"database schema is at revision {next_revision}, code needs {NEXT}: "
                "run `robustlab db upgrade`")
    with pytest.raises(SchemaOutOfDate) as raised:
        Store(database_url)
    assert str(raised.value) == expected
    migrate.upgrade(database_url)
    Store(database_url).close()


def test_database_ahead_of_the_code_is_refused(database_url: str, next_revision: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    migrate.upgrade(database_url)
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", REPO_MIGRATIONS)  # back to this code's
    with pytest.raises(SchemaOutOfDate, match=f"revision {NEXT}, which this code does not know"):
        Store(database_url)


def test_batch_migration_keeps_the_rows(database_url: str, next_revision: str) -> None:
    """Rebuilding ``runs`` on SQLite must not cascade-delete the evaluations pointing at it."""
    migrate.upgrade(database_url, next_revision)
    store = Store(database_url, check=False)
    run = record_runs(store)[0]
    store.upsert_evaluation(run.id, EvaluationRecord(model="linear", dataset="binary_mnist", accuracy=0.5, n=10))
    store.close()
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, next_revision)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM evaluations")).scalar_one() == 1
            assert "note" not in {c["name"] for c in inspect(connection).get_columns("runs")}
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_upgrade_creates_a_missing_postgres_database(postgres_url: str) -> None:
    url = make_url(postgres_url).set(database=f"robustlab_new_{uuid.uuid4().hex[:8]}")
    target = url.render_as_string(hide_password=False)
    migrate.upgrade(target)
    try:
        assert migrate.current_revision(target) == migrate.head_revision()
    finally:
        engine = make_engine(make_url(postgres_url).render_as_string(hide_password=False))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{url.database}" WITH (FORCE)')
        engine.dispose()


def test_upgrade_creates_the_sqlite_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'dir' / 'robustlab.db'}"
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
