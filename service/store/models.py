"""The results database schema: SQLAlchemy 2 typed models. Only ``service.store`` imports these.

Numbers that users filter on (eps, steps, accuracy) are numeric columns so that "eps < 0.3"
is a SQL question. Every constraint has a name so Alembic migrations stay deterministic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from contract.columns import STORED_COLUMNS, ResultColumn
from contract.status import RunStatus, check_constraint_sql, pending_sql

RUN_STATUSES = tuple(status.value for status in RunStatus)
"""The status values in order, for callers that want plain strings (``RunStatus`` defines them)."""

NAMING = {
    "ix": "ix_%(column_0_label)s",
    # Unique constraints are named per table: PostgreSQL backs each with an index, and index
    # names share one namespace per schema (two tables' "run_key" would collide).
    "uq": "uq_%(table_name)s_%(constraint_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Spec(Base):
    """A submitted spec file, as written (YAML) and as validated (JSON), before sweep expansion."""

    __tablename__ = "specs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Content hash of the normalised spec (with its sweep and overrides applied)."""
    name: Mapped[str] = mapped_column(String(120), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    source_path: Mapped[str | None] = mapped_column(Text)
    source_yaml: Mapped[str] = mapped_column(Text)
    overrides: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    """The ``--set PATH=VALUE`` items applied to the file, in order (null: recorded before
    migration 0007)."""
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    runs: Mapped[list[Run]] = relationship(back_populates="spec_row")


class Run(Base):
    """One grid cell of a spec, executed once (resumable), with its provenance."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(check_constraint_sql("status"), name="status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        Index("ix_runs_experiment_status", "experiment", "status"),
        Index("ix_runs_active_cell", "spec_hash", unique=True,
              sqlite_where=text(pending_sql()), postgresql_where=text(pending_sql())),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    spec_id: Mapped[str] = mapped_column(ForeignKey("specs.id", ondelete="CASCADE"), index=True)
    experiment: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(40))
    cell: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The sweep values of this cell (dotted path -> value)."""
    resolved_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    queue: Mapped[str | None] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(64))
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    """The OIDC e-mail (dashboard) or the OS user (CLI) that recorded the run."""
    # provenance
    seed: Mapped[int] = mapped_column(BigInteger, default=0)
    git_sha: Mapped[str | None] = mapped_column(String(64))
    package_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    host: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    data_hash: Mapped[str | None] = mapped_column(String(64))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Everything else learnt while running (data files, torch threads, ...)."""

    spec_row: Mapped[Spec] = relationship(back_populates="runs")


_SQL_TYPES = {"str": String, "float": Float, "int": Integer, "bool": Boolean}


def _result_column(column: ResultColumn) -> Column[Any]:
    """The database column of one stored result column (``contract.columns``)."""
    sql_type = _SQL_TYPES[column.type]
    return Column(column.name, sql_type(column.length) if column.length else sql_type(),
                  nullable=column.nullable)


class Evaluation(Base):
    """One accuracy: model x split x threat model x eps x attack configuration.

    Its result columns are ``contract.columns.STORED_COLUMNS`` (defined once, on
    ``EvaluationRecord``); the others are the row's identity, its JSON and its bits.
    """

    __table__ = Table(
        "evaluations", Base.metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("key", String(400), nullable=False),
        *(_result_column(column) for column in STORED_COLUMNS),
        Column("checks", JSON, nullable=False, default=dict),
        Column("details", JSON, nullable=False, default=dict),
        Column("per_example", LargeBinary),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        UniqueConstraint("run_id", "key", name="run_key"),
        CheckConstraint("accuracy >= 0 AND accuracy <= 1", name="accuracy_range"),
        Index("ix_evaluations_lookup", "dataset", "train_norm", "train_eps", "eval_eps"),
    )


EVALUATION_COLUMNS = Evaluation.__table__.c
"""The evaluations table's columns by name (``EVALUATION_COLUMNS.accuracy``), for queries: its
result columns are generated, so the class declares no attribute for them."""


class Metric(Base):
    """A scalar on a curve (training loss per epoch, closed forms, bounds, measured scores)."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "key", name="run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(400))
    name: Mapped[str] = mapped_column(String(120), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[float | None] = mapped_column(Float)
    """Null where the science reported NaN or an infinity (never raised mid-write)."""
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Artifact(Base):
    """A file under ROBUSTLAB_ARTIFACT_DIR produced by a run (figures, image grids, arrays)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name", name="run_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    """Relative to the artifact directory."""
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Checkpoint(Base):
    """A model checkpoint file; evaluations and scheduled re-runs point at these."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("path", name="path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer)
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    arch: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    train_norm: Mapped[str | None] = mapped_column(String(8))
    train_eps: Mapped[float] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Schedule(Base):
    """A standing evaluation: an ``evaluate`` spec re-run on every new checkpoint of a source.

    The source is a directory of ``*.pt`` files (``target_kind`` 'watch', ``target`` its absolute
    path) or an experiment whose succeeded runs' final checkpoints count ('experiment').
    """

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("target_kind IN ('watch', 'experiment')", name="target_kind"),
        UniqueConstraint("spec_hash", "target_kind", "target", name="spec_target"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120))
    """The evaluate spec's name: the experiment its runs are recorded under."""
    spec_hash: Mapped[str] = mapped_column(String(64))
    """Content hash of the spec with its source left as a placeholder."""
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_yaml: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str | None] = mapped_column(Text)
    overrides: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """The ``--set`` overrides given with the spec, applied again for every checkpoint."""
    target_kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    queue: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ScheduleCoverage(Base):
    """One checkpoint a standing evaluation has taken on: its unique key makes scans race-safe.

    A scanner inserts the row first and submits the evaluation only if its insert won, so two
    scanners racing over the same new checkpoint enqueue it once.
    """

    __tablename__ = "schedule_coverage"
    __table_args__ = (UniqueConstraint("schedule_id", "checkpoint", name="schedule_checkpoint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    checkpoint: Mapped[str] = mapped_column(Text)
    """Absolute path of the checkpoint file."""
    spec_id: Mapped[str | None] = mapped_column(String(64))
    """The submitted spec (content hash); ``None`` while the submission is in flight."""
    run_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
