"""Celery tasks: thin wrappers that hand a recorded run to ``service.runner.execute_run``.

A task's message carries only the run id; everything else is in the database. Delivering a task
twice is harmless: a run that already ended is left alone, and one that was interrupted (its
worker was killed) resumes from its checkpoints. Only worker processes import this module (the
app's ``include``); the parent imports the runner before it forks
(``service.queue.worker.preload_science``), and nothing here initialises CUDA.
"""

from __future__ import annotations

import json
import logging
import os

from celery import Task

from contract.status import TERMINAL, RunStatus
from service import scheduler
from service.launch import Launch, launch_runs
from service.queue.app import EXECUTE_TASK, SCAN_TASK, WORKER_DEVICE_ENV, WORKER_LAUNCH_ENV, app
from service.runner import execute_run as run_to_end
from service.store.entities import RunInfo
from service.store.repository import DatabaseUnavailable, RunNotFound, Store, StoreError

log = logging.getLogger(__name__)

ENDED = TERMINAL - {RunStatus.INTERRUPTED}
"""Statuses a delivered task leaves alone. An interrupted run (its process was told to stop)
is not among them: a task delivered again for it resumes it from its checkpoints."""
RETRY_BASE_S = 5.0
RETRY_MAX_S = 600.0
MAX_RETRIES = 10
"""About an hour of waiting for the database before a task gives up."""

_stores: dict[int, Store] = {}


def worker_store() -> Store:
    """This process's store, opened on first use after the fork (engines must not be shared)."""
    pid = os.getpid()
    if pid not in _stores:
        _stores.clear()
        _stores[pid] = Store.from_settings()
    return _stores[pid]


def retry_delay(retries: int) -> float:
    """Exponential backoff for a task waiting for the database: 5 s, 10 s, ... at most 10 min."""
    return min(RETRY_BASE_S * 2 ** retries, RETRY_MAX_S)


@app.task(name=EXECUTE_TASK, bind=True, max_retries=MAX_RETRIES)
def execute_run(self: Task, run_id: str, fail_reason: str | None = None) -> str:
    """Execute the run to an end state and return that status.

    ``fail_reason`` is set only on the retry that records a failure the store could not write
    when it happened (the database was unreachable for longer than the store waits).
    """
    try:
        store = worker_store()
        run = store.get_run(run_id)
    except RunNotFound:
        log.warning("run %s is not in the database (deleted after a failed submit?): skipped",
                    run_id)
        return "missing"
    except DatabaseUnavailable as exc:
        raise self.retry(exc=exc, countdown=retry_delay(self.request.retries)) from exc
    if run.status in ENDED:
        log.info("run %s already %s: nothing to do", run.id, run.status)
        return run.status
    if fail_reason is not None:
        return _record_failure(self, store, run.id, fail_reason)
    try:
        ended = _execute(run.id, store, self.request.id)
    except StoreError as exc:  # the store gave up waiting; record the failure once it is back
        reason = f"{type(exc).__name__}: {exc}"
        log.error("run %s: %s", run.id, reason)
        raise self.retry(exc=exc, kwargs={"run_id": run.id, "fail_reason": reason},
                         countdown=retry_delay(self.request.retries)) from exc
    log.info("run %s %s", ended.id, ended.status)
    return ended.status


def _execute(run_id: str, store: Store, task_id: str | None) -> RunInfo:
    """The run in this process, or over the processes of the worker's launch (``--gpus``)."""
    device = os.environ.get(WORKER_DEVICE_ENV)
    settings = os.environ.get(WORKER_LAUNCH_ENV)
    if not settings:
        return run_to_end(run_id, store, device=device, task_id=task_id)
    launch = Launch(**{**json.loads(settings), "gpus": tuple(json.loads(settings)["gpus"])})
    return launch_runs(store, [run_id], launch, device=device).runs[0]


def _record_failure(task: Task, store: Store, run_id: str, reason: str) -> str:
    try:
        store.finish_run(run_id, RunStatus.FAILED, error=reason)
    except DatabaseUnavailable as exc:
        raise task.retry(exc=exc, kwargs={"run_id": run_id, "fail_reason": reason},
                         countdown=retry_delay(task.request.retries)) from exc
    return RunStatus.FAILED.value


@app.task(name=SCAN_TASK)
def scan_schedules() -> int:
    """Enqueue the evaluations that standing schedules owe to new checkpoints; return how many."""
    report = scheduler.scan(worker_store())
    for error in report.errors:
        log.warning("scan: %s", error)
    return len(report.submitted)
