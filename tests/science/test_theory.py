"""E1's claims (Sec. 2.1-2.2, Appendices B-C) checked on samples of D(p, d, eta).

The exact pieces (worst case, population accuracy, closed forms, gradients, batching) are
checked against independent computations; the paper's claims are checked on whole runs of the
``theory`` kind through ``MemoryReporter``, for three distributions with eta >= 4/sqrt(d) and
2*eta < 2p - 1 (below that, REPRODUCTION.md's fact 1, adversarial training keeps no weight at
all). Sampling tolerances are four standard errors of the test sample.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from PIL import Image

from contract.records import Cancelled, EvaluationRecord, MemoryReporter
from contract.specs.kinds import TheoryDistribution, TheoryModelName, TheorySpec
from workers.science import theory
from workers.science.context import RunContext
from workers.science.experiments.theory import FIGURE_NAME, run

CPU = torch.device("cpu")
N_TEST = 4000


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These tensors are small: on a busy machine OpenMP threads only add waiting (measured
    here: 3 ms against 110 ms per training step with two threads on two shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def standard_error(accuracy: float, n: int = N_TEST) -> float:
    return math.sqrt(max(accuracy * (1 - accuracy), 1e-4) / n)


def small_dist(p: float = 0.7, d: int = 50, eta: float = 0.3) -> TheoryDistribution:
    return TheoryDistribution(p=p, d=d, eta=eta)


def draw(dist: TheoryDistribution, n: int, seed: int = 0) -> theory.Sample:
    return theory.sample(dist, n, torch.Generator().manual_seed(seed), CPU)


# --------------------------------------------------------------------------- exact pieces


def test_the_catalog_names_the_models_and_their_losses() -> None:
    assert set(get_args(TheoryModelName)) == set(theory.THEORY_MODELS)
    for name, model in theory.THEORY_MODELS.items():
        assert name == model.name
        assert model.loss is None or model.loss in theory.MARGIN_LOSSES


def test_sample_follows_the_distribution() -> None:
    dist = small_dist(p=0.8, d=20, eta=0.5)
    data = draw(dist, 20_000)
    assert data.x.shape == (20_000, 21) and set(data.y.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(data.y.mean())) < 4 / math.sqrt(20_000)
    agree = float((data.x[:, 0] == data.y).float().mean())
    assert abs(agree - 0.8) < 4 * math.sqrt(0.16 / 20_000)
    aligned = data.x[:, 1:] * data.y[:, None]  # N(eta, 1) for every weak feature
    assert abs(float(aligned.mean()) - 0.5) < 4 / math.sqrt(aligned.numel())
    assert abs(float(aligned.var()) - 1.0) < 0.02
    assert torch.equal(draw(dist, 100, seed=3).x, draw(dist, 100, seed=3).x)


def test_worst_case_inputs_are_in_the_ball_and_attain_the_robust_margin() -> None:
    dist = small_dist()
    data = draw(dist, 500)
    w = torch.randn(dist.d + 1, generator=torch.Generator().manual_seed(1))
    w[3] = 0.0
    clf = theory.LinearClassifier(w=w, b=0.2)
    eps = 0.25
    adversarial = theory.worst_case_inputs(clf, data, eps)
    assert float((adversarial - data.x).abs().max()) <= eps + 1e-6
    assert torch.equal(adversarial[:, 3], data.x[:, 3])
    attained = data.y * clf.scores(adversarial)
    assert torch.allclose(attained, theory.robust_margins(clf, data, eps), atol=1e-4)
    # no other point of the ball does better for the adversary (random corners and interiors)
    for seed in range(20):
        uniform = torch.rand(data.x.shape, generator=torch.Generator().manual_seed(seed))
        delta = eps * (2 * uniform - 1)
        assert bool((data.y * clf.scores(data.x + delta) >= attained - 1e-4).all())


def test_correct_at_agrees_with_one_radius_at_a_time() -> None:
    dist = small_dist()
    data = draw(dist, 500)
    clf = theory.LinearClassifier(w=torch.randn(dist.d + 1), b=-0.1)
    radii = [0.0, 0.05, 0.3]
    together = theory.correct_at(clf, data, radii)
    for row, eps in zip(together, radii, strict=True):
        assert torch.equal(row, theory.correct(clf, data, eps))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.6, 2.0])
def test_population_accuracy_of_f_avg_is_the_closed_form(eps: float) -> None:
    dist = TheoryDistribution(p=0.7, d=1000, eta=4 / math.sqrt(1000))
    f_avg = theory.averaging_classifier(dist, CPU)
    closed = theory.averaging_closed_form(dist, eps)
    assert theory.population_accuracy(f_avg, dist, eps) == pytest.approx(closed, abs=1e-6)


def test_closed_forms_are_the_papers_numbers() -> None:
    dist = TheoryDistribution(p=0.7, d=900, eta=3 / 30)  # eta = 3/sqrt(d): "> 99%"
    assert theory.averaging_closed_form(dist) > 0.99
    assert theory.averaging_closed_form(dist, 2 * dist.eta) < 0.01
    assert theory.averaging_closed_form(dist, 2 * dist.eta) == pytest.approx(
        1 - theory.averaging_closed_form(dist))  # Phi(-eta sqrt d) = 1 - Phi(eta sqrt d)
    # Theorem 2.1 is tight at the x1-only classifier: delta = 0.3 gives 7/3 * 0.3 = 0.7
    assert theory.theorem_2_1_bound(0.7, 0.7) == pytest.approx(0.7)
    assert theory.theorem_2_1_bound(0.7, 0.97) == pytest.approx(7 / 3 * 0.03)
    assert theory.theorem_2_1_bound(0.9, 0.5) == 1.0
    assert theory.theorem_2_1_applies(dist, 2 * dist.eta)
    assert not theory.theorem_2_1_applies(dist, 1.9 * dist.eta)


def test_population_accuracy_of_the_robust_feature_alone() -> None:
    """sign(x1) is right with probability p as long as eps < 1, and never at eps >= 1."""
    dist = small_dist(p=0.8)
    w = torch.zeros(dist.d + 1)
    w[0] = 2.0
    x1_only = theory.LinearClassifier(w=w, b=0.0)
    for eps in (0.0, 0.5, 0.99):
        assert theory.population_accuracy(x1_only, dist, eps) == pytest.approx(0.8)
    assert theory.population_accuracy(x1_only, dist, 1.0) == 0.0
    data = draw(dist, 2000)
    assert theory.accuracy(x1_only, data, 0.99) == theory.accuracy(x1_only, data)


def test_hand_written_gradients_match_autograd() -> None:
    dist = small_dist(d=8)
    data = draw(dist, 64)
    problems = [theory.Problem(theory.hinge_loss, 0.0, 0.01),
                theory.Problem(theory.logistic_loss, 0.2, 0.0),
                theory.Problem(theory.hinge_loss, 0.5, 0.3)]
    generator = torch.Generator().manual_seed(0)
    u = torch.rand(dist.d + 1, 3, generator=generator).requires_grad_(True)
    v = torch.rand(dist.d + 1, 3, generator=generator).requires_grad_(True)
    b = torch.randn(3, generator=generator).requires_grad_(True)
    total = torch.zeros(())
    for j, problem in enumerate(problems):
        w, l1 = u[:, j] - v[:, j], (u[:, j] + v[:, j]).sum()
        margins = data.y * (data.x @ w + b[j]) - problem.eps * l1
        total = total + problem.loss(margins).mean() + 0.5 * problem.l2 * (
            u[:, j].square().sum() + v[:, j].square().sum())
    expected = torch.autograd.grad(total, (u, v, b))
    written = theory.objective_gradients(data, problems, u.detach(), v.detach(), b.detach())
    for mine, reference in zip(written, expected, strict=True):
        assert torch.allclose(mine, reference, atol=1e-5)


def test_batched_training_follows_each_problem_alone() -> None:
    dist = small_dist(d=30)
    data = draw(dist, 400)
    problems = [theory.Problem(theory.hinge_loss, 0.6, 1e-3),
                theory.Problem(theory.logistic_loss, 0.0, 0.0)]
    together = theory.train_linear(data, problems, epochs=40, lr=0.05)
    for problem, clf in zip(problems, together, strict=True):
        (alone,) = theory.train_linear(data, [problem], epochs=40, lr=0.05)
        assert torch.allclose(clf.w, alone.w, atol=1e-5)
        assert clf.b == pytest.approx(alone.b, abs=1e-5)


def test_training_stops_when_asked() -> None:
    data = draw(small_dist(), 100)
    calls = []

    def stop_on_third() -> bool:
        calls.append(1)
        return len(calls) == 3

    with pytest.raises(Cancelled):
        theory.train_linear(data, [theory.Problem(theory.hinge_loss, 0.0, 0.0)], epochs=10, lr=0.05,
                            should_stop=stop_on_third)
    assert len(calls) == 3


# --------------------------------------------------------------------------- the kind, end to end


@dataclass(frozen=True)
class E1Run:
    spec: TheorySpec
    reporter: MemoryReporter

    @property
    def dist(self) -> TheoryDistribution:
        return self.spec.distribution

    @property
    def two_eta(self) -> float:
        return self.spec.eps[0]

    def row(self, model: str, train_eps: float, eval_eps: float,
            variant: str = "") -> EvaluationRecord:
        found = [r for r in self.reporter.evaluations.values()
                 if (r.model, r.variant) == (model, variant)
                 and math.isclose(r.train_eps, train_eps) and math.isclose(r.eval_eps, eval_eps)]
        assert len(found) == 1, (model, train_eps, eval_eps, variant)
        return found[0]

    def metric(self, name: str, **tags: Any) -> float:
        found = [m.value for m in self.reporter.metrics.values()
                 if m.name == name and all(math.isclose(m.tags[k], v) if isinstance(v, float)
                                           else m.tags[k] == v for k, v in tags.items())]
        assert len(found) == 1, (name, tags)
        return found[0]


SETTINGS = [
    pytest.param((0.7, 1000, 4 / math.sqrt(1000)), id="paper-p0.7-d1000"),
    pytest.param((0.9, 200, 0.3), id="p0.9-d200-eta-above-4/sqrt(d)"),
    pytest.param((0.8, 500, 4 / math.sqrt(500)), id="p0.8-d500"),
]


@pytest.fixture(scope="module", params=SETTINGS)
def e1(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> E1Run:
    p, d, eta = request.param
    spec = TheorySpec(
        name="e1-test", kind="theory", distribution={"p": p, "d": d, "eta": eta},
        n_train=2000, n_test=N_TEST, eps=[2 * eta, 0.9], epochs=150, seed=1,
    )
    reporter = MemoryReporter()
    ctx = RunContext(run_id="test", run_dir=tmp_path_factory.mktemp("e1"), device=CPU,
                     reporter=reporter, data_dir=Path("unused"))
    run(spec, ctx)
    return E1Run(spec, reporter)


def test_f_avg_matches_its_closed_forms(e1: E1Run) -> None:
    for eval_eps in (0.0, e1.two_eta, 0.9):
        row = e1.row("averaging", 0.0, eval_eps)
        closed = theory.averaging_closed_form(e1.dist, eval_eps)
        assert row.details["closed_form"] == pytest.approx(closed)
        assert abs(row.accuracy - closed) <= 4 * standard_error(closed)
    assert e1.metric("closed_form_std_accuracy", model="averaging") > 0.99
    assert e1.metric("closed_form_adv_accuracy", model="averaging", eval_eps=e1.two_eta) < 0.01


def test_standard_svm_is_accurate_and_not_robust(e1: E1Run) -> None:
    """Theorem 2.2, first half: > 99% standard, < 1% adversarial at eps = 2 eta."""
    assert e1.row("svm", 0.0, 0.0).accuracy > 0.99
    assert e1.row("svm", 0.0, e1.two_eta).accuracy < 0.01
    assert e1.metric("weight_rest_fraction", model="svm", train_eps=0.0) > 0.9


def test_adversarial_svm_uses_only_the_robust_feature(e1: E1Run) -> None:
    """Theorem 2.2, second half: no weight on x2.., accuracy p both ways, also at eps 0.9 < 1."""
    p = e1.dist.p
    assert e1.metric("weight_x1", model="svm", train_eps=e1.two_eta) > 0.999
    assert e1.metric("weight_rest_l1", model="svm", train_eps=e1.two_eta) < 1e-3 * e1.metric(
        "weight_x1", model="svm", train_eps=e1.two_eta)
    for eval_eps in (0.0, e1.two_eta, 0.9):
        row = e1.row("svm", e1.two_eta, eval_eps)
        assert abs(row.accuracy - p) <= 4 * standard_error(p), eval_eps
        assert row.details["population_accuracy"] == pytest.approx(p, abs=1e-6)


def test_adversarial_logistic_also_drops_the_weak_features(e1: E1Run) -> None:
    assert e1.metric("weight_rest_nonzero", model="logistic", train_eps=e1.two_eta) == 0
    for eval_eps in (0.0, e1.two_eta):
        assert abs(e1.row("logistic", e1.two_eta, eval_eps).accuracy - e1.dist.p) \
            <= 4 * standard_error(e1.dist.p)


def test_training_beyond_2p_minus_1_gives_the_constant_classifier(e1: E1Run) -> None:
    """REPRODUCTION.md fact 1: the x1 weight survives adversarial training only for eps < 2p-1."""
    assert 2 * e1.dist.p - 1 < 0.9
    for model in ("svm", "logistic"):
        assert e1.metric("weight_x1", model=model, train_eps=0.9) == 0
        assert e1.metric("weight_rest_l1", model=model, train_eps=0.9) == 0
        for eval_eps in (0.0, 0.9):
            assert abs(e1.row(model, 0.9, eval_eps).accuracy - 0.5) <= 4 * standard_error(0.5)


def test_every_classifier_obeys_theorem_2_1(e1: E1Run) -> None:
    p = e1.dist.p
    checked = 0
    for row in e1.reporter.evaluations.values():
        if row.variant or not theory.theorem_2_1_applies(e1.dist, row.eval_eps):
            continue
        standard = e1.row(row.model, row.train_eps, 0.0)
        # exactly on the population; on the sample up to the sampling error of adv - p/(1-p) std
        population_bound = theory.theorem_2_1_bound(p, standard.details["population_accuracy"])
        assert row.details["population_accuracy"] <= population_bound + 1e-9
        tolerance = 4 * standard_error(p) / (1 - p)
        assert row.accuracy <= row.details["theorem_2_1_bound"] + tolerance
        assert row.details["theorem_2_1_bound"] == e1.metric(
            "theorem_2_1_bound", model=row.model, train_eps=row.train_eps, eval_eps=row.eval_eps)
        checked += 1
    assert checked == 2 * (1 + 2 * 3)  # at 2 eta and 0.9: f_avg, and svm, logistic x 3 trainings


def test_test_accuracies_agree_with_the_population(e1: E1Run) -> None:
    """The exact attack on the sample and the exact population formula tell the same story."""
    for row in e1.reporter.evaluations.values():
        if not row.variant:
            population = row.details["population_accuracy"]
            assert abs(row.accuracy - population) <= 4 * standard_error(population) + 1e-9, row


def test_adversarial_examples_transfer(e1: E1Run) -> None:
    """End of Sec. 2.2: examples against one standard model fool one trained on another sample."""
    for source in ("averaging", "svm", "logistic"):
        for target in ("averaging", "svm", "logistic"):
            if source == target == "averaging":
                continue
            row = e1.row(target, 0.0, e1.two_eta, variant=f"transfer:{source}->{target}")
            assert row.details["target_standard_accuracy"] > 0.99
            assert row.accuracy < 0.05 < row.details["target_standard_accuracy"] - 0.9


def test_figure_and_progress(e1: E1Run) -> None:
    artifact = e1.reporter.artifacts[FIGURE_NAME]
    assert artifact.kind == "figure" and artifact.media_type == "image/png"
    assert artifact.data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(artifact.data)) as image:
        image.verify()
    with Image.open(io.BytesIO(artifact.data)) as image:
        assert image.size[0] >= 400 and image.size[1] >= 300
    done, total, stage = e1.reporter.last_progress  # type: ignore[misc]
    assert done == total and stage == "figure"
    assert len(e1.reporter.facts["data_hash"]) == 64


def test_a_cancelled_run_raises() -> None:
    spec = TheorySpec(name="e1-cancel", kind="theory", distribution={"p": 0.7, "d": 20, "eta": 0.9},
                      n_train=50, n_test=50, eps=[1.8], epochs=5)
    reporter = MemoryReporter()
    reporter.stop = True
    ctx = RunContext(run_id="test", run_dir=Path("unused"), device=CPU, reporter=reporter,
                     data_dir=Path("unused"))
    with pytest.raises(Cancelled):
        run(spec, ctx)
    assert not reporter.evaluations
