"""Faults a lab service must survive (issue 13, probes (e) and the faults of Deliver 5).

Real processes, real signals, real databases: an unwritable runs directory, SIGTERM and SIGINT
to ``robustlab run``, a run whose process died (stale heartbeat), a non-Redis broker URL, a
PostgreSQL database that does not exist, and the dashboard's local runs being reaped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from contract.specs.loading import load_spec_text
from contract.status import RunStatus
from dashboard import submission
from service.recording import STALE_AFTER_S, resumable
from service.settings import Settings
from service.store import migrate
from service.store.repository import Store
from service.store.session import RetryPolicy, StoreError

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
TINY = """name: faults
kind: theory
n_train: 200
n_test: 200
epochs: 5
distribution: {d: 20, eta: 0.5}
models: [averaging]
"""
LONG = """name: faults_long
kind: theory
n_train: 2000
n_test: 2000
epochs: 100000
distribution: {d: 400, eta: 0.2}
models: [logistic]
"""


def robustlab(*args: str, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    return subprocess.run([ROBUSTLAB, *args], cwd=cwd, env=clean | (env or {}),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> tuple[str, Store]:
    url = f"sqlite:///{tmp_path / 'robustlab.db'}"
    migrate.upgrade(url)
    return url, Store(url)


# --------------------------------------------------------------------------- runs directory


def test_an_unwritable_runs_directory_fails_the_run_with_the_message(
    sqlite_store: tuple[str, Store], tmp_path: Path
) -> None:
    from service.recording import record
    from service.runner import execute_run  # torch: only for this test

    url, store = sqlite_store
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the runs directory should be")
    settings = Settings(database_url=url, runs_dir=blocker / "runs",
                        artifact_dir=tmp_path / "artifacts")
    (run,) = record(load_spec_text(TINY), store).runs
    try:
        ended = execute_run(run.id, store, device="cpu", settings=settings)
    finally:
        store.close()
    assert ended.status == RunStatus.FAILED, "never left 'running'"
    first = ended.error.splitlines()[0] if ended.error else ""
    assert first.startswith(("NotADirectoryError", "PermissionError", "FileExistsError")), first
    assert str(blocker) in first and ended.finished_at is not None


# --------------------------------------------------------------------------- signals


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_robustlab_run_marks_the_run_interrupted_and_resumable(
    sqlite_store: tuple[str, Store], tmp_path: Path, signum: signal.Signals
) -> None:
    url, store = sqlite_store
    spec = tmp_path / "long.yaml"
    spec.write_text(LONG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    process = subprocess.Popen(
        [ROBUSTLAB, "run", str(spec)], cwd=tmp_path, text=True,
        env=env | {"ROBUSTLAB_DATABASE_URL": url}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: any(r.status == RunStatus.RUNNING
                              for r in store.list_runs(experiment="faults_long")), 120,
                  "the run to be running")
        time.sleep(1.0)  # into the training loop
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    (run,) = store.list_runs(experiment="faults_long")
    store.close()
    assert run.status == RunStatus.INTERRUPTED and run.finished_at is not None
    assert run.error is not None and run.error.startswith(f"interrupted by {signum.name}")
    assert f"robustlab resume {run.id}" in run.error and f"robustlab resume {run.id}" in stderr
    assert resumable(run) is None, "an interrupted run is resumable"
    assert run.duration_s is not None and run.duration_s < 120, "its duration stopped growing"


def test_a_stop_that_surfaces_as_another_error_still_interrupts_the_run(
    sqlite_store: tuple[str, Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM that lands inside a C extension's import surfaces as ``ImportError:
    initialization failed`` (seen under load in CI): the run is still interrupted and
    resumable, and the process still exits 128 + 15, not 'failed' with an import error."""
    from service import runner
    from service.recording import record

    url, store = sqlite_store
    monkeypatch.setenv("ROBUSTLAB_RUNS_DIR", str(tmp_path / "runs"))
    (run,) = record(load_spec_text(TINY), store).runs

    def import_broken_by_the_signal(spec: object, ctx: object) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except runner.StopSignal:  # what a module's C initialisation does with it
            raise ImportError("initialization failed") from None

    monkeypatch.setattr(runner, "get_experiment", lambda kind: import_broken_by_the_signal)
    with pytest.raises(SystemExit) as stopped, runner.stop_on_signals():
        runner.execute_run(run.id, store, settings=Settings())
    assert stopped.value.code == 128 + signal.SIGTERM
    ended = store.get_run(run.id)
    assert ended.status == RunStatus.INTERRUPTED, ended.error
    assert ended.error is not None and ended.error.startswith("interrupted by SIGTERM")
    assert resumable(ended) is None
    store.close()


def test_running_the_spec_of_an_interrupted_run_points_to_resume(
    sqlite_store: tuple[str, Store], tmp_path: Path
) -> None:
    """A new run would start from nothing; the interrupted one has checkpoints to go on from."""
    from service.recording import record

    url, store = sqlite_store
    (run,) = record(load_spec_text(TINY), store).runs
    store.set_status(run.id, RunStatus.INTERRUPTED, finished_at=datetime.now(UTC))
    again = record(load_spec_text(TINY), store)
    assert (again.runs, [r.id for r in again.pending]) == ([], [run.id])
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    shown = robustlab("run", str(spec), cwd=tmp_path, env={"ROBUSTLAB_DATABASE_URL": url})
    assert shown.returncode == 0, shown.stderr
    assert f"robustlab resume {run.id}" in shown.stderr and "--force" in shown.stderr
    assert [r.id for r in store.list_runs(experiment="faults")] == [run.id]  # none recorded
    forced = record(load_spec_text(TINY), store, force=True)
    assert len(forced.runs) == 1 and forced.pending == []
    store.close()


# --------------------------------------------------------------------------- stale runs


def test_a_run_that_writes_no_progress_keeps_its_heartbeat(sqlite_store: tuple[str, Store]
                                                           ) -> None:
    """One long batch (AutoAttack on a CPU) writes no progress for minutes: without a
    heartbeat the run looked stale and `resume` would have let a second process take it."""
    from service.recording import Heartbeat, is_stale, record

    _, store = sqlite_store
    (run,) = record(load_spec_text(TINY), store).runs
    long_ago = datetime.now(UTC) - timedelta(seconds=10 * STALE_AFTER_S)
    store.set_status(run.id, RunStatus.RUNNING, started_at=long_ago, heartbeat_at=long_ago)
    assert is_stale(store.get_run(run.id))
    with Heartbeat(store, run.id, interval_s=0.05):
        _wait_for(lambda: not is_stale(store.get_run(run.id)), 10, "a heartbeat")
        assert resumable(store.get_run(run.id)) is not None, "alive: not to be taken over"
    finished = store.finish_run(run.id, RunStatus.SUCCEEDED)
    assert not store.heartbeat(run.id), "a finished run's row is left alone"
    assert store.get_run(run.id).heartbeat_at == finished.heartbeat_at
    store.close()


def test_the_heartbeat_thread_stops_with_its_block(sqlite_store: tuple[str, Store]) -> None:
    from service.recording import Heartbeat, record

    _, store = sqlite_store
    (run,) = record(load_spec_text(TINY), store).runs
    store.set_status(run.id, RunStatus.RUNNING)
    with Heartbeat(store, run.id, interval_s=0.05) as beat:
        time.sleep(0.2)
    assert not beat._thread.is_alive()
    last = store.get_run(run.id).heartbeat_at
    time.sleep(0.2)
    assert store.get_run(run.id).heartbeat_at == last
    store.close()


def test_a_run_whose_process_died_is_shown_as_stale(sqlite_store: tuple[str, Store],
                                                   tmp_path: Path) -> None:
    from service.recording import record

    url, store = sqlite_store
    (run,) = record(load_spec_text(TINY), store).runs
    beat = datetime.now(UTC) - timedelta(seconds=10 * STALE_AFTER_S)
    store.set_status(run.id, RunStatus.RUNNING, started_at=beat - timedelta(seconds=30),
                     heartbeat_at=beat)
    store.close()
    env = {"ROBUSTLAB_DATABASE_URL": url}
    table = robustlab("runs", cwd=tmp_path, env=env)
    assert table.returncode == 0, table.stderr
    assert "stale (no heartbeat for" in table.stdout and "30.0s" in table.stdout
    shown = robustlab("runs", "show", run.id, cwd=tmp_path, env=env)
    assert "stale (no heartbeat for" in shown.stdout, shown.stdout
    listed = robustlab("runs", "--format", "json", cwd=tmp_path, env=env)
    (item,) = json.loads(listed.stdout)
    assert item["stale"] is True and item["status"] == "running" and item["duration_s"] == 30.0


# --------------------------------------------------------------------------- broker and database


def test_a_broker_url_that_is_not_redis_is_one_line_and_records_nothing(
    sqlite_store: tuple[str, Store], tmp_path: Path
) -> None:
    url, store = sqlite_store
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    env = {"ROBUSTLAB_DATABASE_URL": url, "ROBUSTLAB_BROKER_URL": "amqp://guest@127.0.0.1//"}
    for args in (("submit", str(spec)), ("worker",)):
        result = robustlab(*args, cwd=tmp_path, env=env, timeout=60)
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert "broker URL amqp:// is not supported" in line and "redis://" in line
    assert store.list_runs() == []
    store.close()


def test_a_postgres_database_that_does_not_exist_fails_at_once(postgres_url: str) -> None:
    missing = make_url(postgres_url).set(database="robustlab_no_such_database")
    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        Store(missing.render_as_string(hide_password=False),
              retry=RetryPolicy(attempts=5, base_delay_s=0.5))  # 7.5 s if it were retried
    assert time.monotonic() - started < 3
    message = str(raised.value)
    assert 'database "robustlab_no_such_database" does not exist' in message
    assert "`robustlab db upgrade` creates it" in message


def test_a_refused_connection_is_still_retried(postgres_url: str) -> None:
    """The classification is narrow: an unreachable server is waited out as before."""
    refused = make_url(postgres_url).set(port=1)
    started = time.monotonic()
    with pytest.raises(StoreError, match="database unavailable after 2 attempt"):
        Store(refused.render_as_string(hide_password=False),
              retry=RetryPolicy(attempts=2, base_delay_s=0.3))
    assert time.monotonic() - started >= 0.3


# --------------------------------------------------------------------------- dashboard


def test_run_locally_reaps_its_child_and_says_how_it_ended(tmp_path: Path) -> None:
    spec = submission.save_spec("name: bad\nkind: theory\nn_train: 1\n", "bad", tmp_path)
    launched = submission.start_local_run(spec)
    _wait_for(lambda: [s.outcome for s in submission.local_runs()
                       if s.run.pid == launched.pid] != ["running"], 60, "the run to end")
    (state,) = [s for s in submission.local_runs() if s.run.pid == launched.pid]
    assert state.outcome == "exited 2 (bad input)"
    assert not Path(f"/proc/{launched.pid}").exists(), "reaped: no zombie left behind"
    assert submission.describe_exit(-9) == "killed by SIGKILL"
    assert submission.describe_exit(143) == "exited 143 (stopped by SIGTERM)"
