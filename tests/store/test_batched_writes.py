"""A run's records reach the store in batches: one transaction per epoch or per evaluation.

Commits are counted with SQLAlchemy's ``commit`` event on the store's real engine, on SQLite
and on PostgreSQL; the records are fed through the runner's real ``StoreReporter``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from contract.records import CheckpointRecord, EvaluationRecord, MetricRecord
from contract.specs.loading import load_spec_file
from contract.status import RunStatus
from service.recording import StoreReporter, record
from service.runner import execute_run
from service.settings import Settings
from service.store import migrate
from service.store.repository import Store
from tests.store.helpers import record_runs

REPO = Path(__file__).resolve().parents[2]
NEVER = 3600.0
"""An ``interval_s`` that no test reaches: only the science's boundaries flush."""


@contextmanager
def commits(store: Store) -> Iterator[list[int]]:
    """Count the transactions committed on ``store`` inside the block (``counted[0]``).

    Reads commit too (the managed session ends every unit of work), so read outside it.
    """
    counted = [0]

    def count(_connection: object) -> None:
        counted[0] += 1

    event.listen(store.engine, "commit", count)
    try:
        yield counted
    finally:
        event.remove(store.engine, "commit", count)


def epoch_metrics(epoch: int, loss: float) -> list[MetricRecord]:
    return [MetricRecord(name=name, value=loss * factor, step=epoch)
            for name, factor in (("train_loss", 1.0), ("train_accuracy", 0.5), ("lr", 0.01),
                                 ("eps", 0.0), ("train_adv_accuracy", 0.25))]


def test_an_epoch_goes_in_with_its_checkpoint_in_one_transaction(store: Store,
                                                                 tmp_path: Path) -> None:
    (run,) = record_runs(store, cells=1)
    reporter = StoreReporter(store, run.id, interval_s=NEVER)
    reporter.progress(0.0, 2, "epoch 1/2")  # a new stage: one write (the progress)
    with commits(store) as counted:
        for batch in range(1, 20):
            reporter.progress(batch / 20, 2, "epoch 1/2")  # same stage: nothing written
        for metric in epoch_metrics(1, 0.7):
            reporter.metric(metric)
        assert counted[0] == 0
    assert store.metrics(run_id=run.id) == []  # held, not written
    with commits(store) as counted:
        reporter.checkpoint(CheckpointRecord(path=tmp_path / "epoch1.pt", epoch=1,
                                             arch="mnist_cnn", dataset="mnist",
                                             train_norm="linf", train_eps=0.3))
        assert counted[0] == 1
    assert len(store.metrics(run_id=run.id)) == 5
    assert [c.epoch for c in store.list_checkpoints(run_id=run.id)] == [1]


def test_an_evaluation_goes_in_at_the_next_stage_in_one_transaction(store: Store) -> None:
    (run,) = record_runs(store, cells=1)
    reporter = StoreReporter(store, run.id, interval_s=NEVER)
    reporter.progress(0, 1, "evaluation")
    rows = [EvaluationRecord(model="svm", dataset="theory", accuracy=0.9 - eps, n=100,
                             eval_norm="linf" if eps else None, eval_eps=eps,
                             attack="exact_linear" if eps else "none")
            for eps in (0.0, 0.1, 0.2, 0.3)]
    with commits(store) as counted:
        for row in rows:
            reporter.evaluation(row)
        reporter.progress(1, 1, "figures")
        assert counted[0] == 1
    assert sorted(r["accuracy"] for r in store.results(run_ids=[run.id])) == pytest.approx(
        [0.6, 0.7, 0.8, 0.9])
    assert store.get_run(run.id).stage == "figures"


def test_writing_the_same_records_again_updates_them_without_duplicates(store: Store) -> None:
    """A resumed run reports an epoch again: upsert by key, now in a batch."""
    (run,) = record_runs(store, cells=1)
    for loss in (0.7, 0.4):  # the first attempt, then the resumed one
        reporter = StoreReporter(store, run.id, interval_s=NEVER)
        for metric in epoch_metrics(1, loss) + epoch_metrics(1, loss):  # twice in one batch
            reporter.metric(metric)
        reporter.flush()
    metrics = store.metrics(run_id=run.id, name="train_loss")
    assert [(m.step, m.value) for m in metrics] == [(1, pytest.approx(0.4))]
    assert len(store.metrics(run_id=run.id)) == 5


def test_a_theory_run_commits_far_less_often_than_it_records(sqlite_url: str,
                                                             tmp_path: Path) -> None:
    """A real E1 cell end to end: every record stored, in a handful of transactions."""
    settings = Settings(database_url=sqlite_url, artifact_dir=tmp_path / "artifacts",
                        runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    migrate.upgrade(sqlite_url)
    store = Store(sqlite_url)
    loaded = load_spec_file(REPO / "specs" / "paper" / "e1_theory.yaml", [
        "n_train=500", "n_test=500", "epochs=30", "distribution.d=100", "eps=[0.4]",
        "device=cpu"])
    (run,) = record(loaded, store).runs
    with commits(store) as counted:
        finished = execute_run(run.id, store, settings=settings)
    assert finished.status == RunStatus.SUCCEEDED, finished.error
    written = len(store.results(run_ids=[run.id])) + len(store.metrics(run_id=run.id))
    assert written >= 20
    assert counted[0] < written / 2, (counted[0], written)
    store.close()
