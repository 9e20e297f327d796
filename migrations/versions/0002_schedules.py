"""Standing evaluations: schedules and the coverage table that makes their scans race-safe.

Mirrors ``Schedule`` and ``ScheduleCoverage`` in ``service/store/models.py``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("source_yaml", sa.Text(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        _created_at(),
        sa.CheckConstraint("target_kind IN ('watch', 'experiment')",
                           name=op.f("ck_schedules_target_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("spec_hash", "target_kind", "target",
                            name=op.f("uq_schedules_spec_target")),
    )
    op.create_table(
        "schedule_coverage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("spec_id", sa.String(length=64), nullable=True),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"],
                                name=op.f("fk_schedule_coverage_schedule_id_schedules"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_coverage")),
        sa.UniqueConstraint("schedule_id", "checkpoint",
                            name=op.f("uq_schedule_coverage_schedule_checkpoint")),
    )


def downgrade() -> None:
    op.drop_table("schedule_coverage")
    op.drop_table("schedules")
