"""Runs side by side: the pure compare logic, and ``robustlab compare`` on a real store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.analysis.compare import MISSING, RunSide, compare, flatten, spec_diff
from tests.service.results_seed import ACCURACY, LOSSES, Seeded, seed_two_runs

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"


def test_flatten_indexes_lists_of_mappings_and_keeps_scalar_lists() -> None:
    spec = {"a": {"b": 1, "c": [0.1, 0.3]}, "attacks": [{"kind": "pgd", "eps": 0.3}], "e": {}}
    assert flatten(spec) == {"a.b": 1, "a.c": [0.1, 0.3], "attacks.0.kind": "pgd",
                             "attacks.0.eps": 0.3, "e": {}}


def test_spec_diff_names_only_the_paths_that_differ_and_marks_missing_ones() -> None:
    one = {"adversary": {"eps": 0.0, "steps": 7}, "seed": 0}
    two = {"adversary": {"eps": 0.3, "steps": 7}, "seed": 0, "extra": {"x": 1}}
    diff = spec_diff([one, two])
    assert [(d.path, d.values) for d in diff] == [("adversary.eps", (0.0, 0.3)),
                                                  ("extra.x", (MISSING, 1))]


def test_results_keep_training_columns_when_a_run_holds_several_training_settings() -> None:
    """Theory runs hold several trained models; their rows must not be merged."""
    rows = [{"model": "svm", "train_eps": eps, "eval_eps": 0.0, "attack": "none",
             "accuracy": 0.9 - eps} for eps in (0.0, 0.4)]
    comparison = compare([RunSide("a", {}, rows), RunSide("b", {}, rows[:1])])
    assert "train_eps" in comparison.result_columns
    assert [row.values for row in comparison.results] == [(0.9, 0.9), (pytest.approx(0.5), None)]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed_two_runs(tmp_path_factory.mktemp("compare"))


def robustlab(seeded: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROBUSTLAB, *args], env=seeded.env(), cwd=seeded.artifact_dir.parent,
                          capture_output=True, text=True, timeout=120)


def test_compare_json_lines_two_runs_up(seeded: Seeded) -> None:
    result = robustlab(seeded, "compare", seeded.standard, seeded.robust, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["id"] for r in data["runs"]] == [seeded.standard, seeded.robust]
    assert data["spec_diff"] == [{"path": "adversary.eps", "values": [0.0, 0.3]}]
    # one run, one training setting: rows line up on the evaluation, not on train_eps
    assert "train_eps" not in data["result_columns"] and "split" in data["result_columns"]
    test_rows = {row["eval_eps"]: row["accuracy"] for row in data["results"]
                 if row["split"] == "test"}
    assert test_rows == {e: [pytest.approx(ACCURACY[(0.0, e)]), pytest.approx(ACCURACY[(0.3, e)])]
                         for e in (0.0, 0.1, 0.3)}
    assert len(data["results"]) == 6
    metrics = {row["metric"]: row["values"] for row in data["metrics"]}
    assert metrics["train_loss"] == [LOSSES[0.0][-1], LOSSES[0.3][-1]]
    assert metrics["weight_l1[layer=fc]"] == [pytest.approx(10.0), pytest.approx(10.3)]
    loss_curves = [c for c in data["curves"] if c["name"] == "train_loss"]
    assert [(c["run_id"], c["steps"], c["values"]) for c in loss_curves] == [
        (seeded.standard, [1, 2, 3], list(LOSSES[0.0])),
        (seeded.robust, [1, 2, 3], list(LOSSES[0.3]))]


def test_compare_table_shows_the_three_sections(seeded: Seeded) -> None:
    result = robustlab(seeded, "compare", seeded.standard[:4], seeded.robust[:4])
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for title in ("spec diff", "results (accuracy)", "metrics (last step of each series)"):
        assert title in text
    (eps_line,) = [line for line in text.splitlines() if "adversary.eps" in line]
    assert "0.3" in eps_line
    results = text.split("results (accuracy)")[1].split("metrics (last step")[0]
    (pgd_line,) = [line for line in results.splitlines()
                   if " test " in f" {line} " and "0.3" in line and "pgd" in line]
    cells = [cell.strip() for cell in pgd_line.strip("│ ").split("│")]
    assert cells[-3:] == ["0.00%", "89.00%", "89.00"]  # standard, robust, spread (points)


def test_compare_needs_two_distinct_runs(seeded: Seeded) -> None:
    for args in ([seeded.standard], [seeded.standard, seeded.standard]):
        result = robustlab(seeded, "compare", *args)
        assert result.returncode == 2, result.stdout
        assert len(result.stderr.strip().splitlines()) == 1
