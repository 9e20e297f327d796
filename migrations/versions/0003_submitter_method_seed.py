"""Who submitted a run, how its model was trained, 64-bit seeds, runs listed by creation time.

- ``runs.submitted_by``: the OIDC e-mail (dashboard) or the OS user (CLI) that recorded the run.
- ``evaluations.train_method``: the training adversary's method (pgd, trades, fgsm_rs), beside
  ``train_norm`` and ``train_eps``; NULL for rows written before it existed.
- ``runs.seed`` becomes BIGINT: specs accept seeds up to 2**63 - 1.
- ``ix_runs_created_at``: ``robustlab runs`` and the dashboard list runs newest first.
- status ``interrupted``: a run stopped cleanly by SIGTERM/SIGINT, resumable.

Mirrors ``service/store/models.py``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
NEW_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("submitted_by", sa.String(length=255), nullable=True))
        batch.alter_column("seed", existing_type=sa.Integer(), type_=sa.BigInteger(),
                           existing_nullable=False)
        batch.create_index(batch.f("ix_runs_created_at"), ["created_at"])
        batch.drop_constraint(batch.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(batch.f("ck_runs_status"), NEW_STATUSES)
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("train_method", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("train_method")
    # The old constraint has no 'interrupted': such runs become failed, which resume also takes.
    op.execute("UPDATE runs SET status = 'failed' WHERE status = 'interrupted'")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(batch.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(batch.f("ck_runs_status"), OLD_STATUSES)
        batch.drop_index(batch.f("ix_runs_created_at"))
        batch.alter_column("seed", existing_type=sa.BigInteger(), type_=sa.Integer(),
                           existing_nullable=False)
        batch.drop_column("submitted_by")
