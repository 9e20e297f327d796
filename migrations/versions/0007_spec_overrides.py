"""Specs remember their ``--set`` overrides, so a report can print the command that made a run.

- ``specs.overrides``: the ``--set PATH=VALUE`` items applied to the file, in order (a JSON
  list); null on specs recorded before this migration (a later submission of the same spec
  fills it in).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("specs") as batch:
        batch.add_column(sa.Column("overrides", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("specs") as batch:
        batch.drop_column("overrides")
