"""Submitting without a worker: what is recorded, what is queued, what is refused.

Runs against the real Redis and PostgreSQL; the queue is inspected in Redis itself.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from contract.specs.loading import load_spec_text
from service.queue.app import EXECUTE_TASK, BrokerUnavailable, app
from service.queue.submission import publish, submit
from service.recording import plan_runs
from service.store.repository import Store
from tests.workers.conftest import settings_of
from tests.workers.helpers import REPO, closed_port, queue_length, robustlab, theory_spec

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def _messages(url: str, queue: str) -> list[dict]:
    client = redis.Redis.from_url(url)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def test_submit_records_one_queued_run_and_one_message_per_cell(
        env: dict[str, str], store: Store) -> None:
    loaded = load_spec_text(theory_spec("three_cells", seeds=3))
    submission = submit(loaded, store, settings=settings_of(env))

    assert len(submission.queued) == 3 and not submission.done and not submission.pending
    runs = store.list_runs(experiment="three_cells")
    assert {run.id for run in runs} == {run.id for run in submission.queued}
    assert {(run.status, run.queue) for run in runs} == {("queued", "gpu")}
    messages = _messages(env["ROBUSTLAB_BROKER_URL"], "gpu")
    assert sorted(m["headers"]["id"] for m in messages) == sorted(run.id for run in runs)
    assert {m["headers"]["task"] for m in messages} == {EXECUTE_TASK}
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    assert sorted(body[0][0] for body in bodies) == sorted(run.id for run in runs)


def test_identical_cells_are_reported_not_queued_again(env: dict[str, str], store: Store) -> None:
    settings = settings_of(env)
    loaded = load_spec_text(theory_spec("twice", seeds=2))
    first = submit(loaded, store, settings=settings)
    cell0, cell1 = first.queued

    again = submit(loaded, store, settings=settings)
    assert not again.queued and {run.id for run in again.pending} == {cell0.id, cell1.id}

    store.finish_run(cell0.id, "succeeded")
    store.finish_run(cell1.id, "failed", error="boom")
    third = submit(loaded, store, settings=settings)
    assert [run.id for run in third.done] == [cell0.id]
    assert len(third.queued) == 1 and third.queued[0].cell == 1  # a failed cell runs again

    forced = submit(loaded, store, settings=settings, force=True)
    assert [run.cell for run in forced.queued] == [0]  # --force re-runs the succeeded cell
    assert [run.id for run in forced.pending] == [third.queued[0].id]  # never twice in flight
    assert queue_length(env["ROBUSTLAB_BROKER_URL"], "gpu") == 2 + 1 + 1


def test_failed_publish_removes_the_runs_it_did_not_queue(store: Store) -> None:
    loaded = load_spec_text(theory_spec("unpublished", seeds=2))
    spec_id, planned = plan_runs(loaded, queue="gpu")
    store.add_spec(spec_id, "unpublished", "theory", None, loaded.source_yaml,
                   loaded.spec.model_dump(mode="json"))
    recorded = store.add_runs(spec_id, planned)
    dead = app.connection_for_write(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        with pytest.raises(BrokerUnavailable, match="0 of 2 run"):
            publish(dead, recorded, "gpu", store)
    finally:
        dead.release()
    assert store.list_runs(experiment="unpublished") == []


def test_cli_submit_prints_run_ids_and_reports_duplicates(
        env: dict[str, str], store: Store, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(theory_spec("cli_submit", seeds=2))

    first = robustlab("submit", str(spec), "--queue", "cpu", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    printed = [line.split()[0] for line in first.stdout.splitlines()]
    runs = store.list_runs(experiment="cli_submit")
    assert sorted(printed) == sorted(run.id for run in runs) and len(runs) == 2
    assert {run.queue for run in runs} == {"cpu"}
    assert queue_length(env["ROBUSTLAB_BROKER_URL"], "cpu") == 2

    second = robustlab("submit", str(spec), "--queue", "cpu", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 run(s) queued" in second.stderr
    assert "already queued, running or interrupted" in second.stderr
    assert sorted(line.split()[0] for line in second.stdout.splitlines()) == sorted(printed)
    assert queue_length(env["ROBUSTLAB_BROKER_URL"], "cpu") == 2

    taken = robustlab("resume", printed[0], env=env, cwd=tmp_path)  # a worker's to take
    assert taken.returncode == 1 and "queued on 'cpu'" in taken.stderr
    assert store.get_run(printed[0]).status == "queued"


def test_broker_down_is_one_line_exit_2_and_records_nothing(
        env: dict[str, str], store: Store, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(theory_spec("no_broker"))
    down = {**env, "ROBUSTLAB_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"}

    result = robustlab("submit", str(spec), env=down, cwd=tmp_path, timeout=120)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no broker at redis://127.0.0.1:" in lines[0], result.stderr
    assert store.list_runs() == []
    assert store.results() == []


def test_commands_and_submitting_import_no_torch() -> None:
    """`robustlab --help` and `submit` stay fast: only a worker's process imports the science
    (``service.queue.worker.preload_science``: imported, CUDA never initialised)."""
    code = ("import sys, service.cli, service.queue.app, service.queue.submission; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
