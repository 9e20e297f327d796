"""Honest labels: a checkpoint trained elsewhere is 'unknown', and 0005 backfills old rows.

Migration 0005 makes ``evaluations.train_eps`` nullable, gives robustlab-trained rows older
than ``train_method`` the method they had (pgd), and marks foreign checkpoints' rows unknown.
"""

from __future__ import annotations

from sqlalchemy import text

from contract.records import EvaluationRecord
from service.results import to_text
from service.store import migrate
from service.store.repository import Store
from service.store.session import make_engine


def _old_rows(database_url: str) -> tuple[str, str, str]:
    """Runs and rows as the code of 0004 wrote them (raw SQL: today's ``Store`` writes
    today's columns): no method; a foreign checkpoint with eps 0 and no norm."""
    engine = make_engine(database_url)
    runs = {"run000000001": ("s1", "old", "train"), "run000000002": ("s2", "old_eval", "evaluate"),
            "run000000003": ("s3", "theory", "theory")}
    rows = {"run000000001": ("mnist_cnn", "mnist", "linf", 0.3, 0.9),
            "run000000002": ("tiny", "mnist", None, 0.0, 0.8),
            "run000000003": ("svm", "theory", "linf", 0.0, 0.7)}
    try:
        with engine.begin() as connection:
            for cell, (run_id, (spec_id, name, kind)) in enumerate(runs.items(), start=1):
                connection.execute(text(
                    "INSERT INTO specs (id, name, kind, source_yaml, spec, created_at) "
                    "VALUES (:id, :name, :kind, '', '{}', CURRENT_TIMESTAMP)"),
                    {"id": spec_id, "name": name, "kind": kind})
                connection.execute(text(
                    "INSERT INTO runs (id, spec_id, experiment, kind, cell, params, "
                    "resolved_spec, spec_hash, status, progress, attempts, cancel_requested, "
                    "seed, package_versions, provenance, created_at) VALUES (:id, :spec, "
                    ":name, :kind, :cell, '{}', '{}', :hash, 'succeeded', 1, 0, false, 0, "
                    "'{}', '{}', CURRENT_TIMESTAMP)"),
                    {"id": run_id, "spec": spec_id, "name": name, "kind": kind, "cell": cell,
                     "hash": f"h{cell}"})
                model, dataset, norm, eps, accuracy = rows[run_id]
                connection.execute(text(
                    "INSERT INTO evaluations (run_id, key, model, dataset, split, train_norm, "
                    "train_eps, eval_eps, attack, accuracy, n, variant, checks, details, "
                    "created_at) VALUES (:run, :key, :model, :dataset, 'test', :norm, :eps, "
                    "0, 'none', :accuracy, 10, '', '{}', '{}', CURRENT_TIMESTAMP)"),
                    {"run": run_id, "key": f"k{cell}", "model": model, "dataset": dataset,
                     "norm": norm, "eps": eps, "accuracy": accuracy})
    finally:
        engine.dispose()
    trained, foreign, theory = runs
    return trained, foreign, theory


def test_0005_backfills_old_rows_and_null_means_unknown(database_url: str) -> None:
    migrate.upgrade(database_url, "0004")
    trained, foreign, theory = _old_rows(database_url)
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
