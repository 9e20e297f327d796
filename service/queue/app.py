"""The Celery app and its configuration, and the broker checks every queue command shares.

Only the ``service.queue`` package imports Celery. The configuration is what "nothing
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

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from kombu import Connection
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

EXECUTE_TASK = "robustlab.execute_run"
SCAN_TASK = "robustlab.scan_schedules"
SCHEDULER_QUEUE = "robustlab.scheduler"
"""The beat's own queue: scans never wait behind a long run on a GPU worker's queue."""
WORKER_DEVICE_ENV = "ROBUSTLAB_WORKER_DEVICE"
"""Set by ``robustlab worker --device``; the task reads it in the child process."""
WORKER_LAUNCH_ENV = "ROBUSTLAB_WORKER_LAUNCH"
"""Set by ``robustlab worker --gpus/--nproc-per-node``: the launch (JSON) every run gets."""
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
BROKER_CHECK_TIMEOUT_S = 3.0
POOL_MAINTENANCE_S = 0.2


class BrokerUnavailable(Exception):
    """The broker could not be reached; nothing was left half-recorded."""


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
    app = Celery("robustlab", include=["service.queue.tasks"])
    app.conf.update(celery_config(settings or get_settings()))
    return app


app = make_app()


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
                f"no broker at {maybe_sanitize_url(url)} ({reason(exc)}): start Redis or set "
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
        raise BrokerUnavailable(f"cannot ask the workers ({reason(exc)})") from exc
    finally:
        probe.close()
    return sorted(worker for worker, queues in answers.items()
                  if any(q.get("name") == queue for q in queues or ()))


def reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


