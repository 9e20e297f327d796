"""Spec kind ``linear_features`` (E3): Table 4 and Figure 2 of the paper on binary MNIST.

Two linear classifiers are trained by full-batch gradient descent, one normally and one against
the exact l_inf worst case at ``spec.eps``; both are evaluated exactly on both splits. Then
the pixels' correlation with the label is set against the weights (Fig. 2a, 2b), and standard
models restricted to the ``topk`` most correlated pixels are trained and evaluated (Fig. 2c).

Rows (``EvaluationRecord``, model "linear", dataset "binary_mnist"):
- Table 4: per model x split (train, test) x {clean (attack "none", eval_eps 0), exact worst
  case (attack "exact_linear", eval_norm "linf", eval_eps = spec.eps)}; standard training has
  train_norm None and train_eps 0, adversarial training "linf" and spec.eps.
- Fig. 2(c): ``variant="topk=K"``, test split, clean and exact, train_eps 0.
Metrics (tag ``train_eps``): ``weight_l1``, ``train_loss`` per epoch (step = epochs done),
``low_correlation_weight_fraction`` and ``low_correlation_peak_ratio`` (also tagged
``threshold``; see ``WeightProfile``), and untagged ``low_correlation_pixels``.
Artifacts: ``e3_weights_standard.png`` and ``e3_weights_adversarial.png`` (kind "weights",
Fig. 2a), ``e3_correlation_vs_weight.png`` (Fig. 2b) and ``e3_topk_accuracy.png`` (Fig. 2c),
kind "figure".

The run draws no random numbers and takes seconds, so it keeps no checkpoints: re-executing it
recomputes the same records, which the store upserts by key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from contract.records import ArtifactRecord, EvaluationRecord, MetricRecord, Reporter
from contract.specs.kinds import LinearFeaturesSpec
from workers.science.context import RunContext
from workers.science.datasets import data_hash, dataset_root, load_dataset
from workers.science.evaluate import pack_correct
from workers.science.example_identity import WholeSplitIdentity
from workers.science.linear_features import (
    EpochHook,
    LabelledData,
    LinearWeights,
    TopKPoint,
    accuracy,
    correct_under_attack,
    correlation_figure,
    labelled_data,
    pixel_label_correlation,
    top_pixels,
    topk_figure,
    train_linear,
    weight_image,
    weight_profile,
)

MODEL = "linear"
DATASET = "binary_mnist"
NORM = "linf"
CORRELATION_FIGURE = "e3_correlation_vs_weight.png"
TOPK_FIGURE = "e3_topk_accuracy.png"


@dataclass(frozen=True)
class Trained:
    """One of Table 4's two classifiers: 'standard' (train_eps 0) or 'adversarial'."""

    label: str
    train_eps: float
    weights: LinearWeights

    @property
    def train_norm(self) -> str | None:
        return NORM if self.train_eps > 0 else None


class _Progress:
    """Counts training epochs (the whole cost of the run) for ``reporter.progress``."""

    def __init__(self, reporter: Reporter, total: int) -> None:
        self.reporter = reporter
        self.total = total
        self.done = 0

    def epoch(self, stage: str) -> None:
        self.done += 1
        self.reporter.progress(self.done, self.total, stage)

    def hook(self, stage: str) -> EpochHook:
        """An ``on_epoch`` hook for ``train_linear`` that only counts."""
        return lambda _epoch, _loss: self.epoch(stage)


def run(spec: LinearFeaturesSpec, ctx: RunContext) -> None:
    """Run E3 as ``spec`` says and report everything through ``ctx.reporter``."""
    digest = data_hash(spec.dataset, ctx.data_dir)
    reporter = WholeSplitIdentity(ctx.reporter, digest)  # every record scores a whole split
    reporter.provenance(data_hash=digest,
                        data_root=str(dataset_root(spec.dataset, ctx.data_dir)))
    train = labelled_data(load_dataset(spec.dataset, ctx.data_dir, train=True), ctx.device)
    test = labelled_data(load_dataset(spec.dataset, ctx.data_dir, train=False), ctx.device)
    progress = _Progress(reporter, total=spec.epochs * (2 + len(spec.topk)))

    models = [train_table4_model(label, eps, spec, train, reporter, progress)
              for label, eps in (("standard", 0.0), ("adversarial", spec.eps))]
    correlation = pixel_label_correlation(train)
    reporter.metric(MetricRecord(
        name="low_correlation_pixels",
        value=float((correlation.abs() < spec.correlation_threshold).sum()),
        tags={"threshold": spec.correlation_threshold},
    ))
    for model in models:
        report_table4(model, spec.eps, {"train": train, "test": test}, reporter)
        report_weights(model, correlation, spec.correlation_threshold, reporter)
    reporter.artifact(ArtifactRecord(
        kind="figure", name=CORRELATION_FIGURE,
        data=correlation_figure(correlation, [(_title(m), m.weights) for m in models],
                                spec.correlation_threshold),
        metadata={"figure": "2b", "threshold": spec.correlation_threshold},
    ))
    if spec.topk:
        points = [train_topk_model(k, correlation, spec, train, test, reporter, progress)
                  for k in sorted(spec.topk)]
        adversarial = models[1].weights
        reference = (accuracy(correct_under_attack(adversarial, test, 0.0)),
                     accuracy(correct_under_attack(adversarial, test, spec.eps)))
        reporter.artifact(ArtifactRecord(
            kind="figure", name=TOPK_FIGURE, data=topk_figure(points, spec.eps, reference),
            metadata={"figure": "2c", "topk": [p.k for p in points], "eps": spec.eps},
        ))


# --------------------------------------------------------------------------- Table 4


def train_table4_model(label: str, train_eps: float, spec: LinearFeaturesSpec, train: LabelledData,
                       reporter: Reporter, progress: _Progress) -> Trained:
    """Train one of Table 4's models on every pixel, reporting its loss after every epoch."""
    def on_epoch(epoch: int, loss: float) -> None:
        reporter.metric(MetricRecord(name="train_loss", value=loss, step=epoch,
                                     tags={"train_eps": train_eps}))
        progress.epoch(f"{label} training")

    weights = train_linear(train, epochs=spec.epochs, lr=spec.lr, eps=train_eps,
                           should_stop=reporter.should_stop, on_epoch=on_epoch)
    return Trained(label, train_eps, weights)


def report_table4(model: Trained, eps: float, splits: dict[str, LabelledData],
                  reporter: Reporter) -> None:
    """Standard and exact adversarial accuracy on each split: one row of Table 4."""
    for split, data in splits.items():
        for eval_eps in (0.0, eps):
            bits = correct_under_attack(model.weights, data, eval_eps)
            reporter.evaluation(_evaluation(
                bits, split=split, train_norm=model.train_norm, train_eps=model.train_eps,
                eval_eps=eval_eps, details={"training": model.label, "weight_l1": model.weights.l1},
            ))


def report_weights(model: Trained, correlation: torch.Tensor, threshold: float,
                   reporter: Reporter) -> None:
    """||w||_1, how little weight sits on weakly correlated pixels (Fig. 2b), and Fig. 2(a)."""
    tags: dict[str, Any] = {"train_eps": model.train_eps}
    reporter.metric(MetricRecord(name="weight_l1", value=model.weights.l1, tags=tags))
    profile = weight_profile(model.weights, correlation, threshold)
    low_tags = {**tags, "threshold": threshold}
    reporter.metric(MetricRecord(name="low_correlation_weight_fraction",
                                 value=profile.low_mass_fraction, tags=low_tags))
    reporter.metric(MetricRecord(name="low_correlation_peak_ratio",
                                 value=profile.low_peak_ratio, tags=low_tags))
    reporter.artifact(ArtifactRecord(
        kind="weights", name=f"e3_weights_{model.label}.png",
        data=weight_image(model.weights, _title(model)),
        metadata={"figure": "2a", "model": MODEL, "label": model.label,
                  "train_eps": model.train_eps, "train_norm": model.train_norm,
                  "weight_l1": model.weights.l1},
    ))


def _title(model: Trained) -> str:
    if model.train_eps == 0:
        return "standard training"
    return f"adversarial training (l_inf, ε = {model.train_eps:g})"


# --------------------------------------------------------------------------- Figure 2(c)


def train_topk_model(k: int, correlation: torch.Tensor, spec: LinearFeaturesSpec,
                     train: LabelledData, test: LabelledData, reporter: Reporter,
                     progress: _Progress) -> TopKPoint:
    """Standard training on the ``k`` most label-correlated pixels only, evaluated on test."""
    mask = top_pixels(correlation, k)
    weights = train_linear(train, epochs=spec.epochs, lr=spec.lr, mask=mask,
                           should_stop=reporter.should_stop,
                           on_epoch=progress.hook(f"top-{k} training"))
    details = {"k": k, "weight_l1": weights.l1,
               "min_abs_correlation": float(correlation.abs()[mask].min())}
    accuracies = []
    for eval_eps in (0.0, spec.eps):
        bits = correct_under_attack(weights, test, eval_eps)
        accuracies.append(accuracy(bits))
        reporter.evaluation(_evaluation(bits, split="test", train_norm=None, train_eps=0.0,
                                        eval_eps=eval_eps, details=details, variant=f"topk={k}"))
    return TopKPoint(k, standard=accuracies[0], adversarial=accuracies[1])


# --------------------------------------------------------------------------- records


def _evaluation(bits: torch.Tensor, *, split: str, train_norm: str | None, train_eps: float,
                eval_eps: float, details: dict[str, Any], variant: str = "") -> EvaluationRecord:
    return EvaluationRecord(
        model=MODEL,
        dataset=DATASET,
        accuracy=accuracy(bits),
        n=bits.numel(),
        split=split,
        train_norm=train_norm,
        train_eps=train_eps,
        eval_norm=NORM if eval_eps > 0 else None,
        eval_eps=eval_eps,
        attack="exact_linear" if eval_eps > 0 else "none",
        per_example=pack_correct(bits),
        details=details,
        variant=variant,
    )
