"""The ``train`` experiment kind: train one model (standard or PGD adversarial), then evaluate it.

One run of a ``TrainSpec`` is one point of Figure 1 (E2): its evaluation records carry
``train_norm``/``train_eps`` from the adversary (``train_eps`` 0 is standard training), so
"standard accuracy against eps_train" is a single query over the records of a sweep.

Re-executing the run (a re-delivered Celery task, or ``robustlab run`` after a crash) resumes
from the checkpoints in ``ctx.run_dir / "checkpoints"``: finished epochs are not trained again,
and every record has a stable key, so nothing is reported twice.
"""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import Any, cast

from torch.utils.data import Dataset, Subset

from service.specs.models import TrainSpec
from workers.science.datasets import DATASETS, data_files, data_hash, dataset_root, load_dataset
from workers.science.evaluate import evaluate
from workers.science.models import build_model
from workers.science.records import CheckpointRecord, MetricRecord, Reporter, RunContext
from workers.science.train import EpochMetrics, TrainHooks, seed_everything, train

MAX_LISTED_FILES = 100
"""Data files named one by one in the provenance; larger trees (ImageNet) give a count only."""


def run(spec: TrainSpec, ctx: RunContext) -> None:
    """Train ``spec.model`` on ``spec.dataset``, checkpointing, then evaluate and report."""
    reporter = ctx.reporter
    train_data = load_dataset(spec.dataset, ctx.data_dir, train=True)  # downloads if asked to
    eval_data = _evaluation_data(spec, ctx.data_dir)
    reporter.provenance(**_data_provenance(spec, ctx.data_dir))
    seed_everything(spec.seed)
    model = build_model(spec.model.arch, DATASETS[spec.dataset.name].num_classes,
                        dataset=spec.dataset.name)
    reports = _Reports(spec, reporter)
    hooks = TrainHooks(on_batch=reports.training_batch, on_epoch=reports.epoch,
                       on_checkpoint=reports.intermediate_checkpoint,
                       should_stop=reporter.should_stop)
    outcome = train(model, train_data, spec.training, spec.adversary, device=ctx.device,
                    checkpoint_dir=ctx.run_dir / "checkpoints", seed=spec.seed,
                    checkpoint_every=spec.checkpoint_every, hooks=hooks, meta=checkpoint_meta(spec))
    reports.checkpoint(outcome.final_checkpoint, spec.training.epochs, final=True)

    result = evaluate(outcome.model.eval(), eval_data, spec.evaluation.attacks, device=ctx.device,
                      batch_size=spec.evaluation.batch_size, checks=spec.evaluation.checks,
                      should_stop=reporter.should_stop, on_batch=reports.evaluation_batch,
                      seed=spec.seed)
    for record in result.to_records(spec.model.arch, spec.dataset.name, spec.evaluation.split,
                                    spec.adversary.norm, spec.adversary.eps):
        reporter.evaluation(record)


def checkpoint_meta(spec: TrainSpec) -> dict[str, Any]:
    """What every checkpoint of this run says about its model (``checkpoints.load_model``)."""
    return {
        "arch": spec.model.arch,
        "dataset": spec.dataset.name,
        "num_classes": DATASETS[spec.dataset.name].num_classes,
        "train_norm": spec.adversary.norm,
        "train_eps": spec.adversary.eps,
        "seed": spec.seed,
        "spec": spec.model_dump(mode="json"),
    }


def _data_provenance(spec: TrainSpec, data_dir: Path) -> dict[str, Any]:
    root = dataset_root(spec.dataset, data_dir)
    files = data_files(spec.dataset, data_dir)
    facts: dict[str, Any] = {
        "data_hash": data_hash(spec.dataset, data_dir),
        "data_root": str(root),
        "data_file_count": len(files),
    }
    if len(files) <= MAX_LISTED_FILES:
        facts["data_files"] = [path.relative_to(root).as_posix() for path in files]
    return facts


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

    def __init__(self, spec: TrainSpec, reporter: Reporter) -> None:
        self.spec = spec
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
            "lr": metrics.lr,
            "eps": metrics.eps,
        }
        for name, value in values.items():
            if value is not None:
                self.reporter.metric(MetricRecord(name=name, value=value, step=metrics.epoch))

    def intermediate_checkpoint(self, path: Path, epoch: int, final: bool) -> None:
        """Every checkpoint but the last, which ``run`` reports once training returns.

        That way a run resumed after its last epoch (the previous attempt died between writing
        the file and reporting it) still reports the final checkpoint.
        """
        if not final:
            self.checkpoint(path, epoch, final=False)

    def checkpoint(self, path: Path, epoch: int, *, final: bool) -> None:
        spec = self.spec
        self.reporter.checkpoint(CheckpointRecord(
            path=path.resolve(), epoch=epoch, arch=spec.model.arch, dataset=spec.dataset.name,
            train_norm=spec.adversary.norm, train_eps=spec.adversary.eps, final=final,
            metadata={"seed": spec.seed, "num_classes": DATASETS[spec.dataset.name].num_classes},
        ))
