"""What the report reads from the store: succeeded runs (newest first), their rows, the few
metrics it needs, and artifact rows."""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from contract.records import PER_EXAMPLE_KIND
from contract.status import RunStatus
from service.analysis.common import Row, recency, rows_of
from service.analysis.compare import RESULT_IDENTITY, evaluation_key
from service.store.entities import ArtifactInfo, MetricInfo, RunInfo, SpecInfo
from service.store.repository import Store

log = logging.getLogger(__name__)

REPORT_METRICS = (
    "weight_x1", "weight_rest_l1", "weight_l1", "low_correlation_weight_fraction",
    "target_agreement", "gradient_edge_alignment", "val_accuracy", "val_robust_accuracy",
)
"""The only metrics the report reads (closed forms and bounds come from ``service.analysis``;
training curves are in ``robustlab metrics`` and the dashboard, except the validation curves
of the robust-overfitting section)."""


@dataclass(frozen=True)
class ReportInputs:
    runs: list[RunInfo]
    rows: list[Row]
    metrics: list[MetricInfo]
    artifacts: list[ArtifactInfo]
    left_out: dict[str, int] = field(default_factory=dict)
    """Runs not used because they have not succeeded, counted by status."""
    experiments: tuple[str, ...] = ()
    """The experiments asked for; empty means all."""
    specs: dict[str, SpecInfo] = field(default_factory=dict)
    """The specs of the succeeded runs, by id (for the commands in the provenance)."""
    per_image: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Artifact path -> the per-image values of a ``PER_EXAMPLE_KIND`` artifact."""

    def runs_of_kind(self, kind: str) -> list[RunInfo]:
        return [run for run in self.runs if run.kind == kind]

    def rows_of(self, runs: Iterable[RunInfo]) -> list[Row]:
        return rows_of(self.rows, (run.id for run in runs))

    def artifacts_of(self, run_ids: Iterable[str], kinds: Iterable[str]) -> list[ArtifactInfo]:
        ids, wanted = set(run_ids), set(kinds)
        return [a for a in self.artifacts if a.run_id in ids and a.kind in wanted]

    def recency(self) -> dict[str, int]:
        """Run id -> position among the runs, 0 for the newest."""
        return recency(self.runs)


def collect(store: Store, experiments: Sequence[str] = ()) -> ReportInputs:
    """Read everything the report needs; only succeeded runs count (others are counted)."""
    runs = _runs(store, experiments)
    succeeded = [run for run in runs if run.status == RunStatus.SUCCEEDED]
    ids = {run.id for run in succeeded}
    rows = with_outcomes(store, store.results(run_ids=sorted(ids))) if ids else []
    metrics = [metric for name in REPORT_METRICS for metric in store.metrics(name=name)
               if metric.run_id in ids]
    artifacts = [artifact for artifact in store.artifacts() if artifact.run_id in ids]
    left_out = Counter(str(run.status) for run in runs if run.status != RunStatus.SUCCEEDED)
    specs = {spec.id: spec for spec in store.specs(sorted({run.spec_id for run in succeeded}))}
    per_image = {}
    for artifact in artifacts:
        if artifact.kind == PER_EXAMPLE_KIND:
            try:
                per_image[artifact.path] = per_image_values(store.storage.get(artifact.path))
            except (OSError, ValueError, EOFError) as exc:  # its claim falls back to the means
                log.warning("per-image values %s left out: %s", artifact.path, exc)
    return ReportInputs(succeeded, rows, metrics, artifacts, dict(left_out), tuple(experiments),
                        specs, per_image)


def per_image_values(data: bytes) -> tuple[float, ...]:
    """A ``PER_EXAMPLE_KIND`` artifact's values: a 1-d numeric ``.npy`` read without pickle
    (anything else is a ``ValueError``)."""
    values = np.load(io.BytesIO(data), allow_pickle=False)
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise ValueError(f"not a 1-d numeric array ({values.dtype}, shape {values.shape})")
    return tuple(float(v) for v in values)


def with_outcomes(store: Store, rows: list[Row]) -> list[Row]:
    """The rows with their per-example bits (``per_example``) where stored: the claims
    compare models scored on the same examples paired."""
    bits = {(row["run_id"], evaluation_key(row)): row["per_example"] for row in
            store.per_example(sorted({row["run_id"] for row in rows}),
                              ("run_id", *RESULT_IDENTITY))}
    return [{**row, "per_example": bits.get((row["run_id"], evaluation_key(row)))}
            for row in rows]


def _runs(store: Store, experiments: Sequence[str]) -> list[RunInfo]:
    if not experiments:
        return store.list_runs()
    runs = {run.id: run for name in experiments for run in store.list_runs(experiment=name)}
    return sorted(runs.values(), key=lambda r: (-r.created_at.timestamp(), r.cell, r.id))
