"""Engines and managed sessions: URLs, SQLite pragmas, retries against a real unreachable server."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from contract.records import MetricRecord
from service.store import migrate
from service.store.repository import DatabaseUnavailable, Store, StoreError
from service.store.session import RetryPolicy, make_engine, normalise_url
from tests.store.helpers import record_runs


def _closed_port() -> int:
    """A local TCP port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db",
                                 "postgresql+psycopg://u@h/db"])
def test_postgres_urls_use_psycopg3(url: str) -> None:
    assert normalise_url(url).drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError):
        make_engine(url)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("busy_timeout") == 30_000
            assert pragma("foreign_keys") == 1
    finally:
        engine.dispose()


def test_unreachable_database_is_retried_with_backoff_then_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/robustlab"
    retry = RetryPolicy(attempts=3, base_delay_s=0.05)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "service.store.session"), \
            pytest.raises(DatabaseUnavailable, match="after 3 attempt"):
        Store(url, retry=retry)
    assert time.monotonic() - started >= 0.05 + 0.1, "waits 0.05 s, then 0.1 s"
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2


def test_writes_to_an_unreachable_database_fail_with_the_reason() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/robustlab"
    store = Store(url, check=False, retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    with pytest.raises(DatabaseUnavailable, match="refused"):
        store.upsert_metric("run", MetricRecord("loss", 1.0))


def test_a_write_succeeds_once_the_database_is_back(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The database file appears (atomically, as a directory rename) while the store retries."""
    ready = tmp_path / "ready"
    ready_url = f"sqlite:///{ready / 'robustlab.db'}"
    migrate.upgrade(ready_url)
    seeded = Store(ready_url)
    run = record_runs(seeded)[0]
    seeded.close()
    later = tmp_path / "later"
    store = Store(f"sqlite:///{later / 'robustlab.db'}", check=False,
                  retry=RetryPolicy(attempts=8, base_delay_s=0.05))
    timer = threading.Timer(0.2, os.rename, args=(ready, later))
    timer.start()
    with caplog.at_level(logging.WARNING, "service.store.session"):
        store.set_progress(run.id, 0.5, "train")
    timer.join()
    assert store.get_run(run.id).progress == 0.5
    assert any("retrying" in r.getMessage() for r in caplog.records), "it did have to wait"
    store.close()


def test_errors_that_waiting_cannot_fix_are_not_retried(sqlite_url: str) -> None:
    store = Store(sqlite_url, check=False, retry=RetryPolicy(attempts=3, base_delay_s=1.0))
    started = time.monotonic()
    with pytest.raises(StoreError, match="no such table") as raised:
        store.list_runs()
    assert not isinstance(raised.value, DatabaseUnavailable)
    assert time.monotonic() - started < 0.5
    store.close()
