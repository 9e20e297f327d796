"""``robustlab results --over-seeds``: one row per cell (a spec apart from its seed) and result.

A real SQLite store holds three seeds of one training spec, one seed of another (another eps),
and an ``evaluate`` run of each trained run (whose specs name different ``source.run`` ids but
are one cell). Means, standard deviations and the 95% t interval are checked against numpy and
``scipy.stats.t``; json, csv and the table all show them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from contract.records import EvaluationRecord
from service.analysis.seeds import OVER_SEEDS_COLUMNS
from service.store import migrate
from service.store.entities import NewRun
from service.store.repository import Store
from service.store.storage import LocalStorage

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
CLEAN = {0: 0.981, 1: 0.975, 2: 0.990}
"""Seed -> clean accuracy of the eps-0.3 training spec."""
ROBUST = {0: 0.902, 1: 0.871, 2: 0.915}
"""Seed -> PGD accuracy at 0.3 of the eps-0.3 training spec."""
AUTOATTACK = {0: 0.88, 1: 0.85, 2: 0.90}
"""Seed -> AutoAttack accuracy of the evaluate run of each seed's model."""


@dataclass(frozen=True)
class Seeded:
    url: str
    artifact_dir: Path

    def results(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
        env |= {"ROBUSTLAB_DATABASE_URL": self.url,
                "ROBUSTLAB_ARTIFACT_DIR": str(self.artifact_dir)}
        done = subprocess.run([ROBUSTLAB, "results", *args], env=env, capture_output=True,
                              text=True, timeout=120, cwd=self.artifact_dir.parent)
        assert done.returncode == 0, done.stderr
        return done.stdout


def train_spec(eps: float, seed: int) -> dict[str, Any]:
    return {"name": "seeds", "kind": "train", "seed": seed, "adversary": {"eps": eps},
            "dataset": {"name": "mnist"}}


def add(store: Store, run_id: str, spec: dict[str, Any], cell: int,
        evaluations: list[EvaluationRecord]) -> None:
    store.add_runs(f"spec-{spec['name']}", [NewRun(
        id=run_id, experiment=spec["name"], kind=spec["kind"], cell=cell, params={},
        resolved_spec=spec, spec_hash=f"h{run_id}", seed=spec["seed"])])
    store.write_records(run_id, evaluations=evaluations)
    store.finish_run(run_id, "succeeded")


def evaluation(accuracy: float, attack: str = "none", **fields: Any) -> EvaluationRecord:
    attacked = {} if attack == "none" else {"eval_norm": "linf", "eval_eps": 0.3, "steps": 40}
    return EvaluationRecord(model="mnist_cnn", dataset="mnist", train_norm="linf",
                            accuracy=accuracy, n=1000, attack=attack, **(attacked | fields))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    tmp = tmp_path_factory.mktemp("seeds")
    url = f"sqlite:///{tmp / 'seeds.db'}"
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(tmp / "artifacts"))
    try:
        store.add_spec("spec-seeds", "seeds", "train", None, "kind: train\n", {})
        store.add_spec("spec-aa", "aa", "evaluate", None, "kind: evaluate\n", {})
        for seed in (0, 1, 2):
            add(store, f"train0000{seed}", train_spec(0.3, seed), seed, [
                evaluation(CLEAN[seed], train_eps=0.3),
                evaluation(ROBUST[seed], "pgd", train_eps=0.3)])
            add(store, f"evalu0000{seed}", {"name": "aa", "kind": "evaluate", "seed": 0,
                                            "source": {"run": f"train0000{seed}"}}, seed,
                [evaluation(AUTOATTACK[seed], "autoattack", train_eps=0.3, steps=None)])
        add(store, "train00009", train_spec(0.1, 0), 9, [evaluation(0.99, train_eps=0.1)])
    finally:
        store.close()
    return Seeded(url, tmp / "artifacts")


def t_interval(values: list[float]) -> tuple[float, float]:
    mean, sem = float(np.mean(values)), float(scipy_stats.sem(values))
    return scipy_stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)


def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    (found,) = [row for row in rows if all(row[k] == v for k, v in match.items())]
    return found


def test_json_pools_each_cell_over_its_seeds(seeded: Seeded) -> None:
    rows = json.loads(seeded.results("--over-seeds", "--format", "json"))
    assert all(list(row) == list(OVER_SEEDS_COLUMNS) for row in rows)
    assert len(rows) == 4  # clean and pgd of eps 0.3, autoattack of its models, clean of 0.1
    for values, match in ((CLEAN, {"attack": "none", "train_eps": 0.3}),
                          (ROBUST, {"attack": "pgd"}), (AUTOATTACK, {"attack": "autoattack"})):
        row = find(rows, **match)
        accuracies = [values[seed] for seed in (0, 1, 2)]
        assert row["seeds"] == 3 and row["seed_values"] == [0, 1, 2] and row["n"] == 1000
        assert row["mean"] == pytest.approx(np.mean(accuracies), abs=1e-12)
        assert row["std"] == pytest.approx(np.std(accuracies, ddof=1), rel=1e-9)
        low, high = t_interval(accuracies)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, rel=1e-9),
                                                   pytest.approx(high, rel=1e-9))
    evaluations = find(rows, attack="autoattack")
    assert evaluations["run_ids"] == ["evalu00000", "evalu00001", "evalu00002"]
    single = find(rows, train_eps=0.1)
    assert (single["seeds"], single["mean"], single["std"], single["ci_low"]) == (
        1, 0.99, None, None)


def test_csv_and_table_show_the_same_numbers(seeded: Seeded) -> None:
    rows = list(csv.DictReader(io.StringIO(seeded.results("--over-seeds", "--format", "csv"))))
    assert list(rows[0]) == list(OVER_SEEDS_COLUMNS)
    pgd = find(rows, attack="pgd")
    assert pgd["seeds"] == "3" and pgd["seed_values"] == "0 1 2"
    assert float(pgd["mean"]) == pytest.approx(np.mean(list(ROBUST.values())))
    table = seeded.results("--over-seeds")
    low, high = t_interval(list(ROBUST.values()))
    mean, std = np.mean(list(ROBUST.values())), np.std(list(ROBUST.values()), ddof=1)
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in table
    assert f"[{100 * low:.2f}, {100 * high:.2f}]" in table


def test_the_table_names_the_checkpoint_only_when_rows_differ_in_it() -> None:
    from rich.console import Console

    from service.seed_results import to_table

    def rendered(rows: list[dict[str, object]]) -> str:
        console = Console(width=400, record=True)
        console.print(to_table(rows))
        return console.export_text()

    row = {"experiment": "e", "model": "mnist_cnn", "dataset": "mnist", "split": "test",
           "attack": "none", "mean": 0.9, "std": None, "seeds": 1, "n": 100,
           "ci_low": None, "ci_high": None, "checkpoint": "final"}
    assert "checkpoint" not in rendered([row])
    both = rendered([row, {**row, "checkpoint": "best", "mean": 0.8}])
    assert "checkpoint" in both and "best" in both
