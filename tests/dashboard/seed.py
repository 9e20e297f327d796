"""A results database with something on every dashboard page, written through the real store.

``seed_database(url, artifact_dir)`` migrates the database and records, through
``service.store.repository.Store``: a Figure 1 sweep on two datasets (l_inf and l_2), a theory
run with Theorem 2.1's numbers, a top-k pixels run (Figure 2c), a gallery run with large-eps and
gradient pictures of a standard and a robust model plus their alignment metrics, a figure, and
runs that failed, are running and are queued. Other tests (and the lead) reuse it.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from contract.records import ArtifactRecord, EvaluationRecord, MetricRecord
from service.store.entities import NewRun
from service.store.migrate import upgrade
from service.store.repository import Store
from service.store.storage import LocalStorage

THEORY_P, THEORY_D = 0.7, 1000
THEORY_ETA = 4 / math.sqrt(THEORY_D)
THEORY_EPS = 2 * THEORY_ETA
FIG1_EPS = {("mnist", "linf"): [0.0, 0.1, 0.3], ("mnist", "l2"): [0.0, 1.5],
            ("binary_mnist", "linf"): [0.0, 0.2]}
TOPK = [10, 50, 200, 784]
FAILURE = "Traceback (most recent call last):\n  File \"x.py\", line 1\nFileNotFoundError: no MNIST data under data/mnist"


@dataclass
class Seeded:
    """The ids of what was seeded, for tests to find it again."""

    url: str
    artifact_dir: Path
    fig1: dict[tuple[str, str, float], str] = field(default_factory=dict)
    """(dataset, norm, eps_train) -> run id."""
    theory: str = ""
    topk: str = ""
    gallery: str = ""
    failed: str = ""
    running: str = ""
    queued: str = ""
    evaluations: int = 0
    gallery_images: int = 0


def png(seed: int, size: int = 56) -> bytes:
    """A small, distinct RGB picture (a coloured gradient) as PNG bytes."""
    image = Image.new("RGB", (size, size))
    image.putdata([((x * 4 + seed * 70) % 256, (y * 4) % 256, (seed * 50) % 256)
                   for y in range(size) for x in range(size)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


class _Seeder:
    def __init__(self, url: str, artifact_dir: Path) -> None:
        self.store = Store(url, storage=LocalStorage(artifact_dir))
        self.seeded = Seeded(url=url, artifact_dir=artifact_dir)
        self.counter = 0

    def run(self, experiment: str, kind: str, resolved: dict[str, Any],
            params: dict[str, Any] | None = None, status: str = "succeeded",
            error: str | None = None) -> str:
        """Record one run and take it to ``status`` the way the runner does."""
        self.counter += 1
        run_id = f"{experiment[:8]}{self.counter:04d}"
        spec_id = hashlib.sha256(experiment.encode()).hexdigest()
        spec = {"name": experiment, "kind": kind, **resolved}
        self.store.add_spec(spec_id, experiment, kind, f"specs/{experiment}.yaml",
                            f"name: {experiment}\nkind: {kind}\n", spec)
        self.store.add_runs(spec_id, [NewRun(
            id=run_id, experiment=experiment, kind=kind, cell=self.counter, params=params or {},
            resolved_spec=spec, spec_hash=hashlib.sha256(run_id.encode()).hexdigest(), seed=0,
        )])
        if status == "queued":
            return run_id
        self.store.mark_running(run_id, host="seed-host", device="cpu", git_sha="0123abcd",
                                package_versions={"torch": "2.x", "robustlab": "0.1.0"})
        self.store.add_provenance(run_id, data_hash="d" * 64, data_files=["seed"])
        if status == "running":
            self.store.set_progress(run_id, 0.4, "epoch 2/5")
        else:
            self.store.set_progress(run_id, 1.0, "done")
            self.store.finish_run(run_id, status, error)
        return run_id

    def evaluation(self, run_id: str, record: EvaluationRecord) -> None:
        self.store.upsert_evaluation(run_id, record)
        self.seeded.evaluations += 1

    def figure1(self) -> None:
        for (dataset, norm), radii in FIG1_EPS.items():
            for eps in radii:
                run_id = self.run(f"fig1_{dataset}", "train",
                                  {"adversary": {"norm": norm, "eps": eps}},
                                  params={"adversary.norm": norm, "adversary.eps": eps})
                self.seeded.fig1[(dataset, norm, eps)] = run_id
                common: dict[str, Any] = dict(model="mnist_cnn", dataset=dataset, n=500,
                                              train_norm=norm, train_eps=eps)
                self.evaluation(run_id, EvaluationRecord(accuracy=0.99 - 0.05 * eps, **common))
                self.evaluation(run_id, EvaluationRecord(
                    accuracy=min(0.9, 0.02 + 2 * eps), eval_norm=norm, eval_eps=0.3,
                    attack="pgd", steps=20, step_size=0.025, restarts=1, **common,
                ))
                for epoch in range(3):
                    self.store.upsert_metric(run_id, MetricRecord("train_loss", 1.0 / (epoch + 1),
                                                                  step=epoch))
                    self.store.upsert_metric(run_id, MetricRecord("train_accuracy",
                                                                  0.8 + 0.05 * epoch, step=epoch))

    def theory(self) -> None:
        """f_avg's closed forms and an x1-only robust classifier (standard = adversarial = p)."""
        run_id = self.run("e1_theory", "theory", {
            "distribution": {"p": THEORY_P, "d": THEORY_D, "eta": THEORY_ETA},
            "eps": [THEORY_EPS],
        })
        self.seeded.theory = run_id
        margin = THEORY_ETA * math.sqrt(THEORY_D)
        for model, std, adv in (("averaging", _phi(margin), _phi(-margin)),
                                ("svm", 0.995, 0.004)):
            self.theory_pair(run_id, model, None, 0.0, std, adv)
        self.theory_pair(run_id, "svm", "linf", THEORY_EPS, THEORY_P, THEORY_P)
        self.evaluation(run_id, EvaluationRecord(
            model="logistic", dataset="theory", accuracy=0.02, n=10_000, eval_norm="linf",
            eval_eps=THEORY_EPS, attack="exact_linear", variant="transfer:svm->logistic",
        ))
        self.store.add_artifact(run_id, ArtifactRecord("figure", "e1_tradeoff.png", png(9),
                                                       metadata={"title": "E1 trade-off"}))
        self.seeded.gallery_images += 1

    def theory_pair(self, run_id: str, model: str, norm: str | None, train_eps: float,
                    std: float, adv: float) -> None:
        common: dict[str, Any] = dict(model=model, dataset="theory", n=10_000,
                                      train_norm=norm, train_eps=train_eps)
        self.evaluation(run_id, EvaluationRecord(accuracy=std, **common))
        self.evaluation(run_id, EvaluationRecord(accuracy=adv, eval_norm="linf",
                                                 eval_eps=THEORY_EPS, attack="exact_linear",
                                                 **common))

    def topk(self) -> None:
        run_id = self.run("e3_topk", "linear_features", {"k": TOPK})
        self.seeded.topk = run_id
        for k in TOPK:
            common: dict[str, Any] = dict(model="linear", dataset="binary_mnist", n=2000,
                                          variant=f"topk={k}")
            self.evaluation(run_id, EvaluationRecord(accuracy=0.9 + k / 10_000, **common))
            self.evaluation(run_id, EvaluationRecord(accuracy=0.8 - k / 1000, eval_norm="linf",
                                                     eval_eps=0.2, attack="exact_linear",
                                                     **common))

    def gallery(self) -> None:
        """Pictures of image 3 for a standard and an l_inf-robust model, and their scores."""
        run_id = self.run("e4_large_eps", "large_eps", {"models": ["standard", "linf"]})
        self.seeded.gallery = run_id
        for index, (norm, eps, agreement, alignment) in enumerate(
            (("linf", 0.0, 0.11, 0.05), ("linf", 0.3, 0.93, 0.71))
        ):
            metadata = {"model": "mnist_cnn", "train_norm": norm, "train_eps": eps, "image": 3,
                        "target": 7}
            tag = f"{norm}_{eps:g}"
            self.store.add_artifact(run_id, ArtifactRecord("large_eps", f"large_eps_{tag}.png",
                                                           png(index), metadata=metadata))
            self.store.add_artifact(run_id, ArtifactRecord("gradients", f"gradients_{tag}.png",
                                                           png(index + 3), metadata=metadata))
            self.seeded.gallery_images += 2
            tags = {"train_norm": norm, "train_eps": eps, "image": 3}
            self.store.upsert_metric(run_id, MetricRecord("target_agreement", agreement,
                                                          tags=tags))
            self.store.upsert_metric(run_id, MetricRecord("gradient_edge_alignment", alignment,
                                                          tags=tags))
        self.store.upsert_metric(run_id, MetricRecord("target_agreement", 0.5,
                                                      tags={"train_eps": 0.3, "image": 4}))

    def life_cycle(self) -> None:
        self.seeded.failed = self.run("broken", "train", {}, status="failed", error=FAILURE)
        self.seeded.running = self.run("in_progress", "train", {}, status="running")
        self.seeded.queued = self.run("waiting", "train", {}, status="queued")


def seed_database(url: str, artifact_dir: Path) -> Seeded:
    """Migrate ``url`` and fill it (artifacts under ``artifact_dir``); returns what was made."""
    upgrade(url)
    seeder = _Seeder(url, artifact_dir)
    try:
        seeder.figure1()
        seeder.theory()
        seeder.topk()
        seeder.gallery()
        seeder.life_cycle()
    finally:
        seeder.store.close()
    return seeder.seeded


QUICKSTART_EPS = (0.0, 0.3)
LONE_EPS = 0.3


def seed_first_hour(url: str, artifact_dir: Path) -> Seeded:
    """What a new user has after the first hour, on top of ``seed_database``'s rows: the
    quickstart (ε_train 0 and 0.3, each evaluated clean, by PGD and by the per-example worst
    case, which with one attack equals PGD, so two lines coincide), a one-run experiment with
    a single ε_train (a one-point curve), the gallery run's side-by-side figure of its
    gradient pictures (as E6 records it) and E1's figure recorded again by two re-runs."""
    seeded = seed_database(url, artifact_dir)
    seeder = _Seeder(url, artifact_dir)
    seeder.seeded = seeded
    seeder.counter = 100
    try:
        for eps in QUICKSTART_EPS:
            run_id = seeder.run("quickstart", "train", {"adversary": {"norm": "linf", "eps": eps}},
                                params={"adversary.eps": eps})
            common: dict[str, Any] = dict(model="mnist_cnn", dataset="mnist", n=500,
                                          train_norm="linf", train_eps=eps)
            adversarial = 0.01 + 2.5 * eps
            seeder.evaluation(run_id, EvaluationRecord(accuracy=0.98 - 0.03 * eps, **common))
            seeder.evaluation(run_id, EvaluationRecord(
                accuracy=adversarial, eval_norm="linf", eval_eps=0.3, attack="pgd", steps=20,
                step_size=0.025, restarts=1, **common))
            seeder.evaluation(run_id, EvaluationRecord(
                accuracy=adversarial, eval_norm="linf", eval_eps=0.3, attack="worst_case",
                **common))
        run_id = seeder.run("my_first_robust", "train",
                            {"adversary": {"norm": "linf", "eps": LONE_EPS}})
        common = dict(model="mnist_cnn", dataset="mnist", n=500, train_norm="linf",
                      train_eps=LONE_EPS)
        seeder.evaluation(run_id, EvaluationRecord(accuracy=0.97, **common))
        seeder.evaluation(run_id, EvaluationRecord(
            accuracy=0.7, eval_norm="linf", eval_eps=0.3, attack="pgd", steps=20,
            step_size=0.025, restarts=1, **common))
        seeder.store.add_artifact(seeded.gallery, ArtifactRecord(  # E6's models side by side
            "figure", "figure_gradients.png", png(12), metadata={"figure": "gradients"}))
        for again in range(2):  # the same figure of two runs of one spec
            rerun = seeder.run("e1_theory", "theory", {"distribution": {"p": THEORY_P}},
                               params={"again": again})
            seeder.store.add_artifact(rerun, ArtifactRecord(
                "figure", "e1_tradeoff.png", png(9), metadata={"title": "E1 trade-off"}))
    finally:
        seeder.store.close()
    return seeded
