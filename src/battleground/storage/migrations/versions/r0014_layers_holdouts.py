"""Experiments gain a project, a layer and its bucket range, a kind and a holdout link (issue 17).

``project``: the project an experiment belongs to (existing rows: "default"). ``layer``: the namespace
of mutually exclusive experiments (NULL: none), ``range_start``/``range_end``: the half-open range of the
layer's 10,000 buckets the experiment owns (for a holdout: the held-out buckets of its own namespace).
``kind``: "experiment" or "holdout". ``holdout_id``: the holdout the experiment was started behind
(NULL: none). Existing experiments keep assigning exactly as before.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite (the embedded registry) cannot ALTER a table in place
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("project", sa.String(200), nullable=False, server_default="default"))
        batch.add_column(sa.Column("layer", sa.String(200), nullable=True))
        batch.add_column(sa.Column("range_start", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("range_end", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="experiment"))
        batch.add_column(sa.Column("holdout_id", sa.Integer(), nullable=True))
    op.create_index("ix_experiments_layer", "experiments", ["layer"])
    op.create_index("ix_experiments_project", "experiments", ["project"])


def downgrade() -> None:
    op.drop_index("ix_experiments_project", table_name="experiments")
    op.drop_index("ix_experiments_layer", table_name="experiments")
    with op.batch_alter_table("experiments") as batch:
        for column in ("holdout_id", "kind", "range_end", "range_start", "layer", "project"):
            batch.drop_column(column)
