"""`robustlab doctor` against a live and a stopped Redis, a current and a stale database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.service.test_cli import robustlab
from tests.workers.helpers import TEST_REDIS, closed_port


def env_for(tmp_path: Path, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    env.update({"ROBUSTLAB_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                "ROBUSTLAB_BROKER_URL": broker, "ROBUSTLAB_DEFAULT_QUEUE": "doctor-test"})
    return env


@pytest.mark.redis
def test_doctor_with_a_live_broker_and_no_worker(tmp_path: Path) -> None:
    env = env_for(tmp_path, TEST_REDIS)
    robustlab("db", "upgrade", cwd=tmp_path, env=env, check=True)
    healthy = robustlab("doctor", cwd=tmp_path, env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    for name in ("database", "broker", "worker", "devices", "datasets", "artifacts",
                 "dashboard"):
        assert name in healthy.stdout
    assert "migrations current" in healthy.stdout and "answers" in healthy.stdout
    assert robustlab("doctor", "--require", "broker", cwd=tmp_path, env=env).returncode == 0
    no_worker = robustlab("doctor", "--require", "broker,worker", cwd=tmp_path, env=env)
    assert no_worker.returncode == 1 and "not ready: worker" in no_worker.stdout


def test_doctor_with_a_stopped_broker_and_a_stale_database(tmp_path: Path) -> None:
    env = env_for(tmp_path, f"redis://127.0.0.1:{closed_port()}/0")
    stale = robustlab("doctor", cwd=tmp_path, env=env)
    assert stale.returncode == 1
    assert "robustlab db upgrade" in stale.stdout and "not ready: database" in stale.stdout
    robustlab("db", "upgrade", cwd=tmp_path, env=env, check=True)
    assert robustlab("doctor", cwd=tmp_path, env=env).returncode == 0
    down = robustlab("doctor", "--require", "broker", cwd=tmp_path, env=env)
    assert down.returncode == 1 and "not ready: broker" in down.stdout
    assert "Traceback" not in down.stdout + down.stderr
    wrong = robustlab("doctor", "--require", "gpu", cwd=tmp_path, env=env)
    assert wrong.returncode == 2 and "broker, worker, cuda" in wrong.stderr
