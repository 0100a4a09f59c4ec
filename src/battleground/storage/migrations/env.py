"""Alembic environment of the experiment registry.

battleground runs the migrations itself (:func:`battleground.storage._db.upgrade`) and hands the open
connection over in ``config.attributes["connection"]``; there is no ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context

from battleground.storage._models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when someone runs the alembic CLI by hand
    raise RuntimeError(
        "battleground applies its migrations itself: use battleground.storage.upgrade(url) "
        "(or just open a Registry), not the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
