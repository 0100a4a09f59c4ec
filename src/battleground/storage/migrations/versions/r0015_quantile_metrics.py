"""Metrics gain a quantile level (issue 17): ``kind = 'quantile'`` metrics are the ``quantile``-level
quantile of the per-user value (e.g. 0.9 for p90). NULL for every other kind; existing metrics keep it NULL.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite (the embedded registry) cannot ALTER a table in place
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("quantile", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_column("quantile")
