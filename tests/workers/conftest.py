"""Fixtures for the queue tests: a migrated PostgreSQL database, a flushed Redis database, the
environment a ``robustlab`` subprocess needs, and cleanup of every process a test starts.

Everything is real: Redis at 127.0.0.1:6379 (database 15, or ``ROBUSTLAB_TEST_REDIS``),
PostgreSQL through the throwaway database of ``tests/conftest.py``, real MNIST digits from the
cache that ``tests/science`` fills.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from service.store import migrate
from service.store.repository import Store
from service.store.storage import LocalStorage
from tests.workers.helpers import TEST_REDIS, Processes, flush_redis


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database, empty before and after the test."""
    flush_redis(TEST_REDIS)
    yield TEST_REDIS
    flush_redis(TEST_REDIS)


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """An empty PostgreSQL database migrated to the code's head revision."""
    migrate.upgrade(postgres_url)
    return postgres_url


def queue_env(database_url: str, broker_url: str, directory: Path,
              data_dir: Path) -> dict[str, str]:
    """The environment of a ``robustlab`` subprocess: this test's database, broker and dirs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROBUSTLAB_")}
    env.update({
        "ROBUSTLAB_DATABASE_URL": database_url,
        "ROBUSTLAB_BROKER_URL": broker_url,
        "ROBUSTLAB_RUNS_DIR": str(directory / "runs"),
        "ROBUSTLAB_ARTIFACT_DIR": str(directory / "artifacts"),
        "ROBUSTLAB_DATA_DIR": str(data_dir),
        "ROBUSTLAB_DEFAULT_QUEUE": "gpu",
        "OMP_NUM_THREADS": "1",  # tests share two cores; a worker needs no more than one
    })
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The ``Settings`` a subprocess with ``env`` sees, for in-process calls in the test."""
    return Settings(**{key.removeprefix("ROBUSTLAB_").lower(): value
                       for key, value in env.items() if key.startswith("ROBUSTLAB_")})


@pytest.fixture
def env(pg_url: str, redis_url: str, tmp_path: Path, mnist_data_dir: Path) -> dict[str, str]:
    return queue_env(pg_url, redis_url, tmp_path, mnist_data_dir)


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[Store]:
    opened = Store(env["ROBUSTLAB_DATABASE_URL"],
                   storage=LocalStorage(Path(env["ROBUSTLAB_ARTIFACT_DIR"])))
    yield opened
    opened.close()


@pytest.fixture
def processes(tmp_path: Path, env: dict[str, str]) -> Iterator[Processes]:
    started = Processes(tmp_path, env)
    try:
        yield started
    finally:
        started.stop_all()
