"""Fixtures of the dashboard tests: a seeded SQLite database and the environment pointing at it.

The seeded database is made once per test session (seeding migrates and writes ~60 rows);
tests that write (cancel) get their own with ``fresh_seeded``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st

from contract.limits import get_limits
from service.settings import get_settings
from tests.dashboard.seed import Seeded, seed_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Put back ``sys.modules['__main__']`` after each test: Streamlit's AppTest runs a page
    as ``__main__`` and leaves it there, and every later process started by forkserver or spawn
    (the training DataLoader's workers) would then re-run that page on start-up."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


def _seed(root: Path) -> Seeded:
    return seed_database(f"sqlite:///{root / 'robustlab.db'}", root / "artifacts")


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return _seed(tmp_path_factory.mktemp("seeded"))


@pytest.fixture
def fresh_seeded(tmp_path: Path) -> Seeded:
    return _seed(tmp_path)


def point_settings_at(monkeypatch: pytest.MonkeyPatch, seeded: Seeded, runs_dir: Path) -> None:
    """Make ``get_settings()`` (read by the dashboard) describe the seeded database."""
    monkeypatch.setenv("ROBUSTLAB_DATABASE_URL", seeded.url)
    monkeypatch.setenv("ROBUSTLAB_ARTIFACT_DIR", str(seeded.artifact_dir))
    monkeypatch.setenv("ROBUSTLAB_RUNS_DIR", str(runs_dir))
    get_settings.cache_clear()
    get_limits.cache_clear()
    st.cache_data.clear()


@pytest.fixture
def dashboard_env(seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Path) -> Iterator[Seeded]:
    """The seeded database in the environment, the repository as working directory."""
    monkeypatch.chdir(REPO)
    point_settings_at(monkeypatch, seeded, tmp_path / "runs")
    yield seeded
    get_settings.cache_clear()
    get_limits.cache_clear()
