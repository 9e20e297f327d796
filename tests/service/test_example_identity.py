"""The identity of a row's examples (``dataset_hash``, ``examples_hash``) through the store.

Rows are written through the real ``Store`` on SQLite and PostgreSQL (``database_url``), read
back as result rows, and compared as ``robustlab compare`` compares them: rows naming the
same examples are paired (McNemar), rows naming other examples of the same size, or none (rows
older than migration 0006), are unpaired (Fisher) even though their bits line up.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from contract.records import EvaluationRecord
from service.analysis.compare import paired_differences
from service.cli.compare import run_sides
from service.results import fetch_rows
from service.store import migrate
from service.store.entities import NewRun
from service.store.repository import Store
from service.store.storage import LocalStorage

N = 300
DATA = hashlib.sha256(b"some dataset").hexdigest()


def indices_hash(indices: np.ndarray) -> str:
    """The reference: sha256 of the indices as little-endian int64, in order."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


FIRST = indices_hash(np.arange(N))
OTHERS = indices_hash(np.arange(N, 2 * N))


def row(correct: np.ndarray, attack: str, **identity: Any) -> EvaluationRecord:
    eval_fields: dict[str, Any] = ({} if attack == "none" else
                                   {"eval_norm": "linf", "eval_eps": 0.1, "steps": 10})
    return EvaluationRecord(model="mnist_cnn", dataset="mnist", attack=attack,
                            accuracy=float(correct.mean()), n=len(correct),
                            per_example=np.packbits(correct).tobytes(), **eval_fields,
                            **identity)


def test_identity_round_trips_and_decides_pairing(database_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    migrate.upgrade(database_url)
    store = Store(database_url, storage=LocalStorage(tmp_path / "artifacts"))
    try:
        store.add_spec("spec-ids", "ids", "train", None, "kind: train\n", {})
        bits: dict[tuple[str, str], np.ndarray] = {}
        for cell, run_id in enumerate(("ida0000001", "idb0000001")):
            store.add_runs("spec-ids", [NewRun(
                id=run_id, experiment="ids", kind="train", cell=cell, params={},
                resolved_spec={"name": "ids", "seed": cell}, spec_hash=f"h{cell}", seed=cell)])
            for attack in ("none", "pgd", "fgsm"):
                bits[run_id, attack] = rng.random(N) < (0.9 if attack == "none" else 0.5)
            b = run_id == "idb0000001"
            store.write_records(run_id, evaluations=[
                row(bits[run_id, "none"], "none", dataset_hash=DATA, examples_hash=FIRST),
                # run b scored other examples of the same size: not paired
                row(bits[run_id, "pgd"], "pgd", dataset_hash=DATA,
                    examples_hash=OTHERS if b else FIRST),
                # run b's row is older than the identity columns: not paired
                row(bits[run_id, "fgsm"], "fgsm",
                    **({} if b else {"dataset_hash": DATA, "examples_hash": FIRST})),
            ])
            store.finish_run(run_id, "succeeded")
        rows = {(r["run_id"], r["attack"]): r
                for r in fetch_rows(store, run_ids=["ida0000001", "idb0000001"])}
        sides = run_sides(store, ["ida0000001", "idb0000001"])
    finally:
        store.close()
    assert (rows["ida0000001", "none"]["dataset_hash"],
            rows["ida0000001", "none"]["examples_hash"]) == (DATA, FIRST)
    assert rows["idb0000001", "pgd"]["examples_hash"] == OTHERS
    assert (rows["idb0000001", "fgsm"]["dataset_hash"],
            rows["idb0000001", "fgsm"]["examples_hash"]) == (None, None)

    found = {entry.attack: entry.test for entry in paired_differences(sides)}
    assert found["none"].paired is True
    a, b = bits["ida0000001", "none"], bits["idb0000001", "none"]
    assert (found["none"].a_only, found["none"].b_only) == (int((a & ~b).sum()),
                                                           int((b & ~a).sum()))
    for attack in ("pgd", "fgsm"):
        test = found[attack]
        assert test.paired is False and test.a_only is None and test.b_only is None
        k_a, k_b = int(bits["ida0000001", attack].sum()), int(bits["idb0000001", attack].sum())
        expected = scipy_stats.fisher_exact([[k_a, N - k_a], [k_b, N - k_b]]).pvalue
        assert test.p_value == pytest.approx(expected, rel=1e-9)
