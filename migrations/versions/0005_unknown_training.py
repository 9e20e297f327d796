"""How a model was trained may be unknown: ``evaluations.train_eps`` becomes nullable.

A checkpoint trained elsewhere used to be recorded with ``train_eps`` 0, which every table
read as a standard model. From now on, null in ``train_norm``, ``train_eps`` and
``train_method`` means "unknown", everywhere:

- rows of robustlab-trained models written before ``train_method`` existed (0003) get
  ``pgd``, the only method there was (their ``train_norm`` is set);
- rows of foreign checkpoints (``evaluate`` and ``visualize`` runs, ``train_norm`` and
  ``train_method`` null) get ``train_eps`` null.

Mirrors ``contract.records.EvaluationRecord`` (``service/store/models.py`` builds the table).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRAINED_KINDS = "('train', 'evaluate', 'visualize')"


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.alter_column("train_eps", existing_type=sa.Float(), nullable=True)
    op.execute(f"""UPDATE evaluations SET train_method = 'pgd'
                   WHERE train_method IS NULL AND train_norm IS NOT NULL
                   AND run_id IN (SELECT id FROM runs WHERE kind IN {TRAINED_KINDS})""")
    op.execute("""UPDATE evaluations SET train_eps = NULL
                  WHERE train_norm IS NULL AND train_method IS NULL
                  AND run_id IN (SELECT id FROM runs WHERE kind IN ('evaluate', 'visualize'))""")


def downgrade() -> None:
    op.execute("UPDATE evaluations SET train_eps = 0 WHERE train_eps IS NULL")
    with op.batch_alter_table("evaluations") as batch:
        batch.alter_column("train_eps", existing_type=sa.Float(), nullable=False)
