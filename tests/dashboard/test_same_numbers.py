"""The report and the dashboard show the same Figure 1 points from one seeded database.

The seeded database gets a repeat (another seed of one cell's spec) and an AutoAttack row, so
the shared rule (mean ± std over repeats, every attack) is exercised. The report is generated
by the real ``generate``; the dashboard's numbers are read from the Trade-offs page's charts
in Streamlit's AppTest, exactly as plotted.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from contract.records import EvaluationRecord
from dashboard import charts
from service.report import generate
from service.store.entities import NewRun
from service.store.repository import Store
from service.store.storage import LocalStorage
from tests.dashboard.conftest import point_settings_at
from tests.dashboard.seed import Seeded
from tests.dashboard.test_pages import chart_frames, open_page

REPEAT_ACCURACY = 0.90
"""Standard accuracy of the seed-1 repeat of mnist linf ε 0.1 (the seed-0 run has 0.985)."""


def add_repeat_and_autoattack(seeded: Seeded) -> str:
    """A second seed of the mnist linf ε 0.1 cell, and AutoAttack on the ε 0.3 model."""
    store = Store(seeded.url, storage=LocalStorage(seeded.artifact_dir))
    try:
        original = store.get_run(seeded.fig1[("mnist", "linf", 0.1)])
        run_id = "fig1repeat"
        store.add_runs(original.spec_id, [NewRun(
            id=run_id, experiment=original.experiment, kind="train", cell=99,
            params=original.params, resolved_spec=original.resolved_spec,
            spec_hash=hashlib.sha256(b"repeat").hexdigest(), seed=1)])
        store.mark_running(run_id, host="h", device="cpu", git_sha="0123abcd",
                           package_versions={})
        common: dict[str, Any] = dict(model="mnist_cnn", dataset="mnist", n=500,
                                      train_norm="linf", train_eps=0.1)
        store.upsert_evaluation(run_id, EvaluationRecord(accuracy=REPEAT_ACCURACY, **common))
        store.upsert_evaluation(run_id, EvaluationRecord(
            accuracy=0.30, eval_norm="linf", eval_eps=0.3, attack="pgd", steps=20, **common))
        store.finish_run(run_id, "succeeded")
        strong = seeded.fig1[("mnist", "linf", 0.3)]
        store.upsert_evaluation(strong, EvaluationRecord(
            accuracy=0.55, model="mnist_cnn", dataset="mnist", n=500, train_norm="linf",
            train_eps=0.3, eval_norm="linf", eval_eps=0.3, attack="autoattack"))
        return run_id
    finally:
        store.close()


def report_points(markdown: str) -> set[tuple[str, str, str, str, str]]:
    """(dataset, norm, ε_train, measure, accuracy text) from the report's Figure 1 table."""
    section = markdown.split("## Figure 1")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    found = set()
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        key = (cells["dataset"], cells["norm"], cells["ε_train"])
        found.add((*key, "standard accuracy", cells["std acc"]))
        for column in (c for c in header if c.endswith(" acc") and c != "std acc"):
            attack = {"PGD acc": "pgd", "AutoAttack acc": "autoattack"}[column]
            for value, eps in re.findall(r"([\d.]+(?: ± [\d.]+)?) \(ε=([\d.]+)\)", cells[column]):
                found.add((*key, f"{attack} ε={eps}", value))
    return found


def dashboard_points(frames: list[pd.DataFrame]) -> set[tuple[str, str, str, str, str]]:
    """The same from the Trade-offs page's Figure 1 charts (the plotted data)."""
    found = set()
    for frame in frames:
        if "measure" not in frame.columns:
            continue
        for row in frame.to_dict("records"):
            accuracy = f"{100 * row['accuracy']:.2f}"
            if pd.notna(row["accuracy_std"]):
                accuracy += f" ± {100 * row['accuracy_std']:.2f}"
            found.add((row["title"], row["train_norm"], f"{row['train_eps']:.4g}",
                       row["measure"], accuracy))
    return found


def test_report_and_dashboard_show_the_same_figure1(
        fresh_seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repeat = add_repeat_and_autoattack(fresh_seeded)
    store = Store(fresh_seeded.url, storage=LocalStorage(fresh_seeded.artifact_dir))
    try:
        markdown = (generate(store, tmp_path / "report"), (tmp_path / "report" / "report.md")
                    .read_text())[1]
    finally:
        store.close()
    point_settings_at(monkeypatch, fresh_seeded, tmp_path / "runs")
    at = open_page("tradeoffs")
    plotted = [frame for frames in chart_frames(at) for frame in frames]
    ours, theirs = report_points(markdown), dashboard_points(plotted)
    assert ours == theirs
    assert ("MNIST", "linf", "0.1", "standard accuracy",
            f"{100 * (0.985 + REPEAT_ACCURACY) / 2:.2f} ± 6.01") in ours, "the repeat averaged"
    assert ("MNIST", "linf", "0.3", "autoattack ε=0.3", "55.00") in ours
    assert {d for d, *_ in theirs} == {"MNIST"}, "no theory or binary MNIST in Figure 1"
    assert f"`{repeat}`" in markdown
    assert charts.STANDARD == "standard accuracy"


def add_evaluate_run(seeded: Seeded) -> tuple[str, str]:
    """An evaluate run (PGD and AutoAttack) of the mnist linf ε 0.3 model: (its id, source)."""
    store = Store(seeded.url, storage=LocalStorage(seeded.artifact_dir))
    try:
        source = seeded.fig1[("mnist", "linf", 0.3)]
        spec_id = store.get_run(source).spec_id
        run_id = "evaluation1"
        store.add_runs(spec_id, [NewRun(
            id=run_id, experiment="aa", kind="evaluate", cell=0, params={},
            resolved_spec={"name": "aa", "kind": "evaluate", "source": {"run": source}},
            spec_hash=hashlib.sha256(b"evaluate").hexdigest(), seed=0)])
        store.mark_running(run_id, host="h", device="cpu", git_sha="0123abcd",
                           package_versions={})
        common: dict[str, Any] = dict(model="mnist_cnn", dataset="mnist", n=200,
                                      train_norm="linf", train_eps=0.3, train_method="pgd")
        for attack, accuracy in (("none", 0.9), ("pgd", 0.6), ("autoattack", 0.55)):
            radius = {} if attack == "none" else {"eval_norm": "linf", "eval_eps": 0.3}
            store.upsert_evaluation(run_id, EvaluationRecord(
                accuracy=accuracy, attack=attack, **radius, **common))
        store.upsert_evaluation(run_id, EvaluationRecord(
            accuracy=0.58, attack="autoattack", eval_norm="linf", eval_eps=0.3,
            variant="apgd-ce", **common))
        store.finish_run(run_id, "succeeded")
        return run_id, source
    finally:
        store.close()


def test_report_and_dashboard_show_the_same_evaluations(
        fresh_seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id, source = add_evaluate_run(fresh_seeded)
    store = Store(fresh_seeded.url, storage=LocalStorage(fresh_seeded.artifact_dir))
    try:
        generate(store, tmp_path / "report")
    finally:
        store.close()
    markdown = (tmp_path / "report" / "report.md").read_text()
    section = markdown.split("## Evaluations of trained models")[1].split("\n## ")[0]
    (line,) = [line for line in section.splitlines() if f"`{run_id}`" in line]
    ours = [cell.strip() for cell in line.strip("|").split("|")]
    point_settings_at(monkeypatch, fresh_seeded, tmp_path / "runs")
    at = open_page("tradeoffs")
    (table,) = [d.value for d in at.dataframe if "source_run" in d.value.columns]
    (row,) = table[table["run_id"] == run_id].to_dict("records")
    assert row["source_run"] == source and row["train_method"] == "pgd"
    theirs = [f"{row[c]:.2f}" for c in ("clean", "PGD linf 0.3", "AutoAttack linf 0.3")]
    assert theirs == ["90.00", "60.00", "55.00"], "AutoAttack's component rows are not its value"
    assert ours[6:9] == theirs, (ours, theirs)
