"""Events are keyed on (experiment_id, event_id), not on event_id alone.

The event store migrates its own table when it is first opened; this revision does the same for a
PostgreSQL registry that shares its database with the event store (the default), so that running the
registry's migrations leaves no old key behind. Other databases have no ``events`` table here: a no-op.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from battleground.storage._events_sql import PG_KEY_MIGRATION

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_KEY_MIGRATION)


def downgrade() -> None:  # pragma: no cover - ids may repeat across experiments by now
    raise NotImplementedError("events keyed per experiment cannot go back to one global key")
