"""Every dashboard page in Streamlit's AppTest over a seeded database: what each page shows,
its filters, the Submit paths (pick, write, upload), cancelling, and the SQL box's refusals."""

from __future__ import annotations

import io
import os
import re
import signal
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import redis
from streamlit.testing.v1 import AppTest

from contract.limits import get_limits
from dashboard import components, submission
from service.settings import get_settings
from service.store import queries
from service.store.migrate import upgrade
from service.store.repository import RunNotFound, Store
from tests.dashboard.conftest import REPO, point_settings_at
from tests.dashboard.seed import FAILURE, Seeded
from tests.dashboard.test_submission import BAD, GOOD, closed_port

DASHBOARD = REPO / "dashboard"
PAGES = ["runs", "submit", "tradeoffs", "galleries", "results", "compare"]
TITLES = {"runs": "Runs", "submit": "Submit a spec", "tradeoffs": "Trade-offs",
          "galleries": "Galleries", "results": "Results", "compare": "Compare runs"}


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(str(DASHBOARD / "views" / f"{name}.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_frames(at: AppTest) -> list[list[pd.DataFrame]]:
    """The data of every Altair chart on the page, decoded from Streamlit's Arrow datasets."""
    return [
        [pa.ipc.open_stream(io.BytesIO(d.data.data)).read_all().to_pandas()
         for d in chart.proto.datasets]
        for chart in at.get("vega_lite_chart")
    ]


def texts(elements: Iterable[Any]) -> list[str]:
    return [str(e.value) for e in elements]


def test_app_navigates_to_every_page(dashboard_env: Seeded) -> None:
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert texts(at.title) == ["Runs"], "Runs is the landing page"
    assert any(queries.safe_url(dashboard_env.url) in c for c in texts(at.sidebar.caption))
    for name in PAGES:
        at.switch_page(f"views/{name}.py")
        rerun(at)
        assert texts(at.title) == [TITLES[name]]


def test_runs_page_lists_runs_and_shows_failures(dashboard_env: Seeded) -> None:
    at = open_page("runs")
    listed = at.dataframe[0].value
    assert len(listed) == len(queries.runs_frame(dashboard_env.url))
    assert set(listed["id"]) >= {dashboard_env.failed, dashboard_env.running, dashboard_env.queued}
    at.selectbox(key="runs_run").set_value(dashboard_env.failed)
    rerun(at)
    assert texts(at.error) == ["This run failed:"]
    assert FAILURE.splitlines()[-1] in texts(at.code), "the error as code, not as Markdown"
    assert FAILURE in texts(at.code)
    at.selectbox(key="runs_status").set_value("failed")
    rerun(at)
    assert list(at.dataframe[0].value["id"]) == [dashboard_env.failed]


def test_runs_page_shows_progress_provenance_and_curves(dashboard_env: Seeded) -> None:
    at = open_page("runs")
    at.selectbox(key="runs_run").set_value(dashboard_env.running)
    rerun(at)
    assert at.progress[0].value == 40
    assert at.progress[0].text == "epoch 2/5"
    run_id = dashboard_env.fig1[("mnist", "linf", 0.3)]
    at.selectbox(key="runs_run").set_value(run_id)
    rerun(at)
    assert "0123abcd" in at.json[0].value and "d" * 64 in at.json[0].value
    assert any("eps: 0.3" in c for c in texts(at.code))
    (curves,) = chart_frames(at)[0]
    assert sorted(curves["name"].unique()) == ["train_accuracy", "train_loss"]
    assert len(curves) == 6


def test_cancel_from_the_runs_page(fresh_seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    point_settings_at(monkeypatch, fresh_seeded, tmp_path / "runs")
    at = open_page("runs")
    at.selectbox(key="runs_run").set_value(fresh_seeded.queued)
    rerun(at)
    at.button(key="runs_cancel").click()
    rerun(at)
    at.selectbox(key="runs_run").set_value(fresh_seeded.running)
    rerun(at)
    at.button(key="runs_cancel").click()
    rerun(at)
    assert any("cancel requested" in s for s in texts(at.success))
    store = Store(fresh_seeded.url)
    try:
        assert store.get_run(fresh_seeded.queued).status == "cancelled"
        running = store.get_run(fresh_seeded.running)
        assert running.status == "running" and running.cancel_requested
    finally:
        store.close()
    rerun(at)
    assert "runs_cancel" not in [b.key for b in at.button]
    assert any("Cancellation requested" in i for i in texts(at.info))


def test_delete_from_the_runs_page_asks_first(fresh_seeded: Seeded,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    point_settings_at(monkeypatch, fresh_seeded, tmp_path / "runs")
    at = open_page("runs")
    at.selectbox(key="runs_run").set_value(fresh_seeded.running)
    rerun(at)
    assert "runs_delete" not in [b.key for b in at.button]  # a running run: cancel it first
    at.selectbox(key="runs_run").set_value(fresh_seeded.failed)
    rerun(at)
    at.button(key="runs_delete").click()
    rerun(at)
    assert any("Delete run" in w for w in texts(at.warning))
    at.button(key="runs_delete_keep").click()
    rerun(at)
    store = Store(fresh_seeded.url)
    try:
        assert store.get_run(fresh_seeded.failed).status == "failed"  # kept
        at.button(key="runs_delete").click()
        rerun(at)
        at.button(key="runs_delete_confirm").click()
        rerun(at)
        assert any("deleted" in s for s in texts(at.success))
        with pytest.raises(RunNotFound):
            store.get_run(fresh_seeded.failed)
        assert store.get_run(fresh_seeded.running).status == "running"
    finally:
        store.close()


def test_submit_validates_a_spec_picked_from_specs(dashboard_env: Seeded) -> None:
    at = open_page("submit")
    at.selectbox(key="submit_pick").set_value("quickstart.yaml")
    rerun(at)
    assert texts(at.success) == ["Valid train spec, 2 runs"]  # no user text in Markdown
    assert "specs/quickstart.yaml: quickstart" in texts(at.text)
    assert [b.key for b in at.button] == ["submit_run", "submit_queue"]


def _problem_lines(at: AppTest) -> list[str]:
    return [line for m in texts(at.markdown)
            for line in re.findall(r'class="problem-line" data-line="(\d+)"', m)]


def test_submit_marks_problems_in_written_yaml(dashboard_env: Seeded) -> None:
    at = open_page("submit")
    at.radio(key="submit_source").set_value("Write YAML")
    rerun(at)
    at.text_area(key="submit_text").input(BAD)
    rerun(at)
    assert texts(at.error) == ["2 problems"]
    assert _problem_lines(at) == ["4", "7"]
    assert not at.button, "an invalid spec cannot be run"


def test_submit_marks_problems_in_an_uploaded_file(dashboard_env: Seeded) -> None:
    at = open_page("submit")
    at.radio(key="submit_source").set_value("Upload a file")
    rerun(at)
    at.file_uploader(key="submit_upload").set_value(("bad.yaml", BAD.encode(), "application/yaml"))
    rerun(at)
    assert texts(at.error) == ["2 problems"]
    assert any("bad.yaml:4 distribution.p: must be in (0.5, 1)" in m for m in texts(at.code))
    assert _problem_lines(at) == ["4", "7"]


def _queue_quickstart() -> AppTest:
    at = open_page("submit")
    at.selectbox(key="submit_pick").set_value("quickstart.yaml")
    rerun(at)
    at.button(key="submit_queue").click()
    return rerun(at)


def test_submit_queue_says_when_no_broker_answers(dashboard_env: Seeded,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLAB_BROKER_URL", f"redis://127.0.0.1:{closed_port()}/0")
    get_settings.cache_clear()
    get_limits.cache_clear()
    at = _queue_quickstart()
    assert any(w.startswith("queue not available: no broker at") for w in texts(at.warning))
    assert queries.runs_frame(dashboard_env.url, experiment="quickstart").empty


@pytest.mark.redis
def test_submit_queues_through_the_broker(fresh_seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """Queued on the real Redis, on a queue of its own (no worker takes it), then removed."""
    queue = f"robustlab_dashboard_test_{uuid.uuid4().hex[:8]}"
    broker = "redis://127.0.0.1:6379/15"
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("ROBUSTLAB_BROKER_URL", broker)
    monkeypatch.setenv("ROBUSTLAB_DEFAULT_QUEUE", queue)
    point_settings_at(monkeypatch, fresh_seeded, tmp_path / "runs")
    client = redis.Redis.from_url(broker)
    try:
        at = _queue_quickstart()
        assert any(s.startswith(f"Queued 2 run(s) on '{queue}'") for s in texts(at.success))
        assert f"No worker consumes the queue '{queue}': the runs wait until one starts. " \
            f"Start one with `robustlab worker --queues {queue}`." in texts(at.warning)
        runs = queries.runs_frame(fresh_seeded.url, experiment="quickstart")
        assert sorted(runs["status"]) == ["queued", "queued"] and set(runs["queue"]) == {queue}
        assert client.llen(queue) == 2, "one message per run"
        at = _queue_quickstart()
        assert any("2 identical run(s) already queued" in i for i in texts(at.info))
        assert client.llen(queue) == 2, "a second submission queues nothing"
    finally:
        client.delete(queue)
        client.close()


def test_submit_runs_a_spec_locally(fresh_seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    monkeypatch.chdir(REPO)
    point_settings_at(monkeypatch, fresh_seeded, tmp_path / "runs")
    at = open_page("submit")
    at.radio(key="submit_source").set_value("Write YAML")
    rerun(at)
    at.text_area(key="submit_text").input(GOOD)
    rerun(at)
    at.button(key="submit_run").click()
    rerun(at)
    (started,) = texts(at.success)[1:]
    pid = int(started.split("pid ")[1].split(")")[0])
    try:
        (command,) = [c for c in texts(at.code) if "service.cli run" in c]
        spec = Path(command.split()[-1])
        assert spec.parent == tmp_path / "runs" / "submitted" and spec.read_text() == GOOD
        assert any(str(spec.with_suffix(".log")) in c for c in texts(at.caption))
        assert os.getpgid(pid) == pid, "detached: the run leads its own process group"
    finally:  # test_submission.py follows such a run to its end; here it is not needed
        os.killpg(pid, signal.SIGTERM)
        # The dashboard reaps its children itself (no zombies) and says how they ended.
        deadline = time.monotonic() + 60
        while (outcome := _local_outcome(pid)) == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outcome in ("killed by SIGTERM", "exited 143 (stopped by SIGTERM)"), outcome


def _local_outcome(pid: int) -> str:
    (state,) = [s for s in submission.local_runs() if s.run.pid == pid]
    return state.outcome


def _charts(at: AppTest) -> dict[str, list[pd.DataFrame]]:
    """The page's charts by what they plot: figure1 (one per dataset), theory, tradeoff, topk."""
    found: dict[str, list[pd.DataFrame]] = {"figure1": [], "theory": [], "tradeoff": [],
                                            "topk": []}
    for frames in chart_frames(at):
        columns = set().union(*(f.columns for f in frames))
        name = ("figure1" if "measure" in columns else "theory" if "bound" in columns
                else "topk" if "k" in columns else "tradeoff")
        found[name].append(pd.concat([f for f in frames if "run_id" in f.columns
                                      or "run_ids" in f.columns or name == "tradeoff"]))
    return found


def test_tradeoffs_page_plots_and_filters(dashboard_env: Seeded) -> None:
    at = open_page("tradeoffs")
    found = _charts(at)
    assert [set(zip(f["dataset"], f["train_norm"], strict=True)) for f in found["figure1"]] \
        == [{("mnist", "linf")}, {("mnist", "l2")}], "per dataset and norm, image datasets only"
    (theory,) = found["theory"]
    assert set(theory["run_id"]) == {dashboard_env.theory}, "the bound over theory points only"
    (tradeoff,) = found["tradeoff"]
    assert dashboard_env.theory not in set(tradeoff["run_id"])
    assert tradeoff["run_id"].nunique() == len(dashboard_env.fig1)
    (topk,) = found["topk"]
    assert set(topk["k"]) == {10, 50, 200, 784}
    at.multiselect(key="tradeoffs_fig1_attacks").set_value([])
    rerun(at)
    assert {m for f in _charts(at)["figure1"] for m in f["measure"]} == {"standard accuracy"}
    at.multiselect(key="tradeoffs_dataset").set_value(["binary_mnist"])
    rerun(at)
    assert not _charts(at)["figure1"]
    assert any("image dataset" in c for c in texts(at.caption)), "an empty chart says why"
    assert any("Figure 2(c)" in s for s in texts(at.subheader))


def test_tradeoffs_attack_filter_keeps_clean_accuracy(dashboard_env: Seeded) -> None:
    at = open_page("tradeoffs")
    at.multiselect(key="tradeoffs_attack").set_value(["exact_linear"])
    rerun(at)
    found = _charts(at)
    assert found["figure1"], "Figure 1 is still drawn"
    assert {m for f in found["figure1"] for m in f["measure"]} == {"standard accuracy"}
    assert not found["tradeoff"], "no trained image model was attacked with exact_linear"
    (theory,) = found["theory"]
    assert set(theory["run_id"]) == {dashboard_env.theory}


def test_compare_page_shows_spec_diff_curves_and_results(dashboard_env: Seeded) -> None:
    at = open_page("compare")
    assert any("at least two runs" in c for c in texts(at.caption))
    standard, robust = (dashboard_env.fig1[("mnist", "linf", eps)] for eps in (0.0, 0.3))
    at.multiselect(key="compare_runs").set_value([standard, robust])
    rerun(at)
    spec_diff, results, metrics = (frame.value for frame in at.dataframe)
    assert spec_diff.set_index("path").loc["adversary.eps"].tolist() == ["0.0", "0.3"]
    clean = results[results["attack"] == "none"].iloc[0]
    assert (clean[standard], clean[robust]) == pytest.approx((0.99, 0.99 - 0.05 * 0.3))
    assert clean["spread"] == pytest.approx(0.015)
    assert set(metrics["metric"]) == {"train_accuracy", "train_loss"}
    (curves,) = chart_frames(at)[0]
    assert set(curves["run_id"]) == {standard, robust} and len(curves) == 12, "overlaid"


def test_galleries_page_shows_models_side_by_side_with_scores(dashboard_env: Seeded) -> None:
    at = open_page("galleries")
    captions = [image.proto.imgs[0].caption for image in at.image]
    assert captions == ["mnist_cnn · standard", "mnist_cnn · robust (linf, ε=0.3)"] * 2 \
        + ["e1_tradeoff.png"]
    assert texts(at.caption).count("target_agreement = 0.93") == 2
    assert "target_agreement = 0.5" not in texts(at.caption)
    at.multiselect(key="galleries_kinds").set_value(["gradients"])
    rerun(at)
    assert len(at.image) == 2
    assert texts(at.subheader) == ["Loss gradients (Figures 5, 8)"]


def test_results_page_table_and_filters(dashboard_env: Seeded) -> None:
    at = open_page("results")
    assert len(at.dataframe[0].value) == dashboard_env.evaluations
    assert [b.label for b in at.download_button][:2] == ["CSV", "LaTeX"]
    at.multiselect(key="results_dataset").set_value(["binary_mnist"])
    at.multiselect(key="results_attack").set_value(["none"])
    rerun(at)
    table = at.dataframe[0].value
    assert set(table["dataset"]) == {"binary_mnist"} and set(table["attack"]) == {"none"}
    assert len(table) == 2 + 4, "two Figure 1 runs and four top-k sizes"



def test_results_table_leads_with_model_threat_model_and_accuracy(dashboard_env: Seeded) -> None:
    """What fits 1366 px without scrolling (tests/dashboard/test_layout.py measures it)."""
    frame = queries.evaluations_frame(dashboard_env.url)
    shown, order, config = components.results_frame(frame)
    assert order[:5] == ["model", "training", "threat model", "attack", "accuracy"]
    assert set(order) == set(shown.columns), "every column is still there, after them"
    assert config["accuracy"]["type_config"]["format"] == "percent"
    assert sum(config[c]["width"] for c in order[:5]) <= 600
    by_key = shown.set_index(["run_id", "attack", "eval_eps"])
    robust = dashboard_env.fig1[("mnist", "linf", 0.3)]
    assert by_key.loc[(robust, "pgd", 0.3), "training"] == "linf ε=0.3"
    assert by_key.loc[(robust, "pgd", 0.3), "threat model"] == "linf ε=0.3"
    assert by_key.loc[(robust, "none", 0.0), "threat model"] == "clean"
    standard = dashboard_env.fig1[("mnist", "linf", 0.0)]
    assert by_key.loc[(standard, "none", 0.0), "training"] == "standard"
    at = open_page("results")
    assert list(at.dataframe[0].proto.column_order)[:5] == order[:5]


@pytest.mark.parametrize("sql, message", [
    ("DELETE FROM runs", "Refused: only SELECT"),
    ("DROP TABLE runs", "Refused: only SELECT"),
    ("INSERT INTO specs (id, name) VALUES ('x', 'y')", "Refused: only SELECT"),
    ("SELECT 1; DROP TABLE runs", "Refused: only one statement"),
    ("SELECT * FROM nowhere", "The database refused the query: no such table"),
    ("SELECT '![x](http://127.0.0.1:9/leak)' FROM nowhere", "The database refused the query: "),
])
def test_sql_box_refuses_anything_but_one_select(dashboard_env: Seeded, sql: str,
                                                 message: str) -> None:
    at = open_page("results")
    at.text_area(key="results_sql").input(sql)
    at.button(key="results_sql_run").click()
    rerun(at)
    shown = [f"{error} {code}" for error, code in zip(texts(at.error), texts(at.code), strict=False)]
    assert any(e.startswith(message) for e in shown), shown
    assert not any("leak" in str(m.value) for m in at.markdown), "user text read as Markdown"
    assert queries.database_status(dashboard_env.url).runs == len(dashboard_env.fig1) + 6


def test_sql_box_runs_a_select_with_a_row_limit(dashboard_env: Seeded) -> None:
    at = open_page("results")
    at.text_area(key="results_sql").input("SELECT id FROM runs ORDER BY id")
    at.number_input(key="results_sql_limit").set_value(5)
    at.button(key="results_sql_run").click()
    rerun(at)
    assert len(at.dataframe[1].value) == 5
    assert any("first 5 rows" in w for w in texts(at.warning))


@pytest.mark.parametrize("migrated", [False, True])
@pytest.mark.parametrize("name", PAGES)
def test_pages_explain_how_to_start_on_an_empty_database(
    name: str, migrated: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'robustlab.db'}"
    if migrated:
        upgrade(url)
    monkeypatch.chdir(REPO)
    point_settings_at(monkeypatch, Seeded(url=url, artifact_dir=tmp_path / "artifacts"),
                      tmp_path / "runs")
    at = open_page(name)
    commands = "\n".join(texts(at.code))
    if migrated and name != "submit":
        assert "robustlab run specs/quickstart.yaml" in commands
    if not migrated:
        assert "robustlab db upgrade" in commands
        assert texts(at.title) == ([TITLES[name]] if name == "submit" else [])


def _paginated_table() -> None:
    """An app of its own (AppTest runs the function's source, so it imports what it uses)."""
    import pandas as pd
    import streamlit as st

    from dashboard import components

    rows = pd.DataFrame({"i": range(120)})
    st.dataframe(components.paginate(rows, key="page", page_size=50))


def test_big_tables_paginate() -> None:
    at = AppTest.from_function(_paginated_table, default_timeout=60).run()
    assert at.number_input(key="page").label == "Page (of 3, 120 rows)"
    assert at.dataframe[0].value["i"].tolist() == list(range(50))
    at.number_input(key="page").set_value(3)
    rerun(at)
    assert at.dataframe[0].value["i"].tolist() == list(range(100, 120))
