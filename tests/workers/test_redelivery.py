"""A whole worker killed with SIGKILL mid-training: its run is delivered again and resumes.

When the worker's main process dies, nobody puts the message back: it stays in Redis's
``unacked`` hash, and kombu restores it once it is older than the visibility timeout (when a
worker starts, and every few seconds while one runs). Production keeps that timeout longer than
the longest run (a day); this test makes it short through the setting itself,
``ROBUSTLAB_VISIBILITY_TIMEOUT``, not by reaching into kombu.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from contract.specs.loading import load_spec_text
from service.queue.submission import submit
from service.store.repository import Store
from tests.workers.conftest import settings_of
from tests.workers.helpers import (
    Processes,
    queue_length,
    train_spec,
    unacked_count,
    wait_for,
)

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

VISIBILITY_TIMEOUT_S = "5"


def test_sigkilled_worker_run_is_redelivered_and_resumes_from_its_checkpoint(
        env: dict[str, str], store: Store, processes: Processes) -> None:
    short = {"ROBUSTLAB_VISIBILITY_TIMEOUT": VISIBILITY_TIMEOUT_S}
    first_worker = processes.worker(env=short)
    run_id = submit(load_spec_text(train_spec("redelivered", epochs=5)), store,
                    settings=settings_of(env)).queued[0].id
    wait_for(lambda: store.list_checkpoints(run_id=run_id), 240, "the first checkpoint",
             interval=0.1)
    first = store.list_checkpoints(run_id=run_id)[0]

    first_worker.kill_group(signal.SIGKILL)  # the main process and its pool child

    broker = env["ROBUSTLAB_BROKER_URL"]
    assert store.get_run(run_id).status == "running"
    assert unacked_count(broker) + queue_length(broker, "gpu") == 1  # not lost
    processes.worker(env=short)
    run = wait_for(lambda: (r := store.get_run(run_id)).status in ("succeeded", "failed") and r,
                   240, "the run to end on the second worker")
    assert run.status == "succeeded", run.error
    assert run.attempts == 2
    checkpoints = store.list_checkpoints(run_id=run_id)
    assert [c.epoch for c in checkpoints] == [1, 2, 3, 4, 5]
    assert checkpoints[0].sha256 == first.sha256 and Path(first.path).is_file()
    assert [m.step for m in store.metrics(run_id=run_id, name="train_loss")] == [1, 2, 3, 4, 5]
    assert sorted(row["attack"] for row in store.results(run_ids=[run_id])) == \
        ["none", "pgd", "worst_case"]
    wait_for(lambda: unacked_count(broker) + queue_length(broker, "gpu") == 0, 30,
             "the redelivered message to be acknowledged")
