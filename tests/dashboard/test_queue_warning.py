"""The Submit page's "no worker consumes this queue" check, against a real Redis and a real
``robustlab worker`` process (Celery's inspect, answered by the worker)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from contract.limits import get_limits
from dashboard.submission import no_worker_warning
from service.settings import get_settings
from tests.dashboard.seed import Seeded
from tests.workers.helpers import Processes

BROKER = "redis://127.0.0.1:6379/15"


@pytest.mark.redis
def test_warns_only_when_no_worker_consumes_the_queue(
        seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, other = (f"robustlab_consumer_test_{uuid.uuid4().hex[:8]}" for _ in range(2))
    monkeypatch.setenv("ROBUSTLAB_BROKER_URL", BROKER)
    get_settings.cache_clear()
    get_limits.cache_clear()
    env = {**os.environ, "ROBUSTLAB_BROKER_URL": BROKER, "ROBUSTLAB_DATABASE_URL": seeded.url,
           "ROBUSTLAB_ARTIFACT_DIR": str(tmp_path / "artifacts")}
    processes = Processes(tmp_path, env)
    try:
        assert no_worker_warning(queue) == (
            f"No worker consumes the queue '{queue}': the runs wait until one starts. "
            f"Start one with `robustlab worker --queues {queue}`.")
        processes.worker("--queues", queue)
        assert no_worker_warning(queue) is None
        assert no_worker_warning(other) is not None, "a worker on another queue does not count"
    finally:
        processes.stop_all()
        get_settings.cache_clear()
        get_limits.cache_clear()
