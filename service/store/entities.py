"""What the store returns: plain frozen dataclasses, never ORM rows.

No caller of ``service.store.repository.Store`` holds a session or imports SQLAlchemy; these are
what it hands out (mlflow's entities, in ``dbmodels``' place).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract.status import RunStatus


@dataclass(frozen=True)
class SpecInfo:
    """A recorded spec: where it came from and the overrides applied to it."""

    id: str
    name: str
    kind: str
    source_path: str | None
    """The file it was read from; ``None`` for text submitted through the dashboard or API."""
    overrides: list[str] | None
    """The ``--set`` items, in order; ``None`` when recorded before they were kept."""
    created_at: datetime


@dataclass(frozen=True)
class RunInfo:
    """One run as stored: its cell of the spec, its life cycle and its provenance."""

    id: str
    spec_id: str
    experiment: str
    kind: str
    cell: int
    params: dict[str, Any]
    resolved_spec: dict[str, Any]
    spec_hash: str
    status: str
    progress: float
    stage: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    attempts: int
    cancel_requested: bool
    queue: str | None
    task_id: str | None
    seed: int
    git_sha: str | None
    package_versions: dict[str, Any]
    host: str | None
    device: str | None
    data_hash: str | None
    provenance: dict[str, Any]
    submitted_by: str | None = None
    """The OIDC e-mail (dashboard) or OS user (CLI) that recorded the run; None before 0003."""

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish; for a running run, so far; ``None`` if never started."""
        if self.started_at is None:
            return None
        if self.finished_at is not None:
            end = self.finished_at
        elif self.status == RunStatus.RUNNING:
            end = datetime.now(UTC)
        else:
            return None
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True)
class NewRun:
    """A run to record: one grid cell of a spec, not yet started."""

    id: str
    experiment: str
    kind: str
    cell: int
    params: dict[str, Any]
    resolved_spec: dict[str, Any]
    spec_hash: str
    seed: int
    queue: str | None = None
    submitted_by: str | None = None
    """Who records it; ``None``: ``service.store.submitter.current_submitter()``."""


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact's row; ``path`` is relative to the storage root (the artifact directory)."""

    id: int
    run_id: str
    kind: str
    name: str
    path: str
    sha256: str
    media_type: str
    size: int
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file's row; ``run_id`` is ``None`` for imported or orphaned checkpoints."""

    id: int
    run_id: str | None
    path: str
    sha256: str | None
    epoch: int
    final: bool
    arch: str
    dataset: str
    train_norm: str | None
    train_eps: float
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class MetricInfo:
    """A scalar on a curve, as stored."""

    id: int
    run_id: str
    key: str
    name: str
    step: int
    value: float | None
    """Null where the science reported NaN or an infinity."""
    tags: dict[str, Any]
    created_at: datetime
