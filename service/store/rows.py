"""Rows in and out of the store's tables: records as column values, rows as entities.

The repository's helpers, kept apart so that ``repository`` is the ``Store`` and its
transactions. Evaluation rows are written and read column by column from
``contract.columns.STORED_COLUMNS``: a new result field needs no edit here.
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contract.columns import STORED_COLUMNS
from contract.records import CheckpointRecord, EvaluationRecord, MetricRecord
from contract.status import RunStatus
from service.store.models import Evaluation, Run
from service.store.session import RunNotFound, StoreError
from service.store.storage import sha256_file

T = TypeVar("T")

AMBIGUOUS_SHOWN = 10
"""Run ids listed when a prefix matches several."""


RUN_WRITABLE = frozenset(column.name for column in Run.__table__.columns) - {"id", "status"}

COLUMN_ATTRIBUTES = {"metadata": "meta"}
"""Info fields whose ORM attribute has another name (``metadata`` is reserved by SQLAlchemy)."""


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (also inside lists and dicts) as None.

    A non-finite number is stored as null, never raised mid-write: PostgreSQL's JSON refuses
    ``NaN``, and a failed write would leave the run 'running' with nothing behind it.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def evaluation_values(run_id: str, record: EvaluationRecord) -> dict[str, Any]:
    """The ``evaluations`` row of a record: its identity, every stored result column, the rest."""
    values = {column.name: finite(getattr(record, column.name)) for column in STORED_COLUMNS}
    return {"run_id": run_id, "key": record.key, **values, "checks": finite(record.checks),
            "details": finite(record.details), "per_example": record.per_example}


def metric_values(run_id: str, record: MetricRecord) -> dict[str, Any]:
    """A metric's row; a NaN or infinite value becomes null (``finite``)."""
    return {"run_id": run_id, "key": record.key, "name": record.name, "step": record.step,
            "value": finite(float(record.value)), "tags": finite(record.tags)}


def checkpoint_values(run_id: str | None, record: CheckpointRecord) -> dict[str, Any]:
    file = Path(record.path)
    return {"run_id": run_id, "path": str(record.path),
            "sha256": sha256_file(file) if file.is_file() else None,
            "epoch": record.epoch, "final": record.final, "arch": record.arch,
            "dataset": record.dataset, "train_norm": record.train_norm,
            "train_eps": record.train_eps, "metadata": record.metadata}


def progress_values(run_id: str, progress: float, stage: str | None) -> dict[str, Any]:
    """Progress in [0, 1] (clamped) and a heartbeat; ``stage`` ``None`` keeps the stage."""
    if math.isnan(progress):
        raise ValueError(f"progress of run {run_id} is NaN")
    values: dict[str, Any] = {"progress": min(max(progress, 0.0), 1.0), "heartbeat_at": now()}
    if stage is not None:
        values["stage"] = stage
    return values


def info(cls: type[T], row: Any) -> T:
    """A frozen dataclass from an ORM row, field by field; datetimes as aware UTC."""
    values = {field.name: utc_time(getattr(row, COLUMN_ATTRIBUTES.get(field.name, field.name)))
              for field in fields(cls)}  # type: ignore[arg-type]
    return cls(**values)


def utc_time(value: Any) -> Any:
    """SQLite returns naive datetimes (stored as UTC); PostgreSQL aware ones."""
    if not isinstance(value, datetime):
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


def ensure_run(session: Session, run_id: str) -> Run:
    row = session.get(Run, run_id)
    if row is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return row


def update_if(session: Session, run_id: str, status: RunStatus,
               values: dict[str, Any]) -> None:
    """UPDATE the run only while it has ``status``: a compare-and-set, safe against races."""
    session.execute(update(Run).where(Run.id == run_id, Run.status == status.value)
                    .values(values)
                    .execution_options(synchronize_session=False))


def refreshed(session: Session, run_id: str) -> Run:
    """The row as the database now has it, after bulk UPDATEs the identity map did not see."""
    return session.scalars(select(Run).where(Run.id == run_id)
                           .execution_options(populate_existing=True)).one()


def by_prefix(session: Session, prefix: str) -> Run:
    if not prefix:
        raise RunNotFound("no run id given")
    candidates = list(session.scalars(
        select(Run).where(Run.id.startswith(prefix, autoescape=True)).order_by(Run.id)
        .limit(AMBIGUOUS_SHOWN + 1)))
    if not candidates:
        raise RunNotFound(f"no run with id {prefix!r}")
    if len(candidates) > 1:
        shown = ", ".join(row.id for row in candidates[:AMBIGUOUS_SHOWN])
        more = ", ..." if len(candidates) > AMBIGUOUS_SHOWN else ""
        raise StoreError(f"run id prefix {prefix!r} is ambiguous: {shown}{more}")
    return candidates[0]


RESULT_COLUMNS = tuple(column for column in Evaluation.__table__.columns
                        if column.name not in {"id", "per_example"})
"""What a result row reads: every evaluation column but the per-example bits (kilobytes a row;
listing 10,000 rows must not load them)."""
RESULT_SOURCES: dict[str, Any] = {
    **{column.name: column for column in RESULT_COLUMNS},
    "experiment": Run.experiment, "kind": Run.kind, "cell": Run.cell,
}


def result_row(row: Any) -> dict[str, Any]:
    """A flat result row from a column-wise SELECT (no ORM objects: a listing stays fast)."""
    return {
        "run_id": row["run_id"], "experiment": row["experiment"], "kind": row["kind"],
        "cell": row["cell"], **{column.name: row[column.name] for column in STORED_COLUMNS},
        "checks": row["checks"], "details": row["details"], "key": row["key"],
        "created_at": utc_time(row["created_at"]),
    }
