"""``submit``: record a spec's runs and queue one task per new cell, or record nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kombu import Connection
from kombu.exceptions import OperationalError

from contract.specs.loading import LoadedSpec
from service.queue.app import (
    EXECUTE_TASK,
    BrokerUnavailable,
    app,
    broker_connection,
    queue_consumers,
    reason,
)
from service.recording import record
from service.settings import Settings, get_settings
from service.store.entities import RunInfo
from service.store.repository import Store

__all__ = ["BrokerUnavailable", "Submission", "publish", "queue_consumers", "submit"]


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
            f"({reason(exc)}); the other {len(runs) - published} were not recorded: "
            "submit again to queue them") from exc


