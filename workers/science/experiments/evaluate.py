"""The ``evaluate`` experiment kind: attack a trained checkpoint and report its accuracies.

The checkpoint is a file (``source.checkpoint``) or the final checkpoint of an earlier run
(``source.run``, resolved by the store). The records carry the checkpoint's own
``train_norm``/``train_eps``, so an evaluation of a sweep's models lines up with the sweep.
"""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import cast

from torch.utils.data import Dataset, Subset

from service.specs.models import CheckpointSource, DatasetConfig, EvaluateSpec
from workers.science.checkpoints import load_model
from workers.science.datasets import load_dataset
from workers.science.evaluate import evaluate
from workers.science.records import RunContext


def run(spec: EvaluateSpec, ctx: RunContext) -> None:
    """Load the checkpoint, evaluate it on the spec's (or its own) dataset, report records."""
    path = checkpoint_file(spec.source, ctx)
    model, meta = load_model(path, ctx.device)
    dataset = spec.dataset or DatasetConfig(name=meta["dataset"])
    ctx.reporter.provenance(checkpoint=str(path), checkpoint_epoch=meta.get("epoch"),
                            checkpoint_arch=meta["arch"], checkpoint_dataset=meta["dataset"])
    data = _evaluation_data(spec, dataset, ctx.data_dir)
    result = evaluate(
        model, data, spec.evaluation.attacks, device=ctx.device,
        batch_size=spec.evaluation.batch_size, checks=spec.evaluation.checks,
        should_stop=ctx.reporter.should_stop, seed=spec.seed,
        on_batch=lambda done, total: ctx.reporter.progress(done, total, "evaluation"),
    )
    for record in result.to_records(meta["arch"], dataset.name, spec.evaluation.split,
                                    meta["train_norm"], float(meta["train_eps"])):
        ctx.reporter.evaluation(record)


def checkpoint_file(source: CheckpointSource, ctx: RunContext) -> Path:
    """The checkpoint path the source names; a missing file is one clear error naming it."""
    if source.checkpoint is not None:
        path = Path(source.checkpoint).expanduser()
    else:
        if ctx.resolve_run_checkpoint is None:
            raise RuntimeError(f"cannot resolve run {source.run!r}: this context has no store")
        path = ctx.resolve_run_checkpoint(str(source.run))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return path


def _evaluation_data(spec: EvaluateSpec, dataset: DatasetConfig, data_dir: Path) -> Dataset:
    """The split the spec names, never augmented, cut to ``evaluation.subset``."""
    cfg = dataset.model_copy(update={"augment": False})
    data = load_dataset(cfg, data_dir, train=spec.evaluation.split == "train")
    subset = spec.evaluation.subset
    return data if subset is None else Subset(data, range(min(subset, len(cast(Sized, data)))))
