"""The ``train`` experiment kind: train one model (standard, PGD, TRADES or fgsm_rs), then evaluate it.

One run of a ``TrainSpec`` is one point of Figure 1 (E2): its evaluation records carry
``train_norm``/``train_eps``/``train_method`` from the adversary (``train_eps`` 0 is standard
training), so
"standard accuracy against eps_train" is a single query over the records of a sweep.

Re-executing the run (a re-delivered Celery task, or ``robustlab run`` after a crash) resumes
from the checkpoints in ``ctx.run_dir / "checkpoints"``: finished epochs are not trained again,
and every record has a stable key, so nothing is reported twice.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from torch.utils.data import Dataset, Subset

from contract.datasets import DATASETS, DatasetInfo
from contract.records import CheckpointRecord, MetricRecord, Reporter
from contract.specs.hashing import stable_dump
from contract.specs.kinds import TrainSpec
from workers.science.context import RunContext
from workers.science.datasets import data_provenance, dataset_info, load_dataset
from workers.science.evaluate import evaluate
from workers.science.example_identity import example_indices, identify
from workers.science.experiments.holdout import best_model, hold_out
from workers.science.models import build_model
from workers.science.training import EpochMetrics, TrainHooks, seed_everything, train
from workers.science.training.selection import Selection


def run(spec: TrainSpec, ctx: RunContext) -> None:
    """Train ``spec.model`` on ``spec.dataset``, checkpointing, then evaluate and report."""
    reporter = ctx.reporter
    train_data = load_dataset(spec.dataset, ctx.data_dir, train=True)  # downloads if asked to
    train_data, validation = hold_out(spec, ctx.data_dir, train_data, reporter)
    eval_data = _evaluation_data(spec, ctx.data_dir)
    info = dataset_info(spec.dataset, ctx.data_dir)
    data_facts = data_provenance(spec.dataset, ctx.data_dir,
                                 train_examples=len(cast(Sized, train_data)),
                                 evaluated_examples=len(cast(Sized, eval_data)))
    reporter.provenance(**data_facts)
    seed_everything(spec.seed)
    model = build_model(spec.model.arch, info.num_classes, dataset=info, kwargs=spec.model.kwargs)
    reports = _Reports(spec, reporter, info.num_classes)
    hooks = TrainHooks(on_batch=reports.training_batch, on_epoch=reports.epoch,
                       on_checkpoint=reports.intermediate_checkpoint, on_resume=reports.resumed,
                       should_stop=reporter.should_stop)
    outcome = train(model, train_data, spec.training, spec.adversary, device=ctx.device,
                    checkpoint_dir=ctx.run_dir / "checkpoints", seed=spec.seed,
                    checkpoint_every=spec.checkpoint_every, hooks=hooks, meta=checkpoint_meta(spec, info),
                    world=ctx.world, validation=validation)
    reports.checkpoint(outcome.final_checkpoint, spec.training.epochs, final=True)
    if outcome.best is not None:
        reports.best_checkpoint(outcome.best)
    reporter.provenance(selected=outcome.best.facts() if outcome.best is not None else
                        {"checkpoint": "final", "epoch": spec.training.epochs, "metric": None,
                         "value": None})

    for name in spec.evaluation.resolved_checkpoints(spec.training.select):
        evaluated = outcome.evaluated_model if name == "final" else best_model(outcome, ctx)
        result = evaluate(evaluated.eval(), eval_data, spec.evaluation.attacks,
                          device=ctx.device, batch_size=spec.evaluation.batch_size,
                          checks=spec.evaluation.checks, should_stop=reporter.should_stop,
                          on_batch=reports.evaluation_batch, seed=spec.seed, world=ctx.world)
        records = result.to_records(spec.model.arch, spec.dataset.name, spec.evaluation.split,
                                    spec.adversary.norm, spec.adversary.eps)
        for record in identify(records, data_facts["data_hash"], example_indices(eval_data)):
            reporter.evaluation(replace(record, train_method=spec.adversary.method,
                                        checkpoint=name))


def checkpoint_meta(spec: TrainSpec, info: DatasetInfo | None = None) -> dict[str, Any]:
    """What every checkpoint of this run says about its model (``checkpoints.load_model``).

    The input shape and normalisation are kept too: a folder or plugin dataset has no catalog
    entry to rebuild the model from. ``info`` defaults to the catalog's (built-in datasets).
    """
    info = info if info is not None else DATASETS[spec.dataset.name]
    stats = info.normalization
    return {
        "arch": spec.model.arch,
        "model_kwargs": dict(spec.model.kwargs),
        "dataset": spec.dataset.name,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "normalization": None if stats is None else [list(stats.mean), list(stats.std)],
        "train_norm": spec.adversary.norm,
        "train_eps": spec.adversary.eps,
        "train_method": spec.adversary.method,
        "seed": spec.seed,
        # stable_dump: the fields added later, at their defaults, are left out, so a run
        # interrupted before they existed still resumes (its stored meta must match this one)
        "spec": stable_dump(spec),
    }


def _evaluation_data(spec: TrainSpec, data_dir: Path) -> Dataset:
    """The split ``spec.evaluation`` names, never augmented, cut to its ``subset``."""
    cfg = spec.dataset.model_copy(update={"augment": False})
    data = load_dataset(cfg, data_dir, train=spec.evaluation.split == "train")
    subset = spec.evaluation.subset
    if subset is None:
        return data
    return Subset(data, range(min(subset, len(cast(Sized, data)))))


class _Reports:
    """Turns training callbacks into records and progress for one run's reporter.

    Progress counts the epochs plus one unit for the evaluation.
    """

    def __init__(self, spec: TrainSpec, reporter: Reporter, num_classes: int) -> None:
        self.spec = spec
        self.num_classes = num_classes
        self.reporter = reporter
        self.epochs = spec.training.epochs

    def training_batch(self, epoch: int, batches_done: int, batches: int) -> None:
        self.reporter.progress(epoch + batches_done / batches, self.epochs + 1,
                               f"epoch {epoch + 1}/{self.epochs}")

    def evaluation_batch(self, batches_done: int, batches: int) -> None:
        self.reporter.progress(self.epochs + batches_done / batches, self.epochs + 1, "evaluation")

    def epoch(self, metrics: EpochMetrics) -> None:
        values = {
            "train_loss": metrics.loss,
            "train_accuracy": metrics.accuracy,
            "train_adv_accuracy": metrics.adv_accuracy,
            "train_check_accuracy": metrics.check_accuracy,
            "lr": metrics.lr,
            "eps": metrics.eps,
            "val_accuracy": metrics.val_accuracy,
            "val_robust_accuracy": metrics.val_robust_accuracy,
        }
        for name, value in values.items():
            if value is not None:
                self.reporter.metric(MetricRecord(name=name, value=value, step=metrics.epoch))
        for step, rate in metrics.lr_points:
            self.reporter.metric(MetricRecord(name="lr_per_iteration", value=rate,
                                              step=int(step)))

    def intermediate_checkpoint(self, path: Path, epoch: int, final: bool) -> None:
        """Every checkpoint but the last, which ``run`` reports once training returns.

        That way a run resumed after its last epoch (the previous attempt died between writing
        the file and reporting it) still reports the final checkpoint.
        """
        if not final:
            self.checkpoint(path, epoch, final=False)

    def resumed(self, path: Path, epoch: int, history: list[EpochMetrics]) -> None:
        """Report again what the attempt that wrote ``path`` may have died before reporting.

        Its epochs' metrics and the checkpoint itself: the store upserts them, so records that
        did land stay single. The final checkpoint is left to ``run``, as in training.
        """
        for metrics in history:
            self.epoch(metrics)
        self.intermediate_checkpoint(path, epoch, epoch == self.epochs)

    def best_checkpoint(self, best: Selection) -> None:
        """The weights ``training.select`` chose, marked best, with their epoch and metric."""
        spec = self.spec
        self.reporter.checkpoint(CheckpointRecord(
            path=best.checkpoint.resolve(), epoch=best.epoch, arch=spec.model.arch,
            dataset=spec.dataset.name, train_norm=spec.adversary.norm,
            train_eps=spec.adversary.eps, final=False,
            metadata={"seed": spec.seed, "num_classes": self.num_classes, "best": True,
                      "select": spec.training.select, "metric": best.metric,
                      "value": best.value},
        ))

    def checkpoint(self, path: Path, epoch: int, *, final: bool) -> None:
        spec = self.spec
        self.reporter.checkpoint(CheckpointRecord(
            path=path.resolve(), epoch=epoch, arch=spec.model.arch, dataset=spec.dataset.name,
            train_norm=spec.adversary.norm, train_eps=spec.adversary.eps, final=final,
            metadata={"seed": spec.seed, "num_classes": self.num_classes},
        ))
