"""The SQL box on least privilege (issue 13b): every probe of the issue, on the real servers.

PostgreSQL runs as the test cluster's superuser, as compose's database user does: the box must
hold anyway, through ``SET LOCAL ROLE robustlab_reader`` inside the reader's SECURITY DEFINER
function. The memory bombs run in a child process so their peak memory can be measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from contract.limits import get_limits
from dashboard.launch import LaunchRefused, check_sql_box
from service.settings import Settings, get_settings
from service.store import migrate, sql_box
from service.store.queries import QueryFailed, QueryRefused, ReaderUnavailable, run_select
from tests.conftest import POSTGRES_SERVER, execute_autocommit

REPO = Path(__file__).resolve().parents[2]
TABLES = {"specs", "runs", "evaluations", "metrics", "artifacts", "checkpoints", "schedules",
          "schedule_coverage", "alembic_version"}
DENIED = "permission denied|must be (a )?superuser"


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def reader_db(postgres_url: str) -> str:
    migrate.upgrade(postgres_url)
    return postgres_url


# --------------------------------------------------------------------------- PostgreSQL probes


PG_PROBES = {
    "pg_read_file": "SELECT pg_read_file('/etc/passwd')",
    "pg_ls_dir": "SELECT pg_ls_dir('.')",
    "pg_authid": "SELECT rolname, rolpassword FROM pg_authid",
    "pg_hba_file_rules": "SELECT * FROM pg_hba_file_rules",
    "lo_import": "SELECT lo_import('/etc/passwd')",
    "physical replication slot": "SELECT pg_create_physical_replication_slot('robustlab_probe')",
    "logical replication slot":
        "SELECT pg_create_logical_replication_slot('robustlab_probe', 'test_decoding')",
    "pg_stat_file": "SELECT pg_stat_file('/etc/passwd')",
    "pg_read_binary_file": "SELECT pg_read_binary_file('/etc/passwd')",
}


@pytest.mark.postgres
def test_superuser_deployment_probes_are_refused(reader_db: str) -> None:
    """Each probe of the issue, one after the other on one migrated database."""
    for probe, sql in PG_PROBES.items():
        with pytest.raises(QueryFailed, match=DENIED):
            run_select(reader_db, sql)
            pytest.fail(f"{probe}: not refused")
    with psycopg.connect(_libpq(reader_db)) as connection:
        slots = connection.execute("SELECT count(*) FROM pg_replication_slots "
                                   "WHERE slot_name = 'robustlab_probe'").fetchone()
        objects = connection.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    assert slots == (0,) and objects == (0,)


@pytest.mark.postgres
def test_the_box_reads_robustlabs_tables_as_the_reader(reader_db: str) -> None:
    result = run_select(reader_db, "SELECT current_user AS who, session_user AS login, "
                                   "(SELECT count(*) FROM runs) AS runs")
    assert result.frame.to_dict("records") == [{"who": "robustlab_reader", "login": "postgres",
                                                "runs": 0}]
    empty = run_select(reader_db, "SELECT id, status FROM runs")
    assert list(empty.frame.columns) == ["id", "status"] and empty.frame.empty
    with psycopg.connect(_libpq(reader_db)) as connection:
        granted = connection.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = 'robustlab_reader' AND table_catalog = current_database()"
        ).fetchall()
    assert {table for table, _ in granted} == TABLES
    assert {privilege for _, privilege in granted} == {"SELECT"}


@pytest.mark.postgres
def test_set_config_cannot_switch_back_to_the_superuser(reader_db: str) -> None:
    """The text check refuses set_config; without it the reader's function still holds."""
    escalate = ("SELECT set_config('role', 'postgres', true) AS r, length(query_to_xml("
                "'SELECT pg_read_file(''/etc/passwd'') AS f', true, false, '')::text) AS n")
    with pytest.raises(QueryRefused, match="SET_CONFIG"):
        run_select(reader_db, escalate)
    with pytest.raises(QueryFailed, match='cannot set parameter "role"'):
        sql_box._postgres_select(reader_db, escalate, 10, 5.0)
    hidden = "SELECT query_to_xml('SELECT set_con' || 'fig(''role'', ''postgres'', true)', " \
             "true, false, '')"
    with pytest.raises(QueryFailed, match='cannot set parameter "role"'):
        run_select(reader_db, hidden)


@pytest.mark.postgres
def test_an_advisory_lock_does_not_outlive_the_query(reader_db: str) -> None:
    assert len(run_select(reader_db, "SELECT pg_advisory_lock(4242) AS locked").frame) == 1
    with psycopg.connect(_libpq(reader_db), autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)
        other.execute("SELECT pg_advisory_unlock(4242)")


@pytest.mark.postgres
def test_a_victim_session_cannot_be_terminated(reader_db: str) -> None:
    with psycopg.connect(_libpq(reader_db), autocommit=True) as victim:
        pid = victim.info.backend_pid
        for kill in ("pg_terminate_backend", "pg_cancel_backend"):
            with pytest.raises(QueryFailed, match=DENIED):
                run_select(reader_db, f"SELECT {kill}({pid})")
        assert victim.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.postgres
def test_rows_are_fetched_incrementally_under_the_row_cap(reader_db: str) -> None:
    started = time.monotonic()
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
    result = run_select(reader_db, endless, limit=7)
    assert result.truncated and result.frame["x"].tolist() == list(range(1, 8))
    assert time.monotonic() - started < 5, "the row cap must stop the query, not the client"


@pytest.mark.postgres
def test_one_long_expression_meets_the_deadline(reader_db: str) -> None:
    started = time.monotonic()
    with pytest.raises(QueryFailed, match="time limit"):
        run_select(reader_db, "SELECT count(*) FROM generate_series(1, 10000000000)",
                   timeout_s=0.5)
    assert time.monotonic() - started < 5


BOMB = """
import json, resource, sys
from service.store.queries import QueryFailed, run_select
for sql in json.loads(sys.argv[2]):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = "returned"
    try:
        run_select(sys.argv[1], sql, limit=100000, timeout_s=60)
    except QueryFailed as exc:
        outcome = str(exc)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"outcome": outcome, "grown_mib": grown}))
"""


def _bombs(url: str, *queries: str, env: dict[str, str]) -> list[dict]:
    """Run queries in a fresh interpreter: what each raised and how much peak memory grew."""
    done = subprocess.run([sys.executable, "-c", BOMB, url, json.dumps(queries)], cwd=REPO,
                          env=os.environ | env, capture_output=True, text=True, timeout=180,
                          check=True)
    return [json.loads(line) for line in done.stdout.strip().splitlines()]


@pytest.mark.postgres
def test_memory_bombs_are_stopped_by_the_byte_cap(reader_db: str) -> None:
    """The issue's bomb reached 2.4 GB: now its first 100 MB row stops it on the server."""
    outcomes = _bombs(reader_db, "SELECT repeat('x', 100000000) FROM generate_series(1, 6)",
                      "SELECT repeat('x', 1000000) FROM generate_series(1, 2000)",
                      env={"ROBUSTLAB_SQL_MAX_BYTES": str(8 << 20)})
    for outcome in outcomes:
        assert "byte cap" in outcome["outcome"] and outcome["grown_mib"] < 100, outcomes


@pytest.fixture
def login_role(reader_db: str) -> Iterator[str]:
    """A LOGIN role that may connect but is not (yet) a member of robustlab_reader."""
    name = f"robustlab_probe_{uuid.uuid4().hex[:8]}"
    database = make_url(reader_db).database
    execute_autocommit(POSTGRES_SERVER, f'CREATE ROLE "{name}" LOGIN')
    execute_autocommit(reader_db, f'GRANT CONNECT ON DATABASE "{database}" TO "{name}"')
    try:
        yield make_url(reader_db).set(username=name).render_as_string(hide_password=False)
    finally:
        execute_autocommit(reader_db, f'REVOKE CONNECT ON DATABASE "{database}" FROM "{name}"')
        execute_autocommit(POSTGRES_SERVER, f'DROP ROLE IF EXISTS "{name}"')


@pytest.mark.postgres
def test_a_login_that_cannot_set_role_gets_one_clear_error(reader_db: str,
                                                           login_role: str) -> None:
    user = make_url(login_role).username
    with pytest.raises(ReaderUnavailable, match=f"GRANT robustlab_reader TO {user}") as error:
        sql_box.check_reader(login_role)
    assert "\n" not in str(error.value)
    with pytest.raises(ReaderUnavailable):
        run_select(login_role, "SELECT 1 AS one")
    as_dashboard = Settings.model_validate({"database_url": reader_db,
                                            "dashboard_database_url": login_role})
    with pytest.raises(LaunchRefused, match=f"GRANT robustlab_reader TO {user}"):
        check_sql_box(as_dashboard)  # what `robustlab dashboard` checks before serving
    execute_autocommit(reader_db, f'GRANT robustlab_reader TO "{user}"')
    try:
        sql_box.check_reader(login_role)
        check_sql_box(as_dashboard)
        assert run_select(login_role, "SELECT count(*) AS n FROM runs").frame["n"].item() == 0
    finally:
        execute_autocommit(reader_db, f'REVOKE robustlab_reader FROM "{user}"')


@pytest.mark.postgres
def test_downgrade_keeps_the_role_while_another_database_uses_it(reader_db: str) -> None:
    other = make_url(reader_db).set(database=f"robustlab_test_{uuid.uuid4().hex[:10]}")
    execute_autocommit(POSTGRES_SERVER, f'CREATE DATABASE "{other.database}"')
    other_url = other.render_as_string(hide_password=False)
    try:
        migrate.upgrade(other_url)
        migrate.downgrade(reader_db, "0003")
        with pytest.raises(ReaderUnavailable, match="robustlab_select"):
            sql_box.check_reader(reader_db)
        with psycopg.connect(_libpq(reader_db)) as connection:
            assert connection.execute(
                "SELECT count(*) FROM information_schema.role_table_grants "
                "WHERE grantee = 'robustlab_reader' AND table_catalog = current_database()"
            ).fetchone() == (0,)
        assert run_select(other_url, "SELECT count(*) AS n FROM runs").frame["n"].item() == 0
        migrate.downgrade(other_url, "0003")
        with psycopg.connect(_libpq(reader_db)) as connection:
            exists = connection.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = 'robustlab_reader'").fetchone()
            referenced = connection.execute(
                "SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid "
                "WHERE r.rolname = 'robustlab_reader'").fetchone()
        # Other robustlab databases of this cluster (other test sessions) may still use it.
        assert (exists == (1,)) == (referenced != (0,))
        migrate.upgrade(reader_db)
        sql_box.check_reader(reader_db)
    finally:
        execute_autocommit(POSTGRES_SERVER, f'DROP DATABASE IF EXISTS "{other.database}" '
                                            "WITH (FORCE)")


# --------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_db(sqlite_url: str) -> str:
    migrate.upgrade(sqlite_url)
    return sqlite_url


def test_sqlite_length_bomb_is_refused_at_once(sqlite_db: str) -> None:
    """``length(hex(randomblob(450000000)))`` reached 2.3 GB; SQLITE_LIMIT_LENGTH stops it."""
    started = time.monotonic()
    with pytest.raises(QueryFailed, match="too big"):
        run_select(sqlite_db, "SELECT length(hex(randomblob(450000000))) AS n")
    assert time.monotonic() - started < 2


def test_sqlite_memory_cap_and_byte_cap(sqlite_db: str) -> None:
    heap, rows = _bombs(sqlite_db, "SELECT length(randomblob(20000000)) AS n",
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                        "SELECT x, hex(randomblob(5000)) FROM c",
                        env={"ROBUSTLAB_SQL_SQLITE_HEAP_BYTES": str(16 << 20),
                             "ROBUSTLAB_SQL_MAX_BYTES": str(24 << 20)})
    assert "memory cap" in heap["outcome"] and heap["grown_mib"] < 60, heap
    assert "byte cap" in rows["outcome"] and rows["grown_mib"] < 60, rows


def test_sqlite_row_cap_stops_an_endless_query(sqlite_db: str) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
    result = run_select(sqlite_db, endless, limit=5)
    assert result.truncated and result.frame["x"].tolist() == [1, 2, 3, 4, 5]


def test_sqlite_cannot_attach_even_past_the_text_check(sqlite_db: str, tmp_path: Path) -> None:
    path = Path(make_url(sqlite_db).database or "")
    with pytest.raises(QueryFailed, match="attached|readonly|read-only"):
        sql_box._sqlite_select(path, f"ATTACH '{tmp_path / 'new.db'}' AS x", 10, 5.0)
    assert not (tmp_path / "new.db").exists()


def test_the_row_limit_is_capped_by_the_settings(sqlite_db: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLAB_SQL_MAX_ROWS", "3")
    get_settings.cache_clear()
    get_limits.cache_clear()
    try:
        endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
        result = run_select(sqlite_db, endless, limit=100_000)
        assert result.truncated and len(result.frame) == 3
    finally:
        get_settings.cache_clear()
        get_limits.cache_clear()
