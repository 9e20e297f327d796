"""The worker and beat processes: one run at a time per worker, science preloaded, no CUDA.

The worker's parent process imports the science code (torch included) before forking its child,
so that every child starts fast, but it never touches ``torch.cuda``: CUDA cannot be used in a
child forked from a process that initialised it (celery#3402).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

from contract.registry import load_object
from contract.specs.kinds import SPEC_KINDS
from service.launch import Launch
from service.queue.app import (
    DEVICE_PATTERN,
    POOL_MAINTENANCE_S,
    SCAN_TASK,
    SCHEDULER_QUEUE,
    WORKER_DEVICE_ENV,
    WORKER_LAUNCH_ENV,
    app,
    check_broker_url,
)


def preload_science() -> None:
    """Import the runner and every experiment module, without initialising CUDA.

    Called in the worker's parent before it forks: each child then starts with torch and the
    science already imported (seconds saved per run). Importing torch does not initialise CUDA;
    calling ``torch.cuda.is_available()`` or allocating on a GPU would, and a forked child
    could then not use the GPU (celery#3402), so this checks that nothing did.
    """
    importlib.import_module("service.runner")
    for model in SPEC_KINDS.values():
        load_object(model.runner)
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


def start_worker(queues: Sequence[str], device: str | None, *, loglevel: str = "INFO",
                 launch: Launch | None = None) -> int:
    """Run a Celery worker in this process: one run at a time, on ``device``; returns its exit code.

    ``device`` ``None`` leaves each spec's own ``device`` setting in charge. ``launch`` with
    several processes runs each run over all of them (``service.launch``).
    """
    check_broker_url(app.conf.broker_url)
    if device is not None:
        if not DEVICE_PATTERN.fullmatch(device):
            raise ValueError(f"device {device!r} is not 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        os.environ[WORKER_DEVICE_ENV] = device
    if launch is not None and launch.distributed:
        os.environ[WORKER_LAUNCH_ENV] = json.dumps(
            {"nproc_per_node": launch.nproc_per_node, "backend": launch.backend,
             "gpus": list(launch.gpus), "sync_batchnorm": launch.sync_batchnorm})
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
