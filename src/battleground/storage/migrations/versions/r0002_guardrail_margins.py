"""Guardrail non-inferiority margins on metrics (the decision rule of issue 12).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
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
