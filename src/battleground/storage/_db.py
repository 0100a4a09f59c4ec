"""Engines for the registry database, with the Alembic migrations applied on first use.

SQLite (``sqlite:///path``) is the embedded default; ``postgresql://…`` URLs use psycopg 3. Engines are
cached per URL, so every :class:`~battleground.experiment.register.Registry` on the same database shares
one pool and the migrations run at most once per process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["HEAD_REVISION", "MIGRATIONS", "registry_engine", "sqlalchemy_url", "upgrade"]

HEAD_REVISION = "0015"
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same in every process that migrates this database.
_PG_MIGRATION_LOCK = 7_311_402_022

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy form of a battleground database URL (psycopg 3 for PostgreSQL)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _check_url(url: str) -> None:
    if not url.startswith(("sqlite:", "postgresql", "postgres://")):
        from battleground._redact import redact_url

        raise ValueError(
            f"registry URL must start with 'sqlite:///' or 'postgresql://', got {redact_url(url)!r}; "
            "pass a folder path to use the embedded SQLite registry"
        )


def registry_engine(url: str) -> Engine:
    """A cached engine for ``url`` whose schema is at the newest migration."""
    _check_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            upgrade(engine)
            _engines[url] = engine
        return engine


def _create_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, event

    if url.startswith("sqlite:"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Several processes may share the file: wait for the write lock instead of failing at once.
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    from battleground.storage._pg import ensure_database

    ensure_database(url)
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True)


def _current_revision(connection: Connection) -> str | None:
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def upgrade(engine: Engine) -> None:
    """Apply the Alembic migrations up to ``head`` (a no-op when the schema is already there).

    On PostgreSQL an advisory lock makes concurrent first uses from many processes wait for one another.
    """
    from sqlalchemy import text

    with engine.connect() as connection:
        if _current_revision(connection) == HEAD_REVISION:
            return
    from alembic import command
    from alembic.config import Config

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        if _current_revision(connection) == HEAD_REVISION:
            return
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def dispose_all() -> None:
    """Close every cached engine (tests and forked workers call this)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
