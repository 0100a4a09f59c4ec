"""The agreement ledger: offline OPE estimates beside the online value their experiment observed (issue 15).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ope_ledger",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("candidate", sa.String(200), nullable=False),
        sa.Column("estimator", sa.String(64), nullable=False),
        sa.Column("offline_value", sa.Float(), nullable=False),
        sa.Column("offline_low", sa.Float(), nullable=False),
        sa.Column("offline_high", sa.Float(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("n_rounds", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("online_value", sa.Float(), nullable=True),
        sa.Column("online_low", sa.Float(), nullable=True),
        sa.Column("online_high", sa.Float(), nullable=True),
        sa.Column("online_n", sa.Integer(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("experiment_id", "candidate", "estimator", name="uq_ope_ledger_entry"),
    )
    op.create_index("ix_ope_ledger_experiment_id", "ope_ledger", ["experiment_id"])


def downgrade() -> None:
    op.drop_index("ix_ope_ledger_experiment_id", table_name="ope_ledger")
    op.drop_table("ope_ledger")
