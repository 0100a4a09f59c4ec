"""The experiment's sequential design and planned MDE on its end conditions (issue 17).

``design``: NULL or "msprt" (the two-sided mixture SPRT), "one_sided" (gbstats' one-sided confidence
sequence), "obrien_fleming" or "pocock" (group-sequential, Lan–DeMets alpha spending).
``mde``: the planned minimum detectable effect (relative), for mid-experiment power.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite (the embedded registry) cannot ALTER a table in place
    with op.batch_alter_table("end_conditions") as batch:
        batch.add_column(sa.Column("design", sa.String(32), nullable=True))
        batch.add_column(sa.Column("mde", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("end_conditions") as batch:
        batch.drop_column("mde")
        batch.drop_column("design")
