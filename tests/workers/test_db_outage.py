"""A database outage during a run (issue 19): ridden out up to ``ROBUSTLAB_DB_OUTAGE_S``, then
the run fails with the reason as soon as the database answers again.

A real ``robustlab run`` of a small training on real MNIST, its database a throwaway
PostgreSQL cluster (``tests.workers.pg_cluster``) that the test stops and starts: the shared
server the rest of the suite uses is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.records import MetricRecord
from contract.specs.loading import load_spec_text
from service.outage import DatabaseOutage
from service.recording import StoreReporter, record
from service.store import migrate
from service.store.repository import Store
from service.store.session import RetryPolicy
from tests.workers.conftest import queue_env
from tests.workers.helpers import (
    TEST_REDIS,
    Process,
    Processes,
    theory_spec,
    train_spec,
    wait_for,
)
from tests.workers.pg_cluster import Cluster, postgres_bin


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A throwaway cluster; missing PostgreSQL binaries fail the test (never a silent skip)."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.fail("no PostgreSQL binaries (initdb): apt-get install -y postgresql")
    started = Cluster(bindir)
    try:
        migrate.upgrade(started.url)
        yield started
    finally:
        started.remove()


@pytest.fixture
def outage_env(cluster: Cluster, tmp_path: Path, mnist_data_dir: Path) -> dict[str, str]:
    return queue_env(cluster.url, TEST_REDIS, tmp_path, mnist_data_dir)


def _start_run(processes: Processes, tmp_path: Path, name: str, epochs: int,
               store: Store, **env: str) -> tuple[Process, str]:
    """``robustlab run`` of a small training; returns once its first progress is written."""
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(train_spec(name, epochs=epochs, train_subset=4000))  # ~0.4 s an epoch
    process = processes.start("run", str(spec), env=env)

    def training() -> str | None:
        if process.popen.poll() is not None:
            raise AssertionError(f"robustlab run exited early:\n{process.output()}")
        runs = store.list_runs(experiment=name)
        return runs[0].id if runs and runs[0].progress > 0 else None

    return process, wait_for(training, 60, "training to start")


@pytest.mark.slow
def test_an_outage_of_20_s_is_ridden_out_every_metric_once(
        cluster: Cluster, outage_env: dict[str, str], tmp_path: Path) -> None:
    epochs = 60
    store = Store(cluster.url)
    processes = Processes(tmp_path, outage_env)
    try:
        process, run_id = _start_run(processes, tmp_path, "outage_ridden", epochs, store)
        store.close()  # the test's own connections must not notice the outage either
        cluster.stop()
        stopped, stopped_at = time.monotonic(), time.time()
        time.sleep(20)
        assert process.popen.poll() is None, "the run ended during the outage:\n" + \
            process.output()
        cluster.start()
        restarted, restarted_at = time.monotonic(), time.time()
        code = process.popen.wait(timeout=120)
        ended = time.monotonic()
        store = Store(cluster.url)
        run = store.get_run(run_id)
        assert code == 0 and run.status == "succeeded", (run.error, process.output())
        losses = store.metrics(run_id=run_id, name="train_loss")
        assert [m.step for m in losses] == list(range(1, epochs + 1))  # every epoch, once
        assert [c.epoch for c in store.list_checkpoints(run_id=run_id)] == \
            list(range(1, epochs + 1))
        written = [Path(c.path).stat().st_mtime for c in store.list_checkpoints(run_id=run_id)]
        assert any(stopped_at < at < restarted_at for at in written), "no epoch in the outage"
        assert any(at > restarted_at for at in written), "no epoch after the outage"
        keys = [m.key for m in store.metrics(run_id=run_id)]
        assert len(keys) == len(set(keys))
        output = process.output()
        assert "database unreachable" in output and "answered again" in output, output
        assert "Traceback" not in output
        print(f"\noutage {restarted - stopped:.1f} s; run ended {ended - restarted:.1f} s after "
              "the database came back")
    finally:
        processes.stop_all()
        store.close()


@pytest.mark.slow
def test_an_outage_past_the_limit_fails_the_run_once_the_database_answers(
        cluster: Cluster, outage_env: dict[str, str], tmp_path: Path) -> None:
    limit_s = 15
    store = Store(cluster.url)
    processes = Processes(tmp_path, outage_env)
    try:
        process, run_id = _start_run(processes, tmp_path, "outage_too_long", 200, store,
                                     ROBUSTLAB_DB_OUTAGE_S=str(limit_s))
        store.close()
        cluster.stop()
        stopped = time.monotonic()
        time.sleep(limit_s + 7)
        assert process.popen.poll() is None, "the run gave up before the database answered"
        cluster.start()
        restarted = time.monotonic()
        code = process.popen.wait(timeout=60)
        ended = time.monotonic()
        store = Store(cluster.url)
        run = store.get_run(run_id)
        assert code != 0 and run.status == "failed", (run.status, process.output())
        assert run.error and run.error.startswith(
            f"the database did not answer for more than {limit_s} s"), run.error
        assert "ROBUSTLAB_DB_OUTAGE_S" in run.error and "\n" not in run.error
        epochs_done = len(store.metrics(run_id=run_id, name="train_loss"))
        assert 0 < epochs_done < 200  # it stopped mid-run; what it computed is kept
        assert "Traceback" not in process.output()
        assert ended - restarted < 10, "marked failed long after the database answered"
        print(f"\noutage {restarted - stopped:.1f} s (limit {limit_s} s); run marked failed "
              f"{ended - restarted:.1f} s after the database came back")
    finally:
        processes.stop_all()
        store.close()


def test_the_reporter_holds_records_through_an_outage_and_stops_past_the_limit(
        cluster: Cluster) -> None:
    """In-process, to the second: a reporter whose database went away holds what it gets,
    notices the database back from a cancel check alone, and stops past ``outage_s``."""
    store = Store(cluster.url, retry=RetryPolicy(attempts=1))
    try:
        (run,) = record(load_spec_text(theory_spec("reporter_outage")), store).runs
        store.mark_running(run.id, host="h", device="cpu", git_sha=None, package_versions={})
        reporter = StoreReporter(store, run.id, interval_s=0.0, outage_s=4.0)

        cluster.stop()
        reporter.metric(MetricRecord(name="loss", value=0.5, step=1))
        reporter.flush()  # held, not raised
        assert reporter.should_stop() is False and reporter.outage.ongoing
        cluster.start()
        wait_for(lambda: not reporter.should_stop() and not reporter.outage.ongoing, 10,
                 "a cancel check to find the database back")
        assert [(m.step, m.value) for m in store.metrics(run_id=run.id)] == [(1, 0.5)]

        cluster.stop()
        reporter.metric(MetricRecord(name="loss", value=0.25, step=2))
        reporter.flush()
        time.sleep(4.5)
        with pytest.raises(DatabaseOutage, match=r"^the database did not answer for more "
                                                 r"than 4 s since \d\d:\d\d:\d\d UTC"):
            reporter.should_stop()
        cluster.start()
        reporter.drain(limit=False)  # what it computed is still written once it answers
        assert [m.step for m in store.metrics(run_id=run.id)] == [1, 2]
    finally:
        store.close()
