"""One real ``robustlab worker --device cpu`` serving every test of this module.

The worker reaches PostgreSQL through a ``TcpProxy`` so that tests can take the database away
from it; the test itself reads the database directly. Runs: tiny theory specs (no data) and a
small adversarial training of a linear model on real MNIST (a checkpoint per epoch).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from contract.specs.loading import load_spec_text
from service import scheduler
from service.queue.submission import Submission, submit
from service.settings import Settings
from service.store import migrate
from service.store.entities import RunInfo
from service.store.repository import Store
from tests.conftest import POSTGRES_SERVER, execute_autocommit
from tests.workers.conftest import queue_env, settings_of
from tests.workers.helpers import (
    TEST_REDIS,
    Process,
    Processes,
    TcpProxy,
    evaluate_spec,
    flush_redis,
    queue_length,
    robustlab,
    theory_spec,
    train_spec,
    unacked_count,
    wait_for,
)

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

RUN_TIMEOUT = 240.0
"""Generous: two cores are shared with every other test process."""
OUTAGE_S = 6
"""``ROBUSTLAB_DB_OUTAGE_S`` of the worker: how long it rides out a lost database."""


@dataclass
class Deployment:
    """The module's worker, its database (direct and through the proxy) and settings."""

    worker: Process
    proxy: TcpProxy
    store: Store
    settings: Settings
    env: dict[str, str]
    directory: Path

    def submit(self, text: str) -> Submission:
        return submit(load_spec_text(text), self.store, settings=self.settings)

    def run(self, run_id: str) -> RunInfo:
        return self.store.get_run(run_id)

    def wait_status(self, run_id: str, *statuses: str) -> RunInfo:
        return wait_for(lambda: (run := self.run(run_id)).status in statuses and run,
                        RUN_TIMEOUT, f"run {run_id} to be {'/'.join(statuses)}")

    def wait_checkpoint(self, run_id: str, epoch: int) -> None:
        wait_for(lambda: any(c.epoch >= epoch for c in self.store.list_checkpoints(run_id=run_id)),
                 RUN_TIMEOUT, f"run {run_id} to checkpoint epoch {epoch}", interval=0.1)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A migrated PostgreSQL database for this module, dropped at its end."""
    name = f"robustlab_queue_{uuid.uuid4().hex[:10]}"
    execute_autocommit(POSTGRES_SERVER, f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_SERVER).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        execute_autocommit(POSTGRES_SERVER, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def deployment(database: str, tmp_path_factory: pytest.TempPathFactory,
               mnist_data_dir: Path) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("deployment")
    parsed = make_url(database)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    proxy.open()
    env = queue_env(database, TEST_REDIS, directory, mnist_data_dir)
    worker_env = {
        "ROBUSTLAB_DATABASE_URL": parsed.set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False),
        # give up on the database after 0.5 + 1 + 2 s, so an outage test stays short
        "ROBUSTLAB_DB_RETRY_ATTEMPTS": "4",
        "ROBUSTLAB_DB_RETRY_BASE_DELAY_S": "0.5",
        # and ride out an outage for OUTAGE_S only (the default is 60 s)
        "ROBUSTLAB_DB_OUTAGE_S": str(OUTAGE_S),
    }
    flush_redis(TEST_REDIS)
    processes = Processes(directory, env)
    store = Store(database)
    try:
        worker = processes.worker(env=worker_env)
        yield Deployment(worker, proxy, store, settings_of(env), env, directory)
    finally:
        processes.stop_all()
        proxy.cut()
        store.close()
        flush_redis(TEST_REDIS)


def _queue_drained() -> bool:
    return queue_length(TEST_REDIS, "gpu") == 0 and unacked_count(TEST_REDIS) == 0


def test_submitted_runs_succeed_with_their_rows_in_postgres(deployment: Deployment) -> None:
    submission = deployment.submit(theory_spec("worker_theory", seeds=2))
    assert len(submission.queued) == 2

    for queued in submission.queued:
        run = deployment.wait_status(queued.id, "succeeded", "failed")
        assert run.status == "succeeded", run.error
        assert (run.attempts, run.progress, run.device, run.task_id) == (1, 1.0, "cpu", run.id)
        assert run.host and run.git_sha and run.package_versions["celery"]
        rows = deployment.store.results(run_ids=[run.id])
        assert rows and {row["dataset"] for row in rows} == {"theory"}
    wait_for(_queue_drained, 30, "the queue to be empty and every message acknowledged")


def test_the_worker_parent_holds_torch_but_no_cuda(deployment: Deployment) -> None:
    """The parent preloads the science so each run's fresh child starts fast, and never loads
    the CUDA driver, which a forked child could not use again (celery#3402)."""
    libraries = Path(f"/proc/{deployment.worker.pid}/maps").read_text()
    assert "libtorch_cpu.so" in libraries
    assert "libcuda.so" not in libraries


def test_cancel_stops_a_running_run_and_a_queued_one_never_starts(
        deployment: Deployment) -> None:
    # Long enough that the cancel (a CLI process started after training began) lands early.
    long = deployment.submit(train_spec("worker_cancel_train", epochs=200)).queued[0]
    waiting = deployment.submit(theory_spec("worker_cancel_theory")).queued[0]
    wait_for(lambda: deployment.run(long.id).progress > 0, RUN_TIMEOUT, "training to start")

    result = robustlab("cancel", waiting.id, long.id, env=deployment.env,
                       cwd=deployment.directory)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{waiting.id} cancelled",
        f"{long.id} cancel requested: it stops at its next batch boundary",
    ]
    stopped = deployment.wait_status(long.id, "cancelled", "succeeded", "failed")
    assert stopped.status == "cancelled" and stopped.progress < 0.5
    assert not deployment.store.results(run_ids=[long.id]), "cancelled before its evaluation"
    wait_for(_queue_drained, 60, "the cancelled run's task to be delivered and acknowledged")
    never = deployment.run(waiting.id)
    assert (never.status, never.attempts, never.started_at) == ("cancelled", 0, None)


def test_a_killed_pool_process_is_requeued_at_once_and_resumes(deployment: Deployment) -> None:
    """SIGKILL the process running the task; the worker survives and puts the task back
    (task_reject_on_worker_lost) without waiting for the one-day visibility timeout."""
    run_id = deployment.submit(train_spec("worker_child_kill", epochs=5)).queued[0].id
    deployment.wait_checkpoint(run_id, 1)
    first = deployment.store.list_checkpoints(run_id=run_id)[0]
    (child,) = deployment.worker.children()

    os.kill(child, signal.SIGKILL)

    run = deployment.wait_status(run_id, "succeeded", "failed")
    assert run.status == "succeeded", run.error
    _assert_resumed_once(deployment.store, run, first.path, first.sha256, epochs=5)
    assert deployment.worker.popen.poll() is None


def _assert_resumed_once(store: Store, run: RunInfo, first_path: str, first_sha: str | None,
                         *, epochs: int) -> None:
    """Two attempts; the second continued from a checkpoint; every record exactly once."""
    assert run.attempts == 2
    checkpoints = store.list_checkpoints(run_id=run.id)
    assert [c.epoch for c in checkpoints] == list(range(1, epochs + 1))
    assert [c.final for c in checkpoints] == [False] * (epochs - 1) + [True]
    assert checkpoints[0].sha256 == first_sha  # epoch 1 was not trained (or written) again
    assert Path(first_path).is_file()
    losses = store.metrics(run_id=run.id, name="train_loss")
    assert [m.step for m in losses] == list(range(1, epochs + 1))
    rows = store.results(run_ids=[run.id])
    assert sorted(row["attack"] for row in rows) == ["none", "pgd", "worst_case"]


def test_database_briefly_unreachable_the_run_carries_on(deployment: Deployment) -> None:
    run_id = deployment.submit(train_spec("worker_db_blip", epochs=4)).queued[0].id
    wait_for(lambda: deployment.run(run_id).progress > 0, RUN_TIMEOUT, "training to start")

    deployment.proxy.cut()
    time.sleep(1.0)  # a second without a database: less than the store waits (3.5 s)
    deployment.proxy.open()

    run = deployment.wait_status(run_id, "succeeded", "failed")
    assert run.status == "succeeded", run.error
    assert run.attempts == 1


def test_database_gone_too_long_fails_the_run_with_the_reason(deployment: Deployment) -> None:
    run_id = deployment.submit(train_spec("worker_db_outage", epochs=40)).queued[0].id
    wait_for(lambda: deployment.run(run_id).progress > 0, RUN_TIMEOUT, "training to start")

    noticed = deployment.worker.output().count("database unreachable")
    deployment.proxy.cut()
    try:
        wait_for(lambda: deployment.worker.output().count("database unreachable") > noticed, 60,
                 "the worker to notice the outage")
        time.sleep(OUTAGE_S + 2)  # past the outage it rides out: the run stops
    finally:
        deployment.proxy.open()

    run = deployment.wait_status(run_id, "failed", "succeeded", "cancelled")
    assert run.status == "failed"
    assert run.error and run.error.startswith(
        f"the database did not answer for more than {OUTAGE_S} s"), run.error


def test_a_standing_evaluation_runs_on_a_new_final_checkpoint(deployment: Deployment) -> None:
    trained = deployment.submit(train_spec("worker_trained", epochs=1, train_subset=100))
    spec = deployment.directory / "standing.yaml"
    spec.write_text(evaluate_spec("worker_standing"))
    scheduler.add(deployment.store, spec, checkpoints_of="worker_trained",
                  settings=deployment.settings)

    assert deployment.wait_status(trained.queued[0].id, "succeeded", "failed").status == \
        "succeeded"
    report = scheduler.scan(deployment.store, settings=deployment.settings)

    (submitted,) = report.submitted
    final = deployment.store.final_checkpoint(trained.queued[0].id)
    assert final is not None and submitted.checkpoint == final.path
    (evaluation,) = submitted.submission.queued
    run = deployment.wait_status(evaluation.id, "succeeded", "failed")
    assert run.status == "succeeded", run.error
    assert run.resolved_spec["source"]["checkpoint"] == final.path
    attacks = {row["attack"] for row in deployment.store.results(run_ids=[run.id])}
    assert {"none", "fgsm"} <= attacks
    assert scheduler.scan(deployment.store, settings=deployment.settings).submitted == []
