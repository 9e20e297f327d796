"""Two trained runs in a real SQLite store, for the ``metrics`` / ``compare`` / export tests.

A standard and an l_inf-robust ``mnist_cnn`` cell of one sweep, as the runner would record
them: resolved specs that differ in ``adversary.eps``, the same evaluations (clean and PGD at
two radii, train and test split), three epochs of training curves, a scalar metric with tags,
and an artifact. Written through ``Store`` and the runner's ``StoreReporter``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contract.records import ArtifactRecord, EvaluationRecord, MetricRecord
from service.recording import StoreReporter
from service.store import migrate
from service.store.entities import NewRun
from service.store.repository import Store
from service.store.storage import LocalStorage

EPS = (0.0, 0.3)
LOSSES = {0.0: (0.9, 0.5, 0.25), 0.3: (1.8, 1.4, 1.1)}
ACCURACY = {  # (train_eps, eval_eps) -> accuracy on the test split
    (0.0, 0.0): 0.99, (0.0, 0.1): 0.40, (0.0, 0.3): 0.0,
    (0.3, 0.0): 0.97, (0.3, 0.1): 0.93, (0.3, 0.3): 0.89,
}


@dataclass(frozen=True)
class Seeded:
    url: str
    artifact_dir: Path
    standard: str
    robust: str

    def env(self) -> dict[str, str]:
        """The environment of a ``robustlab`` subprocess reading this database."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
        return {**base, "ROBUSTLAB_DATABASE_URL": self.url,
                "ROBUSTLAB_ARTIFACT_DIR": str(self.artifact_dir)}


def resolved_spec(eps: float) -> dict[str, object]:
    return {"name": "fig1_small", "kind": "train", "seed": 0,
            "dataset": {"name": "mnist", "train_subset": 500},
            "model": {"arch": "mnist_cnn"},
            "adversary": {"norm": "linf", "eps": eps, "steps": 7},
            "training": {"epochs": 3, "lr": 0.01},
            "evaluation": {"attacks": [{"kind": "pgd", "norm": "linf", "eps": 0.3, "steps": 20}]}}


def seed_two_runs(tmp_path: Path) -> Seeded:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    artifact_dir = tmp_path / "artifacts"
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(artifact_dir))
    store.add_spec("spec-fig1", "fig1_small", "train", None, "kind: train\n", {})
    runs = store.add_runs("spec-fig1", [
        NewRun(id=f"{'std' if eps == 0 else 'rob'}00000001", experiment="fig1_small",
               kind="train", cell=cell, params={"adversary.eps": eps},
               resolved_spec=resolved_spec(eps), spec_hash=f"hash-{eps}", seed=0)
        for cell, eps in enumerate(EPS)])
    for run, eps in zip(runs, EPS, strict=True):
        reporter = StoreReporter(store, run.id)
        for epoch, loss in enumerate(LOSSES[eps], start=1):
            reporter.metric(MetricRecord(name="train_loss", value=loss, step=epoch))
            reporter.metric(MetricRecord(name="train_accuracy", value=1 - loss / 2, step=epoch))
        reporter.metric(MetricRecord(name="weight_l1", value=10.0 + eps,
                                     tags={"layer": "fc"}))
        for split in ("train", "test"):
            for eval_eps in (0.0, 0.1, 0.3):
                accuracy = ACCURACY[(eps, eval_eps)] - (0.0 if split == "test" else -0.005)
                reporter.evaluation(EvaluationRecord(
                    model="mnist_cnn", dataset="mnist", split=split, train_norm="linf",
                    train_eps=eps, eval_norm="linf" if eval_eps else None, eval_eps=eval_eps,
                    attack="pgd" if eval_eps else "none", steps=20 if eval_eps else None,
                    accuracy=min(accuracy, 1.0), n=200))
        reporter.artifact(ArtifactRecord(kind="figure", name="curve.png", data=b"\x89PNG fake",
                                         media_type="image/png"))
        reporter.provenance(data_hash=f"sha-{eps}", data_files={"mnist": "train.npz"})
        store.finish_run(run.id, "succeeded")
    store.close()
    return Seeded(url, artifact_dir, runs[0].id, runs[1].id)
