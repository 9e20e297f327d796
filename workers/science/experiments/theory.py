"""Spec kind ``theory`` (E1): Sec. 2.1-2.2 of the paper measured on samples of D(p, d, eta).

Trains every requested linear model normally and against the exact l_inf worst case at each
radius, evaluates each at every radius, and reports what the paper claims about them: the test
accuracies (with the population accuracies and closed forms beside them), Theorem 2.1's bound,
how much weight each model puts on the robust feature, transfer of adversarial examples between
models trained on independent samples, and the trade-off figure.

Rows: ``EvaluationRecord`` per model x train_eps x eval_eps (``attack`` "none" at eval_eps 0,
"exact_linear" otherwise; f_avg, which is not trained, only at train_eps 0), plus rows with
``variant="transfer:<source>-><target>"``. Metrics (tags ``model``, ``train_eps`` and, where it
matters, ``eval_eps``): ``closed_form_std_accuracy``, ``closed_form_adv_accuracy`` (f_avg),
``population_accuracy``, ``theorem_2_1_bound`` (only at eval_eps >= 2 eta, where it applies),
``weight_x1``, ``weight_rest_l1``, ``weight_rest_fraction``, ``weight_rest_nonzero``,
``train_objective``. Artifact: ``e1_tradeoff.png``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from contract.records import ArtifactRecord, Cancelled, EvaluationRecord, MetricRecord, Reporter
from contract.specs.kinds import TheorySpec
from workers.science.context import RunContext
from workers.science.example_identity import WholeSplitIdentity
from workers.science.theory import (
    THEORY_MODELS,
    FitSettings,
    LinearClassifier,
    Sample,
    TradeoffPoint,
    accuracy,
    averaging_closed_form,
    correct,
    correct_at,
    fit,
    objective_value,
    population_accuracy,
    sample,
    sample_hash,
    theorem_2_1_applies,
    theorem_2_1_bound,
    tradeoff_figure,
    training_problem,
    worst_case_inputs,
)

DATASET = "theory"
FIGURE_NAME = "e1_tradeoff.png"


@dataclass(frozen=True)
class Trained:
    """One classifier of the run: which model, against which training radius, and its weights."""

    model: str
    train_eps: float
    classifier: LinearClassifier


@dataclass(frozen=True)
class Samples:
    """The run's data, all from D(p, d, eta) and one seeded generator."""

    train: Sample
    test: Sample
    independent: Sample | None
    """A second training sample, drawn independently, for the transfer targets."""


class _Progress:
    """Counts finished training epochs and reporting stages for ``reporter.progress``."""

    def __init__(self, reporter: Reporter, total: int) -> None:
        self.reporter = reporter
        self.total = total
        self.done = 0

    def step(self, stage: str) -> None:
        self.done += 1
        self.reporter.progress(self.done, self.total, stage)

    def epochs(self, stage: str) -> Callable[[int], None]:
        """An ``on_epoch`` hook for ``fit``."""
        return lambda _epoch: self.step(stage)


def run(spec: TheorySpec, ctx: RunContext) -> None:
    """Run E1 as ``spec`` says and report everything through ``ctx.reporter``."""
    radii = sorted({eps for eps in spec.eps if eps > 0})
    any_trainable = any(THEORY_MODELS[m].trainable for m in spec.models)
    samples = draw_samples(spec, ctx.device, need_independent=any_trainable)
    digest = samples_hash(samples)
    ctx.reporter.provenance(data_hash=digest)
    ctx = replace(ctx, reporter=WholeSplitIdentity(ctx.reporter, digest))  # whole test sample

    progress = _Progress(ctx.reporter, total=2 * spec.epochs * any_trainable + 2)
    settings = FitSettings(epochs=spec.epochs, lr=spec.lr, svm_c=spec.svm_c)
    requests = [(name, eps) for name in spec.models
                for eps in ([0.0, *radii] if THEORY_MODELS[name].trainable else [0.0])]
    trained = train_all(requests, spec, samples.train, settings, ctx.reporter,
                        progress.epochs("training"))

    points: list[TradeoffPoint] = []
    for item in trained:
        _check_stop(ctx.reporter)
        report_weights(item, spec, samples.train, settings, ctx.reporter)
        points += report_evaluations(item, spec, samples.test, radii, ctx.reporter)
    progress.step("evaluated")

    if samples.independent is not None:
        # Transfer (end of Sec. 2.2): standard copies trained on an independent sample.
        targets = train_all([(name, 0.0) for name in spec.models], spec, samples.independent,
                            settings, ctx.reporter, progress.epochs("training transfer targets"))
        sources = [t for t in trained if t.train_eps == 0]
        report_transfer(sources, targets, samples.test, radii, ctx.reporter)
    figure = tradeoff_figure(points, spec.distribution)
    ctx.reporter.artifact(ArtifactRecord(
        kind="figure", name=FIGURE_NAME, data=figure,
        metadata={"p": spec.distribution.p, "d": spec.distribution.d,
                  "eta": spec.distribution.eta, "points": len(points)},
    ))
    progress.step("figure")


# --------------------------------------------------------------------------- data


def draw_samples(spec: TheorySpec, device: torch.device, *, need_independent: bool) -> Samples:
    """Train, test and (for transfer) an independent training sample, in that order from one
    generator seeded with ``spec.seed``: the first two do not depend on whether the third is
    drawn."""
    generator = torch.Generator().manual_seed(spec.seed)
    train = sample(spec.distribution, spec.n_train, generator, device)
    test = sample(spec.distribution, spec.n_test, generator, device)
    independent = (sample(spec.distribution, spec.n_train, generator, device)
                   if need_independent else None)
    return Samples(train=train, test=test, independent=independent)


def samples_hash(samples: Samples) -> str:
    """One SHA-256 over every sample of the run (provenance: ``runs.data_hash``)."""
    parts = (samples.train, samples.test, samples.independent)
    hashes = "".join(sample_hash(data) for data in parts if data is not None)
    return hashlib.sha256(hashes.encode()).hexdigest()


# --------------------------------------------------------------------------- training


def train_all(requests: Sequence[tuple[str, float]], spec: TheorySpec, train: Sample,
              settings: FitSettings, reporter: Reporter,
              on_epoch: Callable[[int], None]) -> list[Trained]:
    """The classifier of each (model name, train eps), all trained together on ``train``."""
    classifiers = fit([(THEORY_MODELS[name], eps) for name, eps in requests], train,
                      spec.distribution, settings, should_stop=reporter.should_stop,
                      on_epoch=on_epoch)
    return [Trained(name, eps, clf) for (name, eps), clf in zip(requests, classifiers, strict=True)]


def _check_stop(reporter: Reporter) -> None:
    if reporter.should_stop():
        raise Cancelled("theory run cancelled")


# --------------------------------------------------------------------------- reporting


def report_weights(item: Trained, spec: TheorySpec, train: Sample, settings: FitSettings,
                   reporter: Reporter) -> None:
    """Reliance on the robust feature against the weak ones (unit-norm w), and sparsity."""
    tags = {"model": item.model, "train_eps": item.train_eps}
    clf = item.classifier
    rest = clf.w[1:]
    values = {
        "weight_x1": clf.weight_x1,
        "weight_rest_l1": clf.weight_rest_l1,
        "weight_rest_nonzero": float((rest != 0).sum()),
    }
    total_l1 = clf.weight_x1 + clf.weight_rest_l1
    if total_l1 > 0:
        values["weight_rest_fraction"] = clf.weight_rest_l1 / total_l1
    model = THEORY_MODELS[item.model]
    if model.trainable:
        problem = training_problem(model, item.train_eps, len(train), settings)
        values["train_objective"] = objective_value(clf, train, problem)
    for name, value in values.items():
        reporter.metric(MetricRecord(name=name, value=value, tags=tags))


def report_evaluations(item: Trained, spec: TheorySpec, test: Sample, radii: list[float],
                       reporter: Reporter) -> list[TradeoffPoint]:
    """Clean and exact-attack accuracy at every radius, with closed forms and the bound.

    Returns the figure's points: this classifier at every radius where Theorem 2.1 applies.
    """
    dist = spec.distribution
    clf = item.classifier
    all_radii = [0.0, *radii]
    all_hits = correct_at(clf, test, all_radii)  # (R, n)
    standard = float(all_hits[0].float().mean())
    points = []
    for eval_eps, hits in zip(all_radii, all_hits, strict=True):
        acc = float(hits.float().mean())
        population = population_accuracy(clf, dist, eval_eps)
        applies = eval_eps > 0 and theorem_2_1_applies(dist, eval_eps)
        details: dict[str, Any] = {
            "population_accuracy": population,
            "standard_accuracy": standard,
            "theorem_2_1_applies": applies,
        }
        tags = {"model": item.model, "train_eps": item.train_eps, "eval_eps": eval_eps}
        reporter.metric(MetricRecord(name="population_accuracy", value=population, tags=tags))
        if item.model == "averaging":
            closed = averaging_closed_form(dist, eval_eps)
            details["closed_form"] = closed
            name = "closed_form_std_accuracy" if eval_eps == 0 else "closed_form_adv_accuracy"
            reporter.metric(MetricRecord(name=name, value=closed, tags=tags))
        if applies:
            bound = theorem_2_1_bound(dist.p, standard)
            details["theorem_2_1_bound"] = bound
            reporter.metric(MetricRecord(name="theorem_2_1_bound", value=bound, tags=tags))
            points.append(TradeoffPoint(item.model, item.train_eps, eval_eps, standard, acc))
        reporter.evaluation(_evaluation(item.model, item.train_eps, eval_eps, acc, hits,
                                        details=details))
    return points


def report_transfer(sources: list[Trained], targets: list[Trained], test: Sample,
                    radii: list[float], reporter: Reporter) -> None:
    """Exact worst-case examples against each standard source, shown to each target.

    Targets were trained on an independent sample (end of Sec. 2.2). f_avg -> f_avg is left
    out: both are the same fixed classifier, so it would only repeat the white-box row.
    """
    for eval_eps in radii:
        for source in sources:
            adversarial = Sample(x=worst_case_inputs(source.classifier, test, eval_eps),
                                 y=test.y)
            source_accuracy = accuracy(source.classifier, adversarial)
            for target in targets:
                if source.model == target.model == "averaging":
                    continue
                hits = correct(target.classifier, adversarial)
                details = {
                    "source": source.model,
                    "target": target.model,
                    "source_accuracy": source_accuracy,
                    "target_standard_accuracy": accuracy(target.classifier, test),
                    "target_white_box_accuracy": accuracy(target.classifier, test, eval_eps),
                }
                reporter.evaluation(_evaluation(
                    target.model, 0.0, eval_eps, float(hits.float().mean()), hits,
                    details=details, variant=f"transfer:{source.model}->{target.model}",
                ))


def _evaluation(model: str, train_eps: float, eval_eps: float, acc: float, hits: torch.Tensor,
                *, details: dict[str, Any], variant: str = "") -> EvaluationRecord:
    return EvaluationRecord(
        model=model,
        dataset=DATASET,
        accuracy=acc,
        n=hits.numel(),
        split="test",
        train_norm="linf" if train_eps > 0 else None,
        train_eps=train_eps,
        eval_norm="linf" if eval_eps > 0 else None,
        eval_eps=eval_eps,
        attack="exact_linear" if eval_eps > 0 else "none",
        per_example=np.packbits(hits.cpu().numpy()).tobytes(),
        details=details,
        variant=variant,
    )
