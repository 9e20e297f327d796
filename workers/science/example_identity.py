"""Which examples an evaluation scored: the identity that makes two result rows paired.

Two models are compared as pairs (McNemar, ``service.analysis.compare``) only when their
per-example outcomes belong to the same examples in the same order. A result row says so with
two columns (``contract.records.EvaluationRecord``):

- ``dataset_hash``: the content hash of the data the examples come from, the same value a run
  records as ``data_hash`` in its provenance (``workers.science.datasets.data_hash``; cached
  per file, so it costs a ``stat`` per file, not a read);
- ``examples_hash``: sha256 (64 hex digits) of the evaluated example indices, in evaluation
  order, each as a little-endian int64. The indices are positions in the split the dataset
  loader returns (after a dataset's own filtering, e.g. binary_mnist's two classes); subsets
  are prefixes, so ``test_subset: 500`` and ``evaluation.subset: 500`` both give
  ``examples_hash(range(500))``.

Rows with the same dataset, dataset_hash, split and examples_hash scored the same examples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence, Sized
from dataclasses import replace
from typing import Any, cast

import numpy as np
from torch.utils.data import Dataset, Subset

from contract.records import (
    ArtifactRecord,
    CheckpointRecord,
    EvaluationRecord,
    MetricRecord,
    Reporter,
)


def examples_hash(indices: Iterable[int] | np.ndarray) -> str:
    """sha256 hex digest of ``indices`` as little-endian int64 bytes, in the given order."""
    values = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices),
                        dtype="<i8")
    return hashlib.sha256(values.tobytes()).hexdigest()


def example_indices(data: Dataset) -> np.ndarray:
    """(N,) int64: for each example of ``data`` in order, its position in the underlying split.

    ``torch.utils.data.Subset`` wrappers (any depth) are resolved to the base dataset's
    positions; any other dataset is its own base (positions 0..N-1).
    """
    if isinstance(data, Subset):
        inner = example_indices(data.dataset)
        return inner[np.asarray(list(data.indices), dtype=np.int64)]
    return np.arange(len(cast(Sized, data)), dtype=np.int64)


def identify(records: Sequence[EvaluationRecord], dataset_hash: str | None,
             indices: Iterable[int] | np.ndarray) -> list[EvaluationRecord]:
    """``records`` with ``dataset_hash`` and the ``examples_hash`` of ``indices`` set.

    Every record of one evaluation scored the same examples, so the hash is computed once.
    """
    found = examples_hash(indices)
    return [replace(record, dataset_hash=dataset_hash, examples_hash=found)
            for record in records]


class WholeSplitIdentity:
    """A ``Reporter`` that stamps every evaluation with ``dataset_hash`` and the examples
    0..n-1 of its split, then hands everything on to ``inner``.

    For experiments that always score a whole loaded split in order (E1's test sample, E3's
    train and test splits), so their many record builders need not carry the identity.
    Records that already name their examples keep them.
    """

    def __init__(self, inner: Reporter, dataset_hash: str | None) -> None:
        self.inner = inner
        self.dataset_hash = dataset_hash
        self._hashes: dict[int, str] = {}

    def evaluation(self, record: EvaluationRecord) -> None:
        if record.examples_hash is None:
            if record.n not in self._hashes:
                self._hashes[record.n] = examples_hash(range(record.n))
            record = replace(record, dataset_hash=self.dataset_hash,
                             examples_hash=self._hashes[record.n])
        self.inner.evaluation(record)

    def progress(self, done: float, total: float, stage: str = "") -> None:
        self.inner.progress(done, total, stage)

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def metric(self, record: MetricRecord) -> None:
        self.inner.metric(record)

    def artifact(self, record: ArtifactRecord) -> None:
        self.inner.artifact(record)

    def checkpoint(self, record: CheckpointRecord) -> None:
        self.inner.checkpoint(record)

    def provenance(self, **facts: Any) -> None:
        self.inner.provenance(**facts)
