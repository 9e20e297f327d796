"""The initial schema: specs, runs, evaluations, metrics, artifacts, checkpoints.

Mirrors ``service/store/models.py`` exactly (tests compare the two with
``alembic.autogenerate.compare_metadata``).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("specs", "runs", "evaluations", "metrics", "artifacts", "checkpoints")
"""In creation order (parents first); dropped in reverse."""


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def _run_id(table: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> list[sa.SchemaItem]:
    return [
        sa.Column("run_id", sa.String(length=32), nullable=nullable),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f(f"fk_{table}_run_id_runs"),
                                ondelete=ondelete),
    ]


def upgrade() -> None:
    op.create_table(
        "specs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.Column("source_yaml", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_specs")),
    )
    op.create_index(op.f("ix_specs_name"), "specs", ["name"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("spec_id", sa.String(length=64), nullable=False),
        sa.Column("experiment", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("cell", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("resolved_spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _created_at(),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("git_sha", sa.String(length=64), nullable=True),
        sa.Column("package_versions", sa.JSON(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("data_hash", sa.String(length=64), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_runs_status"),
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_runs_progress_range")),
        sa.ForeignKeyConstraint(["spec_id"], ["specs.id"], name=op.f("fk_runs_spec_id_specs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_experiment_status", "runs", ["experiment", "status"])
    op.create_index(op.f("ix_runs_spec_hash"), "runs", ["spec_hash"])
    op.create_index(op.f("ix_runs_spec_id"), "runs", ["spec_id"])

    op.create_table(
        "evaluations",
        _id(),
        *_run_id("evaluations"),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("train_norm", sa.String(length=8), nullable=True),
        sa.Column("train_eps", sa.Float(), nullable=False),
        sa.Column("eval_norm", sa.String(length=8), nullable=True),
        sa.Column("eval_eps", sa.Float(), nullable=False),
        sa.Column("attack", sa.String(length=32), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("step_size", sa.Float(), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=120), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("checks_passed", sa.Boolean(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("per_example", sa.LargeBinary(), nullable=True),
        _created_at(),
        sa.CheckConstraint("accuracy >= 0 AND accuracy <= 1",
                           name=op.f("ck_evaluations_accuracy_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint("run_id", "key", name=op.f("uq_evaluations_run_key")),
    )
    op.create_index("ix_evaluations_lookup", "evaluations",
                    ["dataset", "train_norm", "train_eps", "eval_eps"])
    op.create_index(op.f("ix_evaluations_run_id"), "evaluations", ["run_id"])

    op.create_table(
        "metrics",
        _id(),
        *_run_id("metrics"),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.UniqueConstraint("run_id", "key", name=op.f("uq_metrics_run_key")),
    )
    op.create_index(op.f("ix_metrics_name"), "metrics", ["name"])
    op.create_index(op.f("ix_metrics_run_id"), "metrics", ["run_id"])

    op.create_table(
        "artifacts",
        _id(),
        *_run_id("artifacts"),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=80), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_artifacts_run_name")),
    )
    op.create_index(op.f("ix_artifacts_kind"), "artifacts", ["kind"])
    op.create_index(op.f("ix_artifacts_run_id"), "artifacts", ["run_id"])

    op.create_table(
        "checkpoints",
        _id(),
        *_run_id("checkpoints", nullable=True, ondelete="SET NULL"),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("arch", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("train_norm", sa.String(length=8), nullable=True),
        sa.Column("train_eps", sa.Float(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("path", name=op.f("uq_checkpoints_path")),
    )
    op.create_index(op.f("ix_checkpoints_run_id"), "checkpoints", ["run_id"])


def downgrade() -> None:
    """Drop every table, children first; their indexes and constraints go with them."""
    for table in reversed(TABLES):
        op.drop_table(table)
