"""The repository on both backends: round trips, upserts, the run life cycle, deletion."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from contract.records import ArtifactRecord, CheckpointRecord, EvaluationRecord, MetricRecord
from service.store.repository import RunNotFound, Store, StoreError
from tests.store.helpers import new_runs, record_runs


def _evaluation(accuracy: float = 0.75, **overrides: object) -> EvaluationRecord:
    bits = np.array([1, 0, 1, 1, 0, 1, 1, 1], dtype=np.uint8)
    fields: dict[str, object] = dict(
        model="linear", dataset="binary_mnist", accuracy=accuracy, n=8, train_norm="linf",
        train_eps=0.1, eval_norm="linf", eval_eps=0.2, attack="pgd", steps=20, step_size=0.025,
        restarts=2, per_example=np.packbits(bits).tobytes(),
        checks={"eps0_equals_clean": {"passed": True, "value": 0.75}},
        details={"loss": 0.31}, variant="",
    )
    fields.update(overrides)
    return EvaluationRecord(**fields)  # type: ignore[arg-type]


def _count(store: Store, table: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def _per_example(store: Store, run_id: str) -> list[bytes]:
    with store.engine.connect() as connection:
        return [bytes(value) for value in connection.execute(
            text("SELECT per_example FROM evaluations WHERE run_id = :run"), {"run": run_id}
        ).scalars()]


def test_runs_round_trip_with_their_cells(store: Store) -> None:
    runs = record_runs(store, "e1", cells=3)
    assert [run.cell for run in runs] == [0, 1, 2]
    run = store.get_run(runs[1].id)
    planned = new_runs("e1", 3)[1]
    assert (run.experiment, run.kind, run.params, run.resolved_spec, run.spec_hash, run.seed) \
        == (planned.experiment, planned.kind, planned.params, planned.resolved_spec,
            planned.spec_hash, planned.seed)
    assert (run.status, run.progress, run.attempts, run.cancel_requested) == \
        ("queued", 0.0, 0, False)
    assert run.created_at.tzinfo is not None
    assert abs(run.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert run.duration_s is None


def test_add_spec_is_idempotent_and_add_runs_all_or_nothing(store: Store) -> None:
    record_runs(store, "e1", cells=2)
    store.add_spec("spec-e1", "e1", "theory", None, "kind: theory\n", {"kind": "theory"})
    assert _count(store, "specs") == 1
    clashing = new_runs("e2", 2, prefix="new") + new_runs("e3", 1, prefix="run")  # run0000 exists
    with pytest.raises(StoreError):
        store.add_runs("spec-e1", clashing)
    assert _count(store, "runs") == 2, "a failed batch must record none of its runs"


def test_a_cell_with_an_active_run_gets_that_run_back_not_a_second(store: Store) -> None:
    first = record_runs(store, "e1", cells=2)
    again = store.add_runs("spec-e1", new_runs("e1", 3, prefix="again"))
    assert [run.id for run in again] == [first[0].id, first[1].id, "again0002"]
    assert _count(store, "runs") == 3
    store.finish_run(first[0].id, "failed", error="boom")
    (retry,) = store.add_runs("spec-e1", new_runs("e1", 1, prefix="retry"))
    assert retry.id == "retry0000" and retry.status == "queued"  # a failed cell runs again
    with pytest.raises(StoreError, match="already queued or running"):
        store.set_status(first[0].id, "queued")  # resuming it would make two active runs


def test_evaluation_round_trips_and_upserts_without_duplicates(store: Store) -> None:
    run = record_runs(store)[0]
    store.upsert_evaluation(run.id, _evaluation(0.75))
    store.upsert_evaluation(run.id, _evaluation(0.5, checks={"pgd_vs_fgsm": {"passed": False}}))
    store.upsert_evaluation(run.id, _evaluation(0.9, attack="none", eval_eps=0.0, steps=None,
                                                step_size=None, restarts=None, checks={}))
    rows = store.results(run_ids=[run.id])
    assert _count(store, "evaluations") == 2
    assert [row["attack"] for row in rows] == ["none", "pgd"]  # ordered by eval_eps
    clean, pgd = rows
    record = _evaluation(0.5)
    for key in ("model", "dataset", "split", "train_norm", "train_eps", "eval_norm", "eval_eps",
                "attack", "steps", "step_size", "restarts", "n", "variant", "key"):
        assert pgd[key] == getattr(record, key), key
    assert (pgd["run_id"], pgd["experiment"], pgd["kind"]) == (run.id, "e1", "theory")
    assert pgd["accuracy"] == 0.5, "the second upsert replaces the first"
    assert pgd["checks"] == {"pgd_vs_fgsm": {"passed": False}}
    assert pgd["checks_passed"] is False
    assert clean["checks_passed"] is None, "no checks: unknown, not passed"
    assert pgd["details"] == {"loss": 0.31}
    assert record.per_example in _per_example(store, run.id)


def test_checks_passed_is_true_only_when_every_check_passed(store: Store) -> None:
    run = record_runs(store)[0]
    store.upsert_evaluation(run.id, _evaluation(checks={"a": {"passed": True}, "b": {}}))
    assert store.results()[0]["checks_passed"] is True


def test_metrics_round_trip_upsert_and_filter(store: Store) -> None:
    first, second = record_runs(store)
    for step in (2, 0, 1):
        store.upsert_metric(first.id, MetricRecord("train_loss", 1.0 / (step + 1), step=step))
    store.upsert_metric(first.id, MetricRecord("train_loss", 0.25, step=2))
    store.upsert_metric(first.id, MetricRecord("bound", 0.5, tags={"eps": 0.1}))
    store.upsert_metric(second.id, MetricRecord("train_loss", 3.0))
    curve = store.metrics(run_id=first.id, name="train_loss")
    assert [(m.step, m.value) for m in curve] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert _count(store, "metrics") == 5
    (bound,) = store.metrics(run_id=first.id, name="bound")
    assert bound.tags == {"eps": 0.1}
    assert bound.key == MetricRecord("bound", 0.5, tags={"eps": 0.1}).key
    assert len(store.metrics(experiment="e1", name="train_loss")) == 4


def test_artifact_bytes_go_to_storage_and_upsert_by_name(store: Store) -> None:
    run = record_runs(store)[0]
    first = store.add_artifact(run.id, ArtifactRecord("figure", "tradeoff.png", b"old bytes"))
    data = bytes(range(256)) * 4
    info = store.add_artifact(run.id, ArtifactRecord(
        "figure", "tradeoff.png", data, media_type="image/png", metadata={"eps": [0.1, 0.2]}))
    assert info.id == first.id and _count(store, "artifacts") == 1
    assert info.path == f"{run.id}/tradeoff.png"
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert (info.size, info.media_type, info.metadata) == (len(data), "image/png",
                                                           {"eps": [0.1, 0.2]})
    assert store.storage.get(info.path) == data
    assert store.artifacts(experiment="e1", kind="figure") == [info]
    assert store.artifacts(kind="weights") == []


def test_checkpoints_upsert_by_path_and_the_final_one_wins(store: Store, tmp_path: Path) -> None:
    run = record_runs(store)[0]
    assert store.final_checkpoint(run.id) is None
    paths = [tmp_path / f"epoch{epoch}.pt" for epoch in range(3)]
    for epoch, path in enumerate(paths):
        path.write_bytes(f"weights {epoch}".encode())
        store.add_checkpoint(run.id, CheckpointRecord(path, epoch, "mnist_cnn", "mnist", "linf",
                                                      0.3))
    latest = store.final_checkpoint(run.id)
    assert latest is not None and latest.path == str(paths[2])  # no final: highest epoch
    final = store.add_checkpoint(run.id, CheckpointRecord(paths[1], 1, "mnist_cnn", "mnist",
                                                          "linf", 0.3, final=True,
                                                          metadata={"acc": 0.98}))
    assert _count(store, "checkpoints") == 3
    assert store.final_checkpoint(run.id) == final
    assert final.sha256 == hashlib.sha256(b"weights 1").hexdigest()
    assert (final.epoch, final.final, final.arch, final.metadata) == (1, True, "mnist_cnn",
                                                                      {"acc": 0.98})
    assert [c.epoch for c in store.list_checkpoints(experiment="e1")] == [0, 1, 2]
    imported = store.add_checkpoint(None, CheckpointRecord(tmp_path / "absent.pt", 9, "resnet18",
                                                           "cifar10", None, 0.0))
    assert imported.run_id is None and imported.sha256 is None


def test_run_life_cycle(store: Store) -> None:
    run = record_runs(store)[0]
    started = store.mark_running(run.id, host="h1", device="cpu", git_sha="abc",
                                 package_versions={"torch": "2"}, task_id="t1")
    assert (started.status, started.attempts, started.host, started.task_id) == \
        ("running", 1, "h1", "t1")
    store.set_progress(run.id, 1.7, "train")
    assert (store.get_run(run.id).progress, store.get_run(run.id).stage) == (1.0, "train")
    store.set_progress(run.id, -0.5)
    assert (store.get_run(run.id).progress, store.get_run(run.id).stage) == (0.0, "train")
    failed = store.finish_run(run.id, "failed", error="boom")
    assert (failed.status, failed.error) == ("failed", "boom")
    assert failed.duration_s is not None and failed.duration_s >= 0
    resumed = store.mark_running(run.id, host="h2", device="cuda:0", git_sha="abc",
                                 package_versions={})
    assert (resumed.attempts, resumed.error, resumed.finished_at) == (2, None, None)
    assert resumed.started_at == started.started_at, "the first start time is kept"
    assert resumed.task_id == "t1" and resumed.device == "cuda:0"
    done = store.finish_run(run.id, "succeeded")
    assert done.finished_at is not None and started.started_at is not None
    assert done.finished_at >= started.started_at
    requeued = store.set_status(run.id, "queued", task_id="t2", queue="cpu")
    assert (requeued.status, requeued.task_id, requeued.queue) == ("queued", "t2", "cpu")
    with pytest.raises(ValueError):
        store.finish_run(run.id, "running")


def test_request_cancel(store: Store) -> None:
    queued, running = record_runs(store)
    store.mark_running(running.id, host=None, device=None, git_sha=None, package_versions={})
    cancelled = store.request_cancel(queued.id)
    assert (cancelled.status, cancelled.cancel_requested) == ("cancelled", True)
    assert cancelled.finished_at is not None
    flagged = store.request_cancel(running.id)
    assert (flagged.status, flagged.cancel_requested) == ("running", True)
    assert store.cancel_requested(running.id)
    finished = store.finish_run(running.id, "cancelled")
    assert store.request_cancel(running.id).status == finished.status == "cancelled"


def test_provenance_merges(store: Store) -> None:
    run = record_runs(store)[0]
    store.add_provenance(run.id, data_hash="d" * 64, threads=4)
    store.add_provenance(run.id, files=["a", "b"])
    got = store.get_run(run.id)
    assert got.data_hash == "d" * 64
    assert got.provenance == {"threads": 4, "files": ["a", "b"]}


def test_get_run_by_prefix(store: Store) -> None:
    record_runs(store, cells=2, prefix="ab")  # ab0000, ab0001
    record_runs(store, "e2", cells=1, prefix="cd")
    assert store.get_run("cd").id == "cd0000"
    assert store.get_run("ab0001").id == "ab0001"
    with pytest.raises(StoreError, match="ambiguous: ab0000, ab0001"):
        store.get_run("ab")
    for missing in ("zz", "", "a%", "ab_"):
        with pytest.raises(RunNotFound):
            store.get_run(missing)
    with pytest.raises(RunNotFound):
        store.set_progress("nope", 0.5)


def test_list_runs_newest_first_and_filtered(store: Store) -> None:
    older = record_runs(store, "e1", cells=2, prefix="old")
    newer = record_runs(store, "e2", cells=2, prefix="new")
    store.finish_run(newer[1].id, "failed")
    assert [r.id for r in store.list_runs()] == [r.id for r in newer + older]
    assert [r.id for r in store.list_runs(experiment="e1")] == [r.id for r in older]
    assert [r.id for r in store.list_runs(status="failed")] == [newer[1].id]
    assert [r.id for r in store.list_runs(spec_hash=older[1].spec_hash)] == [older[1].id]
    assert len(store.list_runs(limit=3)) == 3


def test_results_order_and_filters(store: Store) -> None:
    first, second = record_runs(store, "e1")
    (other,) = record_runs(store, "e0", cells=1, prefix="zz")
    for run, train_eps in ((second, 0.2), (first, 0.1), (other, 0.0)):
        for eval_eps in (0.3, 0.0):
            store.upsert_evaluation(run.id, _evaluation(train_eps=train_eps, eval_eps=eval_eps))
    rows = store.results()
    assert [(r["experiment"], r["train_eps"], r["eval_eps"]) for r in rows] == [
        ("e0", 0.0, 0.0), ("e0", 0.0, 0.3),
        ("e1", 0.1, 0.0), ("e1", 0.1, 0.3), ("e1", 0.2, 0.0), ("e1", 0.2, 0.3),
    ]
    assert {r["run_id"] for r in store.results(experiment="e1")} == {first.id, second.id}
    assert {r["run_id"] for r in store.results(run_ids=[other.id])} == {other.id}


def test_delete_run_takes_its_results_and_files(store: Store, tmp_path: Path) -> None:
    doomed, kept = record_runs(store)
    for run in (doomed, kept):
        store.upsert_evaluation(run.id, _evaluation())
        store.upsert_metric(run.id, MetricRecord("loss", 1.0))
    artifact = store.add_artifact(doomed.id, ArtifactRecord("figure", "f.png", b"png"))
    checkpoint = store.add_checkpoint(doomed.id, CheckpointRecord(
        tmp_path / "c.pt", 0, "mnist_cnn", "mnist", None, 0.0))
    store.delete_run(doomed.id)
    with pytest.raises(RunNotFound):
        store.get_run(doomed.id)
    assert {r["run_id"] for r in store.results()} == {kept.id}
    assert [m.run_id for m in store.metrics()] == [kept.id]
    assert store.artifacts() == [] and not store.storage.exists(artifact.path)
    (orphan,) = store.list_checkpoints()
    assert (orphan.id, orphan.run_id) == (checkpoint.id, None)
    with pytest.raises(RunNotFound):
        store.delete_run(doomed.id)


def test_status_check_constraint_rejects_unknown_status(store: Store) -> None:
    run = record_runs(store)[0]
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(text("UPDATE runs SET status = 'paused' WHERE id = :id"),
                           {"id": run.id})
    with pytest.raises(StoreError):
        store.set_status(run.id, "paused")
    assert store.get_run(run.id).status == "queued"


def test_accuracy_check_constraint(store: Store) -> None:
    run = record_runs(store)[0]
    with pytest.raises(StoreError):
        store.upsert_evaluation(run.id, _evaluation(accuracy=1.5))
    assert store.results() == []


def test_concurrent_upserts_leave_one_row_per_key(store: Store, database_url: str) -> None:
    """Two writers (own engines, as two workers) racing on the same keys: no duplicates."""
    run = record_runs(store)[0]
    other = Store(database_url, storage=store.storage)
    errors: list[BaseException] = []

    def write(writer: Store, offset: int) -> None:
        try:
            for i in range(15):
                writer.upsert_metric(run.id, MetricRecord("loss", float(i + offset), step=i % 5))
                writer.upsert_evaluation(run.id, _evaluation(eval_eps=0.1 * (i % 3)))
        except BaseException as exc:  # collected and asserted in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(writer, offset))
               for writer, offset in ((store, 0), (other, 100))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert errors == []
    assert _count(store, "metrics") == 5
    assert _count(store, "evaluations") == 3
