"""Metrics gain a conversion window and a CUPED lookback (days).

Existing metrics keep counting every event after the exposure (no window) and get the default lookback
of 14 days for their CUPED covariate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("conversion_window_days", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cuped_lookback_days", sa.Float(), nullable=True))
    op.execute("UPDATE metrics SET cuped_lookback_days = 14.0")


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_column("cuped_lookback_days")
        batch.drop_column("conversion_window_days")
