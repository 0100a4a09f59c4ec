"""Metrics gain winsorisation settings (issue 17): a quantile cap or a fixed cap of the per-user value.

``cap_quantile``: NULL or a quantile in (0, 1) (e.g. 0.999) of the experiment's per-user values, computed
in the metric-sums scan; ``cap_value``: NULL or a fixed cap > 0. Existing metrics stay uncapped.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite (the embedded registry) cannot ALTER a table in place
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("cap_quantile", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cap_value", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_column("cap_value")
        batch.drop_column("cap_quantile")
