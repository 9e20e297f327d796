"""Result rows carry the 95% Wilson interval of their accuracy: ``ci_low`` and ``ci_high``.

Derived columns (``contract.columns``, source "derived"): computed from accuracy and n where
rows are built, in every format of ``robustlab results`` and in ``results_frame``, never stored
in the database. Checked against ``scipy.stats.binomtest(k, n).proportion_ci("wilson")``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from contract.columns import COLUMNS, DERIVED_COLUMNS, READ_COLUMNS, STORED_COLUMNS
from service.results import results_frame
from service.store.models import Evaluation
from service.store.repository import Store
from service.store.storage import LocalStorage
from tests.service.results_seed import Seeded, seed_two_runs

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed_two_runs(tmp_path_factory.mktemp("intervals"))


def results(seeded: Seeded, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")} | seeded.env()
    done = subprocess.run([ROBUSTLAB, "results", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=seeded.artifact_dir.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


def wilson(accuracy: float, n: int) -> tuple[float, float]:
    ci = scipy_stats.binomtest(round(accuracy * n), n).proportion_ci(method="wilson")
    return ci.low, ci.high


def test_the_derived_columns_come_last_and_are_not_stored() -> None:
    assert [c.name for c in DERIVED_COLUMNS] == ["ci_low", "ci_high"]
    assert list(COLUMNS) == [*READ_COLUMNS, "ci_low", "ci_high"]
    assert {"ci_low", "ci_high"}.isdisjoint(c.name for c in STORED_COLUMNS)
    assert {"ci_low", "ci_high"}.isdisjoint(Evaluation.__table__.columns.keys())


def test_json_and_csv_rows_carry_the_wilson_interval(seeded: Seeded) -> None:
    rows = json.loads(results(seeded, "--format", "json"))
    assert rows and all(list(row) == list(COLUMNS) for row in rows)
    for row in rows:
        low, high = wilson(row["accuracy"], row["n"])
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, rel=1e-9, abs=1e-12),
                                                   pytest.approx(high, rel=1e-9, abs=1e-12))
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    zero = next(row for row in rows if row["accuracy"] == 0.0)
    assert zero["ci_low"] == 0.0 and zero["ci_high"] > 0.0
    table = list(csv.DictReader(io.StringIO(results(seeded, "--format", "csv"))))
    assert list(table[0]) == list(COLUMNS)
    assert [float(r["ci_high"]) for r in table] == [pytest.approx(r["ci_high"]) for r in rows]


def test_the_table_shows_the_interval_after_accuracy(seeded: Seeded) -> None:
    text = results(seeded, "--run", seeded.standard)
    header = next(line for line in text.splitlines() if "accuracy" in line)
    names = [cell.strip() for cell in header.strip("┃ ").split("┃")]
    assert names[names.index("accuracy") + 1] == "95% CI"
    (line,) = [line for line in text.splitlines() if " test " in line and "40.00%" in line]
    low, high = wilson(0.40, 200)
    assert f"[{100 * low:.2f}, {100 * high:.2f}]" in line


def test_latex_shows_the_interval_only_when_asked(seeded: Seeded) -> None:
    plain = results(seeded, "--run", seeded.standard, "--format", "latex")
    assert "CI" not in plain
    with_ci = results(seeded, "--run", seeded.standard, "--format", "latex", "--ci")
    assert r"accuracy (\%) & 95\% CI (\%) & n \\" in with_ci
    low, high = wilson(0.40, 200)
    assert f"40.00 & [{100 * low:.2f}, {100 * high:.2f}] & 200" in with_ci


def test_results_frame_has_the_derived_columns(seeded: Seeded) -> None:
    store = Store(seeded.url, storage=LocalStorage(seeded.artifact_dir))
    try:
        frame = results_frame(store)
    finally:
        store.close()
    assert list(frame.columns) == list(COLUMNS)
    for _, row in frame.iterrows():
        assert (row["ci_low"], row["ci_high"]) == tuple(
            pytest.approx(v) for v in wilson(row["accuracy"], row["n"]))
