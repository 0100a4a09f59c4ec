"""Guardrail non-inferiority margins on metrics (the decision rule of issue 12).

Revision ID: 0004
Revises: 0001 (on this branch; 0003 once issue 12's storage branch, with 0002 and 0003, is merged)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# numbered 0004 so it never clashes with the storage branch's 0002/0003; at merge set down_revision = "0003"
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite (the embedded registry) cannot ALTER a table in place
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("margin", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("margin_relative", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_column("margin_relative")
        batch.drop_column("margin")
