"""Honest labels: a checkpoint trained elsewhere is 'unknown', and 0005 backfills old rows.

Migration 0005 makes ``evaluations.train_eps`` nullable, gives robustlab-trained rows older
than ``train_method`` the method they had (pgd), and marks foreign checkpoints' rows unknown.
"""

from __future__ import annotations

from sqlalchemy import text

from contract.records import EvaluationRecord
from service.results import to_text
from service.store import migrate
from service.store.entities import NewRun
from service.store.repository import Store
from service.store.session import make_engine


def _run(store: Store, spec_id: str, kind: str, cell: int) -> str:
    (run,) = store.add_runs(spec_id, [NewRun(id=f"run{cell:09d}", experiment=spec_id, kind=kind,
                                             cell=cell, params={}, resolved_spec={"kind": kind},
                                             spec_hash=f"h{cell}", seed=0)])
    return run.id


def test_0005_backfills_old_rows_and_null_means_unknown(database_url: str) -> None:
    migrate.upgrade(database_url, "0004")
    store = Store(database_url, check=False)
    store.add_spec("s1", "old", "train", None, "", {})
    store.add_spec("s2", "old_eval", "evaluate", None, "", {})
    store.add_spec("s3", "theory", "theory", None, "", {})
    trained = _run(store, "s1", "train", 1)
    foreign = _run(store, "s2", "evaluate", 2)
    theory = _run(store, "s3", "theory", 3)
    # Rows as older code wrote them: no method; a foreign checkpoint with eps 0, no norm.
    store.upsert_evaluation(trained, EvaluationRecord(model="mnist_cnn", dataset="mnist",
                                                      accuracy=0.9, n=10, train_norm="linf",
                                                      train_eps=0.3))
    store.upsert_evaluation(foreign, EvaluationRecord(model="tiny", dataset="mnist",
                                                      accuracy=0.8, n=10))
    store.upsert_evaluation(theory, EvaluationRecord(model="svm", dataset="theory",
                                                     accuracy=0.7, n=10, train_norm="linf"))
    store.close()
    migrate.upgrade(database_url)
    store = Store(database_url)
    rows = {row["run_id"]: row for row in store.results()}
    assert (rows[trained]["train_method"], rows[trained]["train_eps"]) == ("pgd", 0.3)
    assert (rows[foreign]["train_norm"], rows[foreign]["train_eps"],
            rows[foreign]["train_method"]) == (None, None, None)
    assert rows[theory]["train_method"] is None and rows[theory]["train_eps"] == 0.0
    shown = to_text([rows[foreign]])
    assert "?" in shown
    store.upsert_evaluation(foreign, EvaluationRecord(model="tiny", dataset="mnist",
                                                      accuracy=0.8, n=10, train_eps=None,
                                                      variant="new"))
    store.close()
    migrate.downgrade(database_url, "0004")
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            nulls = connection.execute(text(
                "SELECT COUNT(*) FROM evaluations WHERE train_eps IS NULL")).scalar_one()
            assert nulls == 0
    finally:
        engine.dispose()
    migrate.upgrade(database_url)
