"""PostgreSQL helpers shared by the registry and the event store."""

from __future__ import annotations

import contextlib

__all__ = ["ensure_database", "psycopg_url"]


def psycopg_url(url: str) -> str:
    """A libpq connection string from a battleground/SQLAlchemy PostgreSQL URL."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if the server does not have it yet.

    This is what makes ``RegisterExperiment(client="127.0.0.1")`` work on a fresh server, the way an
    embedded SQLite file is created on first use. Any other connection failure is raised unchanged.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    dsn = psycopg_url(url)
    try:
        psycopg.connect(dsn, connect_timeout=10).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    params = conninfo_to_dict(dsn)
    name = str(params.get("dbname") or "")
    if not name:
        from battleground._redact import redact_url

        raise ValueError(f"the PostgreSQL URL {redact_url(url)!r} names no database; add '/battleground' to it")
    admin = make_conninfo(dsn, dbname="postgres")
    # Another process may have created it first.
    with (
        psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn,
        contextlib.suppress(psycopg.errors.DuplicateDatabase),
    ):
        conn.execute(f'CREATE DATABASE "{name}"')
