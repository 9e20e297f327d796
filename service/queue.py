"""The Celery app, its configuration, and ``submit``: recording runs and queueing their tasks.

Only this module and ``workers/tasks.py`` import Celery. The configuration is what "nothing
lost, nothing twice" needs from Celery's Redis transport:

* ``task_acks_late``: a task's message is acknowledged after the run ends, not when it starts,
  so a worker that dies mid-run leaves the message unacknowledged.
* ``task_reject_on_worker_lost``: when the child process running a task dies (SIGKILL, out of
  memory), the worker puts the message back on its queue at once.
* When the whole worker dies, the message stays in Redis's ``unacked`` set and kombu restores
  it once it is older than the ``visibility_timeout`` (``QoS.restore_visible``, run when a
  worker starts and every ``unacked_restore_interval`` seconds after). That timeout must exceed
  the longest run, or a live run's message would be delivered a second time
  (``ROBUSTLAB_VISIBILITY_TIMEOUT``, one day by default).
* ``worker_prefetch_multiplier`` 1 and one process per worker: a worker holds only the run it
  executes, so queued runs stay available to idle workers.
* Re-delivery is harmless: the task of a finished run is a no-op, and an interrupted run
  resumes from its checkpoints (``service.runner.execute_run``).

The worker's parent process imports the science code (torch included) before forking its child,
so that every child starts fast, but it never touches ``torch.cuda``: CUDA cannot be used in a
child forked from a process that initialised it (celery#3402).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool
from kombu import Connection
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from service.recording import record
from service.settings import Settings, get_settings
from service.specs.loading import LoadedSpec
from service.specs.models import SPEC_KINDS
from service.store.repository import RunInfo, Store

log = logging.getLogger(__name__)

EXECUTE_TASK = "robustlab.execute_run"
SCAN_TASK = "robustlab.scan_schedules"
SCHEDULER_QUEUE = "robustlab.scheduler"
"""The beat's own queue: scans never wait behind a long run on a GPU worker's queue."""
WORKER_DEVICE_ENV = "ROBUSTLAB_WORKER_DEVICE"
"""Set by ``robustlab worker --device``; the task reads it in the child process."""
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
BROKER_CHECK_TIMEOUT_S = 3.0
POOL_MAINTENANCE_S = 0.2


class BrokerUnavailable(Exception):
    """The broker could not be reached; nothing was left half-recorded."""


@dataclass(frozen=True)
class Submission:
    """What ``submit`` did with each cell of a spec."""

    experiment: str
    spec_id: str
    queue: str
    queued: list[RunInfo]
    """Recorded now and enqueued."""
    done: list[RunInfo]
    """An identical cell already succeeded: reported, not run again (``force`` re-runs it)."""
    pending: list[RunInfo]
    """An identical cell is already queued, running or interrupted: reported instead of a
    duplicate (``robustlab resume`` continues an interrupted one)."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings of a robustlab deployment (see the module docstring for why)."""
    visibility = settings.visibility_timeout
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": {
            "visibility_timeout": visibility,
            # Look for abandoned messages every few seconds, not kombu's default ~100 s, so a
            # short test timeout is honoured; the scan is one ZRANGE on the unacked index.
            "unacked_restore_interval": min(max(visibility / 10, 1.0), 10.0),
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": BROKER_CHECK_TIMEOUT_S,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": settings.default_queue,
        "task_create_missing_queues": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0,
                                      "interval_step": 0.5, "interval_max": 1},
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "worker_send_task_events": False,
        "beat_scheduler": "celery.beat:Scheduler",  # in memory: an interval needs no state file
    }


def make_app(settings: Settings | None = None) -> Celery:
    app = Celery("robustlab", include=["workers.tasks"])
    app.conf.update(celery_config(settings or get_settings()))
    return app


app = make_app()


# --------------------------------------------------------------------------- submitting


def submit(loaded: LoadedSpec, store: Store | None = None, *, queue: str | None = None,
           force: bool = False, settings: Settings | None = None) -> Submission:
    """Record one queued run per new sweep cell of ``loaded`` and enqueue a task for each.

    A cell whose content hash matches a succeeded run is reported as done (unless ``force``),
    and one matching a queued or running run is reported as pending; neither is queued again.
    The broker is checked before anything is recorded (``BrokerUnavailable``); if publishing
    still fails, the runs not yet published are deleted again, so every recorded run has a
    message on the queue.
    """
    settings = settings or get_settings()
    queue = queue or settings.default_queue
    own_store = store is None
    store = store or Store.from_settings(settings)
    try:
        with broker_connection(settings.broker_url) as connection:
            return _submit(loaded, store, connection, queue, force)
    finally:
        if own_store:
            store.close()


def _submit(loaded: LoadedSpec, store: Store, connection: Connection, queue: str,
            force: bool) -> Submission:
    recorded = record(loaded, store, queue=queue, force=force)
    if recorded.runs:
        publish(connection, recorded.runs, queue, store)
    return Submission(loaded.spec.name, recorded.spec_id, queue, recorded.runs, recorded.done,
                      recorded.pending)


def publish(connection: Connection, runs: Sequence[RunInfo], queue: str, store: Store) -> None:
    """Send one task per run (task id = run id); on failure delete the unpublished runs."""
    published = 0
    producer = app.amqp.Producer(connection)
    try:
        for run in runs:
            app.send_task(EXECUTE_TASK, args=[run.id], task_id=run.id, queue=queue,
                          producer=producer)
            published += 1
    except (OperationalError, *connection.connection_errors) as exc:
        for run in runs[published:]:
            store.delete_run(run.id)
        raise BrokerUnavailable(
            f"broker failed after {published} of {len(runs)} run(s) were queued "
            f"({_reason(exc)}); the other {len(runs) - published} were not recorded: "
            "submit again to queue them") from exc


BROKER_SCHEMES = ("redis", "rediss")


def check_broker_url(url: str) -> str:
    """``url`` if it names a Redis broker, else ``BrokerUnavailable`` in one line.

    kombu accepts amqp://, sqs://, memory:// ... and would publish there, but robustlab's
    guarantees (visibility timeout, unacked restore, queue inspection) are Redis's: a run
    queued on another transport could be lost or run twice without any error.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        shown = f"{scheme}://" if scheme else repr(maybe_sanitize_url(url))
        raise BrokerUnavailable(
            f"broker URL {shown} is not supported: ROBUSTLAB_BROKER_URL must be redis://HOST:PORT/DB "
            "or rediss:// (Redis over TLS)")
    return url


@contextmanager
def broker_connection(url: str) -> Iterator[Connection]:
    """An open connection to the broker, or ``BrokerUnavailable`` naming where it was sought."""
    check_broker_url(url)
    connection = app.connection_for_write(url)
    try:
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                         timeout=BROKER_CHECK_TIMEOUT_S)
        except (OperationalError, *connection.connection_errors) as exc:
            raise BrokerUnavailable(
                f"no broker at {maybe_sanitize_url(url)} ({_reason(exc)}): start Redis or set "
                "ROBUSTLAB_BROKER_URL") from exc
        yield connection
    finally:
        connection.release()


QUEUE_CHECK_TIMEOUT_S = 1.0
"""How long ``queue_consumers`` waits for workers to answer (a live worker answers in ms)."""


def queue_consumers(queue: str, timeout_s: float = QUEUE_CHECK_TIMEOUT_S,
                    settings: Settings | None = None) -> list[str]:
    """The workers consuming ``queue`` now (Celery's ``inspect().active_queues()``), asked on
    the settings' broker.

    Empty when no worker answers within ``timeout_s``: runs queued there wait until one is
    started with ``robustlab worker --queues QUEUE``. An unreachable broker raises
    ``BrokerUnavailable``.
    """
    settings = settings or get_settings()
    probe = make_app(settings)  # the module's app keeps the broker of its import time
    try:
        with broker_connection(settings.broker_url):
            answers = probe.control.inspect(timeout=timeout_s).active_queues() or {}
    except (OperationalError, OSError) as exc:
        raise BrokerUnavailable(f"cannot ask the workers ({_reason(exc)})") from exc
    finally:
        probe.close()
    return sorted(worker for worker, queues in answers.items()
                  if any(q.get("name") == queue for q in queues or ()))


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------- processes


def preload_science() -> None:
    """Import the runner and every experiment module, without initialising CUDA.

    Called in the worker's parent before it forks: each child then starts with torch and the
    science already imported (seconds saved per run). Importing torch does not initialise CUDA;
    calling ``torch.cuda.is_available()`` or allocating on a GPU would, and a forked child
    could then not use the GPU (celery#3402), so this checks that nothing did.
    """
    importlib.import_module("service.runner")
    for kind in SPEC_KINDS:
        try:
            importlib.import_module(f"workers.science.experiments.{kind}")
        except ModuleNotFoundError as exc:
            if exc.name != f"workers.science.experiments.{kind}":
                raise
            log.warning("no experiment module for spec kind %r", kind)
    torch = sys.modules["torch"]
    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised in the worker's parent process; forked "
                           "children could not use the GPU (celery#3402)")


def worker_nodename(device: str | None) -> str:
    """A node name unique per process, readable in logs: ``robustlab-cuda0-1234@host``."""
    label = re.sub(r"[^A-Za-z0-9]", "", device or "any")
    return f"robustlab-{label}-{os.getpid()}@{socket.gethostname()}"


class _PromptAsynPool(AsynPool):
    """Celery's prefork pool, replacing a recycled child within a fraction of a second, not five.

    A child that reached ``worker_max_tasks_per_child`` closes its sentinel pipe a moment before
    it can be reaped, so the pool's exit handler finds nothing to replace, and the replacement
    waits for the pool's periodic maintenance (every 5 s) while the next run sits in the queue.
    With a fresh process per run (the default), that would add seconds to every run.
    """

    @property
    def timers(self) -> dict[Callable[[], None], float]:
        return {self.maintain_pool: POOL_MAINTENANCE_S}


class PromptTaskPool(TaskPool):
    """``--pool prefork`` with ``_PromptAsynPool``."""

    Pool = _PromptAsynPool


def start_worker(queues: Sequence[str], device: str | None, *, loglevel: str = "INFO") -> int:
    """Run a Celery worker in this process: one run at a time, on ``device``; returns its exit code.

    ``device`` ``None`` leaves each spec's own ``device`` setting in charge.
    """
    check_broker_url(app.conf.broker_url)
    if device is not None:
        if not DEVICE_PATTERN.fullmatch(device):
            raise ValueError(f"device {device!r} is not 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        os.environ[WORKER_DEVICE_ENV] = device
    preload_science()
    worker = app.Worker(hostname=worker_nodename(device), queues=list(queues), concurrency=1,
                        pool_cls=PromptTaskPool, loglevel=loglevel)
    worker.start()
    return int(worker.exitcode or 0)


def start_beat(interval_s: float, *, loglevel: str = "INFO") -> int:
    """Run Celery beat with the schedule scan every ``interval_s`` seconds; returns its exit code.

    The beat runs inside a small worker that consumes only ``SCHEDULER_QUEUE``, so scans are
    executed right away here instead of waiting for a GPU worker to finish a long run. A scan
    that is not started within one interval is dropped (``expires``): the next one replaces it.
    """
    check_broker_url(app.conf.broker_url)
    app.conf.beat_schedule = {
        "scan-schedules": {"task": SCAN_TASK, "schedule": interval_s,
                           "options": {"queue": SCHEDULER_QUEUE, "expires": interval_s}},
    }
    worker = app.Worker(hostname=f"robustlab-beat-{os.getpid()}@{socket.gethostname()}",
                        queues=[SCHEDULER_QUEUE],
                        concurrency=1, pool_cls="solo", beat=True, loglevel=loglevel)
    worker.start()
    return int(worker.exitcode or 0)
