"""At most one active run per cell; result rows name their checkpoint and their examples;
metric values may be null.

- ``runs``: a partial unique index over ``spec_hash`` where the status is queued or running
  (``ix_runs_active_cell``), so racing submits of one cell record one run whatever the
  concurrency (``Store.add_runs`` inserts or returns the existing run). Duplicates already
  there are settled first: the oldest active run of a cell stays, the others are cancelled
  with a note saying which run they duplicated.
- ``evaluations``: ``checkpoint`` ('final' on every existing row), ``dataset_hash`` and
  ``examples_hash`` (null on existing rows: they count as unpaired).
- ``metrics.value`` becomes nullable: a NaN or infinite value is stored as null.

Mirrors ``contract.records.EvaluationRecord`` (``service/store/models.py`` builds the table).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('queued', 'running')"


def upgrade() -> None:
    op.execute(f"""UPDATE runs SET status = 'cancelled',
                   error = 'duplicate of an older active run of the same cell (migration 0006)'
                   WHERE {ACTIVE} AND EXISTS (
                     SELECT 1 FROM runs AS older WHERE older.spec_hash = runs.spec_hash
                     AND older.status IN ('queued', 'running')
                     AND (older.created_at < runs.created_at
                          OR (older.created_at = runs.created_at AND older.id < runs.id)))""")
    op.create_index("ix_runs_active_cell", "runs", ["spec_hash"], unique=True,
                    sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("checkpoint", sa.String(8), nullable=False,
                                   server_default="final"))
        batch.add_column(sa.Column("dataset_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("examples_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("metrics") as batch:
        batch.alter_column("value", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM metrics WHERE value IS NULL")
    with op.batch_alter_table("metrics") as batch:
        batch.alter_column("value", existing_type=sa.Float(), nullable=False)
    op.execute("DELETE FROM evaluations WHERE checkpoint <> 'final'")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("examples_hash")
        batch.drop_column("dataset_hash")
        batch.drop_column("checkpoint")
    op.drop_index("ix_runs_active_cell", table_name="runs")
