"""``robustlab compare``'s differences with their uncertainty, through the real CLI and store.

Two runs are written through the real ``Store`` (SQLite, and PostgreSQL when marked) with
per-example correctness bits that the test knows: the CLI must count the discordant examples
from the stored bits, give McNemar's exact p (``scipy.stats.binomtest`` on the same counts),
fall back to an unpaired comparison (Fisher, ``scipy.stats.fisher_exact``) where a row has no
bits or another n, and set each attack against the strongest of its ball. A last test trains
two tiny models and evaluates them with the real ``workers.science.evaluate``, so the bits
are the science's own, not the test's.
"""

from __future__ import annotations

import hashlib
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
from service.analysis.pairing import discordance
from service.store import migrate
from service.store.entities import NewRun
from service.store.repository import Store
from service.store.storage import LocalStorage

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
N = 997
"""Examples per evaluation: not a multiple of 8, so the last byte's padding must be masked."""
PAIRED_KEYS = ["a", "b", "attack", "eval_norm", "eval_eps", "variant", "split", "n", "a_only",
               "b_only", "difference", "ci_low", "ci_high", "p_value", "p_holm", "paired",
               "checkpoint"]
STRONGEST_KEYS = ["run", "model", "split", "eval_norm", "eval_eps", "attack", "variant",
                  "strongest", "strongest_variant", "n", "a_only", "b_only", "difference",
                  "ci_low", "ci_high", "p_value", "p_holm", "paired"]


@dataclass(frozen=True)
class Stored:
    url: str
    artifact_dir: Path
    bits: dict[tuple[str, str], np.ndarray]
    """(run id, evaluation label) -> the (N,) bool correctness written for it."""

    def robustlab(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
        env |= {"ROBUSTLAB_DATABASE_URL": self.url,
                "ROBUSTLAB_ARTIFACT_DIR": str(self.artifact_dir)}
        return subprocess.run([ROBUSTLAB, *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=self.artifact_dir.parent)


DATA_HASH = "d" * 64


def first_examples(n: int) -> str:
    """The examples_hash of the first n examples (sha256 of int64 little-endian indices)."""
    return hashlib.sha256(np.arange(n, dtype="<i8").tobytes()).hexdigest()


def record(correct: np.ndarray | None, *, accuracy: float | None = None, n: int = N,
           **fields: Any) -> EvaluationRecord:
    """A result row whose per-example bits are ``correct`` (packed as the science packs them),
    scored on the first examples of the split (its identity: ``DATA_HASH``, ``first_examples``)."""
    common: dict[str, Any] = {
        "model": "mnist_cnn", "dataset": "mnist", "train_norm": "linf", "dataset_hash": DATA_HASH,
        "examples_hash": first_examples(n if correct is None else len(correct))}
    return EvaluationRecord(
        **(common | fields),
        accuracy=float(correct.mean()) if correct is not None else float(accuracy or 0.0),
        n=n if correct is None else len(correct),
        per_example=np.packbits(correct).tobytes() if correct is not None else None)


def flip(correct: np.ndarray, rng: np.random.Generator, to_wrong: int, to_right: int
         ) -> np.ndarray:
    """``correct`` with ``to_wrong`` right examples made wrong and ``to_right`` wrong ones right."""
    out = correct.copy()
    out[rng.choice(np.flatnonzero(correct), to_wrong, replace=False)] = False
    out[rng.choice(np.flatnonzero(~correct), to_right, replace=False)] = True
    return out


def new_run(store: Store, run_id: str, eps: float, cell: int) -> str:
    store.add_runs("spec-pairs", [NewRun(
        id=run_id, experiment="pairs", kind="train", cell=cell, params={"adversary.eps": eps},
        resolved_spec={"name": "pairs", "adversary": {"eps": eps}}, spec_hash=f"h{eps}",
        seed=0)])
    return run_id


def seed(url: str, tmp_path: Path) -> Stored:
    """Runs "runa000001" (standard) and "runb000001" (robust) on the same N test examples.

    Paired: clean, PGD and FGSM at linf 0.1 (test split). Unpaired: PGD at 0.3 (run b kept no
    bits), and the train split's clean row (run b measured 600 examples, run a N).
    """
    rng = np.random.default_rng(0)
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(tmp_path / "artifacts"))
    try:
        store.add_spec("spec-pairs", "pairs", "train", None, "kind: train\n", {})
        a, b = new_run(store, "runa000001", 0.0, 0), new_run(store, "runb000001", 0.3, 1)
        bits: dict[tuple[str, str], np.ndarray] = {}
        bits[a, "clean"] = rng.random(N) < 0.97
        bits[b, "clean"] = flip(bits[a, "clean"], rng, to_wrong=31, to_right=9)
        bits[a, "pgd"] = bits[a, "clean"] & (rng.random(N) < 0.35)
        bits[b, "pgd"] = bits[b, "clean"] & (rng.random(N) < 0.85)
        bits[a, "fgsm"] = flip(bits[a, "pgd"], rng, to_wrong=0, to_right=40)
        bits[b, "fgsm"] = flip(bits[b, "pgd"], rng, to_wrong=0, to_right=3)
        bits[a, "train"] = rng.random(N) < 0.99
        bits[b, "train"] = rng.random(600) < 0.96
        for run, eps in ((a, 0.0), (b, 0.3)):
            pgd: dict[str, Any] = {"eval_norm": "linf", "eval_eps": 0.1, "attack": "pgd",
                                   "steps": 20, "train_eps": eps}
            store.write_records(run, evaluations=[
                record(bits[run, "clean"], train_eps=eps),
                record(bits[run, "pgd"], **pgd),
                record(bits[run, "fgsm"], eval_norm="linf", eval_eps=0.1, attack="fgsm",
                       steps=1, train_eps=eps),
                record(bits[run, "train"], split="train", train_eps=eps),
                record(None if run == b else bits[run, "pgd"], accuracy=0.6,  # b: no bits
                       **(pgd | {"eval_eps": 0.3})),
            ])
            store.finish_run(run, "succeeded")
        return Stored(url, tmp_path / "artifacts", bits)
    finally:
        store.close()


@pytest.fixture
def stored(database_url: str, tmp_path: Path) -> Stored:
    return seed(database_url, tmp_path)


def compare_json(stored: Stored) -> dict[str, Any]:
    result = stored.robustlab("compare", "runa000001", "runb000001", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def entry(entries: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    (found,) = [e for e in entries if all(e[k] == v for k, v in match.items())]
    return found


def test_paired_entries_count_the_stored_bits_and_test_them_as_scipy_does(
        stored: Stored) -> None:
    data = compare_json(stored)
    assert all(list(e) == PAIRED_KEYS for e in data["paired"])
    assert len(data["paired"]) == 5  # clean, pgd, fgsm at 0.1, pgd at 0.3 (test); clean (train)
    for label, match in (("clean", {"attack": "none", "split": "test"}),
                         ("pgd", {"attack": "pgd", "eval_eps": 0.1}), ("fgsm", {"attack": "fgsm"})):
        found = entry(data["paired"], **match)
        a, b = stored.bits["runa000001", label], stored.bits["runb000001", label]
        a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
        assert (found["a"], found["b"], found["paired"]) == ("runa000001", "runb000001", True)
        assert (found["n"], found["a_only"], found["b_only"]) == (N, a_only, b_only)
        assert found["a_only"] - found["b_only"] == pytest.approx(N * found["difference"])
        assert found["difference"] == pytest.approx(a.mean() - b.mean())
        expected = scipy_stats.binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
        assert found["p_value"] == pytest.approx(expected, rel=1e-9)
        assert found["ci_low"] <= found["difference"] <= found["ci_high"]
        assert found["p_value"] <= found["p_holm"] <= 1
    clean = entry(data["paired"], attack="none", split="test")
    assert (clean["a_only"], clean["b_only"]) == (31, 9)  # the flips the seed made


def test_rows_without_bits_or_with_another_n_are_compared_unpaired(stored: Stored) -> None:
    data = compare_json(stored)
    no_bits = entry(data["paired"], attack="pgd", eval_eps=0.3)
    other_n = entry(data["paired"], attack="none", split="train")
    for found in (no_bits, other_n):
        assert found["paired"] is False and found["a_only"] is None and found["b_only"] is None
    assert no_bits["n"] == N and other_n["n"] is None
    k_a, k_b = int(stored.bits["runa000001", "pgd"].sum()), round(0.6 * N)
    expected = scipy_stats.fisher_exact([[k_a, N - k_a], [k_b, N - k_b]])
    assert no_bits["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    a, b = stored.bits["runa000001", "train"], stored.bits["runb000001", "train"]
    table = [[int(a.sum()), int((~a).sum())], [int(b.sum()), int((~b).sum())]]
    assert other_n["p_value"] == pytest.approx(scipy_stats.fisher_exact(table).pvalue, rel=1e-9)
    assert other_n["difference"] == pytest.approx(a.mean() - b.mean())


def test_each_attack_is_set_against_the_strongest_of_its_ball(stored: Stored) -> None:
    data = compare_json(stored)
    assert all(list(e) == STRONGEST_KEYS for e in data["against_strongest"])
    # one ball with two attacks per run (linf 0.1 on test); pgd at 0.3 is alone in its ball
    assert [(e["run"], e["attack"], e["strongest"]) for e in data["against_strongest"]] == [
        ("runa000001", "fgsm", "pgd"), ("runb000001", "fgsm", "pgd")]
    for found in data["against_strongest"]:
        attack = stored.bits[found["run"], "fgsm"]
        strongest = stored.bits[found["run"], "pgd"]
        a_only, b_only = int((attack & ~strongest).sum()), int((strongest & ~attack).sum())
        assert (found["a_only"], found["b_only"], found["paired"]) == (a_only, b_only, True)
        assert found["p_value"] == pytest.approx(
            scipy_stats.binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue, rel=1e-9)
    assert [e["a_only"] for e in data["against_strongest"]] == [40, 3]


def test_the_text_output_shows_the_differences_and_their_tests(stored: Stored) -> None:
    result = stored.robustlab("compare", "runa", "runb")
    assert result.returncode == 0, result.stderr
    differences = result.stdout.split("differences a - b")[1].split("each attack against")[0]
    assert differences.count("paired: McNemar") == 3
    assert differences.count("unpaired: Fisher") == 2
    assert "each attack against the strongest" in result.stdout
    (clean,) = [line for line in differences.splitlines() if " none " in line and " test " in line]
    cells = [cell.strip() for cell in clean.strip("│ ").split("│")]
    assert cells[7:11] == [str(N), "31", "9", f"{100 * 22 / N:+.2f}"]


def test_compare_help_names_the_methods(stored: Stored) -> None:
    text = " ".join(stored.robustlab("compare", "--help").stdout.split())
    for method in ("McNemar", "Newcombe", "Fisher", "Holm", "paired proportions",
                   "independent proportions"):
        assert method in text


def test_discordance_masks_the_padding_and_agrees_with_numpy() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 997, 10_000):
        a, b = rng.random(n) < 0.5, rng.random(n) < 0.5
        packed_a, packed_b = bytearray(np.packbits(a).tobytes()), np.packbits(b).tobytes()
        if n % 8:
            packed_a[-1] |= 0xFF >> (n % 8)  # garbage in the padding must not count
        assert discordance(bytes(packed_a), packed_b, n) == (
            int((a & b).sum()), int((a & ~b).sum()), int((b & ~a).sum()), int((~a & ~b).sum()))
    with pytest.raises(ValueError):
        discordance(b"\x00", b"\x00", 9)


def test_two_tiny_trained_models_are_compared_on_their_own_bits(tmp_path: Path) -> None:
    """Two tiny linear models trained here, evaluated by the science's ``evaluate``; the
    CLI's McNemar p equals scipy's on the counts read back with ``unpack_correct``."""
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from contract.specs.attacks import FGSMAttack, PGDAttack
    from workers.science.evaluate import evaluate, unpack_correct
    from workers.science.example_identity import example_indices, identify

    generator = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 2
    x = (0.5 + 0.1 * (2 * y.float() - 1).view(-1, 1) * torch.ones(1, 16)
         + 0.2 * torch.randn(400, 16, generator=generator)).clamp(0, 1).view(400, 1, 4, 4)
    data = TensorDataset(x, y)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(tmp_path / "artifacts"))
    try:
        store.add_spec("spec-pairs", "pairs", "train", None, "kind: train\n", {})
        for cell, (run_id, steps) in enumerate((("tinya00001", 3), ("tinyb00001", 60))):
            torch.manual_seed(cell)
            model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
            optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
            for _ in range(steps):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimiser.step()
            result = evaluate(model, data, [PGDAttack(norm="linf", eps=0.05, steps=5),
                                            FGSMAttack(eps=0.05)], device=torch.device("cpu"))
            new_run(store, run_id, float(steps), cell)
            store.write_records(run_id, evaluations=identify(result.to_records(
                "linear", "toy", "test", None, 0.0), DATA_HASH, example_indices(data)))
            store.finish_run(run_id, "succeeded")
        stored_bits = {(row["run_id"], row["attack"], row["variant"]): unpack_correct(
            row["per_example"], 400) for row in store.per_example(
                ["tinya00001", "tinyb00001"], ("run_id", "attack", "variant"))}
    finally:
        store.close()
    stored = Stored(url, tmp_path / "artifacts", {})
    result = stored.robustlab("compare", "tinya00001", "tinyb00001", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {e["attack"] for e in data["paired"]} == {"none", "pgd", "fgsm", "worst_case"}
    for found in data["paired"]:
        assert found["paired"] is True and found["n"] == 400
        a = stored_bits["tinya00001", found["attack"], found["variant"]]
        b = stored_bits["tinyb00001", found["attack"], found["variant"]]
        a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
        assert (found["a_only"], found["b_only"]) == (a_only, b_only)
        assert found["p_value"] == pytest.approx(
            scipy_stats.binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue, rel=1e-9)
    clean = entry(data["paired"], attack="none")
    assert clean["a_only"] + clean["b_only"] > 0, "the two models should disagree somewhere"
