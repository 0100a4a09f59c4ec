"""The experiment registry: experiments, variants, metrics, end conditions, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("hypothesis", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=True),
        sa.Column("end_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("archived_at", sa.DateTime(), nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("traffic", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "experiment_id", sa.Integer(),
            sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.UniqueConstraint("experiment_id", "name", name="uq_variants_experiment_name"),
    )
    op.create_index("ix_variants_experiment_id", "variants", ["experiment_id"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "experiment_id", sa.Integer(),
            sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("numerator", sa.String(200), nullable=False),
        sa.Column("denominator", sa.String(200), nullable=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("guardrail", sa.Boolean(), nullable=False),
        sa.Column("primary", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.UniqueConstraint("experiment_id", "name", name="uq_metrics_experiment_name"),
    )
    op.create_index("ix_metrics_experiment_id", "metrics", ["experiment_id"])
    op.create_table(
        "end_conditions",
        sa.Column(
            "experiment_id", sa.Integer(),
            sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True,
        ),
        sa.Column("target_sample_size", sa.Integer(), nullable=True),
        sa.Column("max_duration_days", sa.Float(), nullable=True),
        sa.Column("sequential", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "experiment_id", sa.Integer(),
            sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False,
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_experiment_id", "audit_log", ["experiment_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("end_conditions")
    op.drop_index("ix_metrics_experiment_id", "metrics")
    op.drop_table("metrics")
    op.drop_index("ix_variants_experiment_id", "variants")
    op.drop_table("variants")
    op.drop_table("experiments")
