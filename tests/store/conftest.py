"""Store fixtures: a migrated database on each backend, with its artifacts in a temp directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store import migrate
from service.store.repository import Store
from service.store.storage import LocalStorage


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    migrate.upgrade(database_url)
    opened = Store(database_url, storage=LocalStorage(tmp_path / "artifacts"))
    yield opened
    opened.close()
