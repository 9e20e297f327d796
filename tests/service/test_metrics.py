"""``robustlab metrics RUN...``: every metric, curves included, as table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.results_seed import LOSSES, Seeded, seed_two_runs

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"


def robustlab(seeded: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROBUSTLAB, *args], env=seeded.env(), cwd=seeded.artifact_dir.parent,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed_two_runs(tmp_path_factory.mktemp("metrics"))


def test_json_has_every_value_of_every_curve(seeded: Seeded) -> None:
    result = robustlab(seeded, "metrics", seeded.standard, seeded.robust[:5], "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert set(rows[0]) == {"run_id", "name", "tags", "step", "value"}
    for run_id, eps in ((seeded.standard, 0.0), (seeded.robust, 0.3)):
        loss = [(r["step"], r["value"]) for r in rows
                if r["run_id"] == run_id and r["name"] == "train_loss"]
        assert loss == [(1, LOSSES[eps][0]), (2, LOSSES[eps][1]), (3, LOSSES[eps][2])]
        (weight,) = [r for r in rows if r["run_id"] == run_id and r["name"] == "weight_l1"]
        assert weight["tags"] == {"layer": "fc"} and weight["value"] == pytest.approx(10 + eps)
    assert len(rows) == 2 * (3 + 3 + 1)


def test_csv_rows_match_json_with_tags_as_json(seeded: Seeded) -> None:
    result = robustlab(seeded, "metrics", seeded.robust, "--format", "csv", "--name", "weight_l1")
    assert result.returncode == 0, result.stderr
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["run_id"] == seeded.robust and json.loads(row["tags"]) == {"layer": "fc"}
    assert float(row["value"]) == pytest.approx(10.3)


def test_table_shows_each_curve_step_by_step(seeded: Seeded) -> None:
    result = robustlab(seeded, "metrics", seeded.standard)
    assert result.returncode == 0, result.stderr
    (loss_line,) = [line for line in result.stdout.splitlines() if "train_loss" in line]
    assert "1..3 (3)" in loss_line and "1:0.9 2:0.5 3:0.25" in loss_line
    assert any("weight_l1[layer=fc]" in line for line in result.stdout.splitlines())


def test_an_unknown_run_is_one_line_exit_2(seeded: Seeded) -> None:
    result = robustlab(seeded, "metrics", "nosuchrun")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nosuchrun" in result.stderr
