"""The ``evaluate`` experiment kind: attack a trained checkpoint and report its accuracies.

The checkpoint is a file (``source.checkpoint``) or the final checkpoint of an earlier run
(``source.run``, resolved by the store). The records carry the checkpoint's own
``train_norm``/``train_eps``, so an evaluation of a sweep's models lines up with the sweep.
A file written elsewhere (a bare or wrapped state_dict, see ``workers.science.state_dicts``) is
loaded into ``source.model`` for the spec's dataset; its records have no training radius.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from torch.utils.data import Dataset, Subset

from contract.specs.architecture import CheckpointSource, TrainedWith
from contract.specs.data import DatasetConfig
from contract.specs.kinds import EvaluateSpec
from workers.science.context import RunContext
from workers.science.datasets import data_provenance, dataset_info, load_dataset
from workers.science.evaluate import evaluate
from workers.science.example_identity import example_indices, identify
from workers.science.state_dicts import load_source_model


def run(spec: EvaluateSpec, ctx: RunContext) -> None:
    """Load the checkpoint, evaluate it on the spec's (or its own) dataset, report records."""
    path = checkpoint_file(spec.source, ctx)
    model, meta = load_source_model(path, ctx.device, model_cfg=spec.source.model,
                                    info_for=lambda: _foreign_data_info(spec, ctx.data_dir))
    dataset = spec.dataset or checkpoint_dataset(meta)
    data = _evaluation_data(spec, dataset, ctx.data_dir)
    data_facts = data_provenance(dataset, ctx.data_dir, evaluated_examples=len(cast(Sized, data)))
    ctx.reporter.provenance(
        checkpoint=str(path), checkpoint_epoch=meta.get("epoch"), checkpoint_arch=meta["arch"],
        checkpoint_dataset=meta["dataset"], checkpoint_format=meta["format"],
        **({"trained_with_declared": spec.source.trained_with.model_dump(mode="json")}
           if spec.source.trained_with is not None else {}),
        **data_facts,
    )
    result = evaluate(
        model, data, spec.evaluation.attacks, device=ctx.device,
        batch_size=spec.evaluation.batch_size, checks=spec.evaluation.checks,
        should_stop=ctx.reporter.should_stop, seed=spec.seed, world=ctx.world,
        on_batch=lambda done, total: ctx.reporter.progress(done, total, "evaluation"),
    )
    norm, eps, method = training_of(meta, spec.source.trained_with)
    records = result.to_records(meta["arch"], dataset.name, spec.evaluation.split, norm, eps)
    for record in identify(records, data_facts["data_hash"], example_indices(data)):
        ctx.reporter.evaluation(replace(record, train_method=method))


def training_of(meta: dict[str, Any], declared: TrainedWith | None
                ) -> tuple[str | None, float | None, str | None]:
    """(train_norm, train_eps, train_method) of a checkpoint: robustlab's own say it (older
    ones name no method: they were trained by PGD or standard training); one trained
    elsewhere is unknown (None) unless ``source.trained_with`` declares it."""
    if meta["format"] == "foreign":
        if declared is None:
            return None, None, None
        return declared.norm, declared.eps, declared.method
    return meta["train_norm"], float(meta["train_eps"]), meta.get("train_method") or "pgd"


def checkpoint_dataset(meta: dict[str, Any]) -> DatasetConfig:
    """The data a robustlab checkpoint was trained on: its spec's dataset, without subsets.

    Folder and file datasets need their root (and image settings) again, which only the spec
    kept; older checkpoints without a spec name a built-in dataset.
    """
    trained_on = meta.get("spec", {}).get("dataset")
    if not trained_on:
        return DatasetConfig(name=meta["dataset"])
    kept = {key: value for key, value in trained_on.items()
            if key not in {"train_subset", "test_subset", "augment", "download"}}
    return DatasetConfig.model_validate(kept)


def _foreign_data_info(spec: EvaluateSpec, data_dir: Path) -> Any:
    if spec.dataset is None:
        raise ValueError("a checkpoint written elsewhere says nothing about its data: "
                         "name the dataset (dataset: {name: ...})")
    return dataset_info(spec.dataset, data_dir)


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
