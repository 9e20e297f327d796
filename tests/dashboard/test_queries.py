"""The dashboard's read-only query module: frames of the seeded store, database states, and the
SQL box's guards (statement check, read-only connection, row limit, time limit) on both
backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.analysis.stats import wilson_interval
from service.store import queries, sql_box
from service.store.migrate import upgrade
from tests.dashboard.seed import FIG1_EPS, Seeded, seed_database

REFUSED = {
    "DELETE FROM runs": "only SELECT",
    "DROP TABLE runs": "only SELECT",
    "INSERT INTO specs (id) VALUES ('x')": "only SELECT",
    "UPDATE runs SET status = 'failed'": "only SELECT",
    "SELECT 1; DROP TABLE runs": "only one statement",
    "SELECT 1;\n/* hidden */ DELETE FROM runs": "only one statement",
    "WITH gone AS (DELETE FROM runs RETURNING id) SELECT * FROM gone": "DELETE",
    "PRAGMA writable_schema = ON": "only SELECT",
    "ATTACH DATABASE 'x.db' AS x": "only SELECT",
    "SELECT E'\\''; DROP TABLE runs; --'": "only one statement",
    "  -- just a comment\n": "empty query",
}
ALLOWED = [
    "SELECT 1",
    "select id from runs;",
    "WITH r AS (SELECT * FROM runs) SELECT count(*) FROM r",
    "SELECT 'drop table runs; delete' AS text -- a DELETE in a comment",
    "SELECT \"status\" FROM runs WHERE stage = 'update;'",
]


@pytest.mark.parametrize("sql", list(REFUSED))
def test_check_select_refuses_everything_but_one_select(sql: str) -> None:
    with pytest.raises(queries.QueryRefused, match=REFUSED[sql]):
        queries.check_select(sql)


@pytest.mark.parametrize("sql", ALLOWED)
def test_check_select_accepts_selects_with_keywords_inside_strings(sql: str) -> None:
    assert queries.check_select(sql) == sql.strip().rstrip(";").strip()


def test_frames_hold_what_was_seeded(seeded: Seeded) -> None:
    runs = queries.runs_frame(seeded.url)
    assert len(runs) == len(seeded.fig1) + 6
    assert runs["created_at"].is_monotonic_decreasing
    failed = runs.set_index("id").loc[seeded.failed]
    assert failed["status"] == "failed" and failed["duration_s"] >= 0
    evaluations = queries.evaluations_frame(seeded.url)
    assert len(evaluations) == seeded.evaluations
    assert list(evaluations.columns) == list(queries.RESULT_KEYS)
    # the derived columns (contract.columns: "derived", no database column) are filled in
    first = evaluations.iloc[0]
    assert (first["ci_low"], first["ci_high"]) == wilson_interval(
        round(first["accuracy"] * first["n"]), int(first["n"]))
    assert (evaluations["ci_low"] <= evaluations["accuracy"]).all()
    assert (evaluations["accuracy"] <= evaluations["ci_high"]).all()
    only_fig1 = queries.evaluations_frame(seeded.url, experiments=["fig1_mnist"])
    assert len(only_fig1) == 2 * len(FIG1_EPS[("mnist", "linf")] + FIG1_EPS[("mnist", "l2")])
    artifacts = queries.artifacts_frame(seeded.url, kinds=["large_eps"])
    assert len(artifacts) == 2
    assert {a["train_eps"] for a in artifacts["metadata"]} == {0.0, 0.3}
    data = queries.read_artifact(seeded.artifact_dir, artifacts["path"].iloc[0])
    assert data.startswith(b"\x89PNG")
    theory = queries.theory_parameters(seeded.url)
    assert theory.set_index("run_id").loc[seeded.theory, "p"] == 0.7


def test_run_detail_and_metrics(seeded: Seeded) -> None:
    run_id = seeded.fig1[("mnist", "linf", 0.3)]
    detail = queries.run_detail(seeded.url, run_id)
    assert detail is not None
    assert detail["resolved_spec"]["adversary"] == {"norm": "linf", "eps": 0.3}
    assert detail["data_hash"] == "d" * 64 and detail["git_sha"] == "0123abcd"
    assert queries.run_detail(seeded.url, "no-such-run") is None
    metrics = queries.metrics_frame(seeded.url, run_ids=[run_id])
    assert sorted(set(metrics["name"])) == ["train_accuracy", "train_loss"]
    assert metrics[metrics["name"] == "train_loss"]["step"].tolist() == [0, 1, 2]


def test_database_status_explains_missing_and_unmigrated_databases(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    status = queries.database_status(missing)
    assert not status.ready and "robustlab db upgrade" in status.message
    assert not (tmp_path / "missing.db").exists(), "checking must not create the file"
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(empty)
    assert queries.database_status(empty) == queries.DatabaseStatus(True, 0, "no runs yet")


def test_sqlite_select_limit_and_result(seeded: Seeded) -> None:
    result = queries.run_select(seeded.url, "SELECT id, status FROM runs ORDER BY id", limit=3)
    assert result.truncated and len(result.frame) == 3
    assert list(result.frame.columns) == ["id", "status"]
    everything = queries.run_select(seeded.url, "SELECT count(*) AS n FROM evaluations")
    assert not everything.truncated and everything.frame["n"].item() == seeded.evaluations


def test_sqlite_connection_is_read_only_even_without_the_text_check(seeded: Seeded) -> None:
    """The connection itself refuses writes and a second statement (the real guard)."""
    path = Path(seeded.url.removeprefix("sqlite:///"))
    with pytest.raises(queries.QueryFailed, match="readonly|read-only|query_only"):
        sql_box._sqlite_select(path, "DELETE FROM runs", 10, 5.0)
    with pytest.raises(queries.QueryFailed, match="one statement"):
        sql_box._sqlite_select(path, "SELECT 1; DELETE FROM runs", 10, 5.0)
    assert queries.run_select(seeded.url, "SELECT count(*) AS n FROM runs").frame["n"].item() \
        == len(seeded.fig1) + 6


def test_sqlite_select_stops_at_the_time_limit(seeded: Seeded) -> None:
    forever = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT max(x) FROM c")
    with pytest.raises(queries.QueryFailed, match="time limit"):
        queries.run_select(seeded.url, forever, timeout_s=0.3)


def test_sql_errors_are_reported_not_raised_raw(seeded: Seeded) -> None:
    with pytest.raises(queries.QueryFailed, match="no such table"):
        queries.run_select(seeded.url, "SELECT * FROM nowhere")


@pytest.fixture
def postgres_seeded(postgres_url: str, tmp_path: Path) -> Seeded:
    return seed_database(postgres_url, tmp_path / "artifacts")


@pytest.mark.postgres
def test_postgres_select_read_only_and_limits(postgres_seeded: Seeded) -> None:
    url = postgres_seeded.url
    assert queries.database_status(url).runs == len(postgres_seeded.fig1) + 6
    result = queries.run_select(url, "SELECT id FROM runs ORDER BY id", limit=2)
    assert result.truncated and len(result.frame) == 2
    with pytest.raises(queries.QueryFailed, match="read-only"):
        sql_box._postgres_select(url, "DELETE FROM runs", 10, 5.0)
    with pytest.raises(queries.QueryFailed, match="multiple commands"):
        sql_box._postgres_select(url, "SELECT 1; DELETE FROM runs", 10, 5.0)
    with pytest.raises(queries.QueryFailed, match="time limit"):
        queries.run_select(url, "SELECT pg_sleep(5)", timeout_s=0.3)
    assert queries.run_select(url, "SELECT count(*) AS n FROM runs").frame["n"].item() \
        == len(postgres_seeded.fig1) + 6
    assert len(queries.evaluations_frame(url)) == postgres_seeded.evaluations


def test_safe_url_hides_the_password() -> None:
    shown = queries.safe_url("postgresql://lab:s3cret@db.example/robustlab")
    assert "s3cret" not in shown and "lab:***@db.example/robustlab" in shown
    assert queries.safe_url("not a url") == "(an invalid database URL)"
