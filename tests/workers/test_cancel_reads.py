"""A run stuck in a read ends at ``robustlab cancel`` within seconds, or at the read timeout
(issue 19): data loading, checkpoint loading and dataset hashing run under the run's
cancellation and ``ROBUSTLAB_READ_TIMEOUT_S`` (``workers.science.reads``).

The stuck read is real: the digest cache that hashing reads first (``ROBUSTLAB_DIGEST_CACHE``)
is a FIFO that no one writes, so opening it blocks for good, as a file on a hung mount would.
No FIFO refusal applies there: the read itself must be abandoned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.errors import Refusal
from contract.records import Cancelled
from service.store import migrate
from service.store.repository import Store
from tests.workers.conftest import queue_env
from tests.workers.helpers import (
    TEST_REDIS,
    Process,
    Processes,
    robustlab,
    train_spec,
    wait_for,
)
from workers.science.reads import ReadTimedOut, cancellable_reads, guarded

CANCEL_DEADLINE_S = 10.0


@pytest.fixture
def lab(sqlite_url: str, tmp_path: Path,
        mnist_data_dir: Path) -> Iterator[tuple[dict[str, str], Store]]:
    migrate.upgrade(sqlite_url)
    fifo = tmp_path / "digests.json"
    os.mkfifo(fifo)
    env = {**queue_env(sqlite_url, TEST_REDIS, tmp_path, mnist_data_dir),
           "ROBUSTLAB_DIGEST_CACHE": str(fifo)}
    store = Store(sqlite_url)
    yield env, store
    store.close()


def _stuck_run(processes: Processes, tmp_path: Path, store: Store, name: str,
               **env: str) -> tuple[Process, str]:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(train_spec(name, epochs=1, train_subset=100))
    process = processes.start("run", str(spec), env=env)

    def running() -> str | None:
        runs = store.list_runs(experiment=name)
        return runs[0].id if runs and runs[0].status == "running" else None

    return process, wait_for(running, 90, "the run to start")


def test_cancel_ends_a_run_stuck_hashing_its_dataset(
        lab: tuple[dict[str, str], Store], tmp_path: Path) -> None:
    env, store = lab
    processes = Processes(tmp_path, env)
    try:
        process, run_id = _stuck_run(processes, tmp_path, store, "stuck_hashing")
        time.sleep(3)  # MNIST is loaded in well under that: the run now waits on the FIFO
        assert process.popen.poll() is None and store.get_run(run_id).progress == 0
        asked = time.monotonic()
        cancelled = robustlab("cancel", run_id, env=env, cwd=tmp_path, timeout=60)
        assert cancelled.returncode == 0, cancelled.stderr
        process.popen.wait(timeout=CANCEL_DEADLINE_S + 30)
        latency = time.monotonic() - asked
        run = store.get_run(run_id)
        assert run.status == "cancelled", (run.status, run.error)
        assert latency < CANCEL_DEADLINE_S, f"cancel took {latency:.1f} s"
        assert "Traceback" not in process.output()
        print(f"\ncancel of a run stuck hashing: ended {latency:.1f} s after `robustlab cancel`")
    finally:
        processes.stop_all()


def test_a_read_past_the_timeout_fails_the_run_in_one_line(
        lab: tuple[dict[str, str], Store], tmp_path: Path) -> None:
    env, store = lab
    processes = Processes(tmp_path, env)
    try:
        process, run_id = _stuck_run(processes, tmp_path, store, "read_timeout",
                                     ROBUSTLAB_READ_TIMEOUT_S="3")
        code = process.popen.wait(timeout=60)
        run = store.get_run(run_id)
        assert code != 0 and run.status == "failed", process.output()
        first = (run.error or "").splitlines()[0]
        assert first.startswith("ReadTimedOut: reading dataset mnist to hash it took longer "
                                "than 3 s (ROBUSTLAB_READ_TIMEOUT_S)"), first
        assert "Traceback" not in process.output()
    finally:
        processes.stop_all()


def test_a_checkpoint_that_is_a_fifo_is_abandoned_at_a_cancel(tmp_path: Path) -> None:
    """The read itself, in-process: a FIFO opened as a checkpoint blocks; a cancel ends the
    wait within a slice or two, and the read's own errors and values pass through unchanged."""
    fifo = tmp_path / "epoch-0001.pt"
    os.mkfifo(fifo)
    asked_at: list[float] = []

    def cancel_after_a_second() -> bool:
        if time.monotonic() - started > 1.0:
            asked_at.append(time.monotonic())
            return True
        return False

    started = time.monotonic()
    with cancellable_reads(cancel_after_a_second), \
            pytest.raises(Cancelled, match=f"cancelled while reading checkpoint {fifo}"):
        guarded(lambda: fifo.read_bytes(), f"checkpoint {fifo}")
    assert time.monotonic() - asked_at[0] < 0.5
    with pytest.raises(FileNotFoundError):
        guarded(lambda: (tmp_path / "absent.pt").read_bytes(), "checkpoint absent.pt")
    assert guarded(lambda: 42, "a number") == 42


def test_the_read_timeout_applies_without_a_run(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    monkeypatch.setenv("ROBUSTLAB_READ_TIMEOUT_S", "0.5")
    started = time.monotonic()
    with pytest.raises(ReadTimedOut, match=r"^reading dataset x took longer than 0.5 s "):
        guarded(lambda: fifo.read_bytes(), "dataset x")
    assert time.monotonic() - started < 2.0
    monkeypatch.setenv("ROBUSTLAB_READ_TIMEOUT_S", "soon")
    with pytest.raises(Refusal, match="ROBUSTLAB_READ_TIMEOUT_S must be a positive number"):
        guarded(lambda: 1, "anything")
