"""PostgreSQL helpers shared by the registry and the event store."""

from __future__ import annotations

import contextlib
import re

__all__ = ["TRANSIENT_SQLSTATES", "classify_error", "ensure_database", "is_transient", "psycopg_url", "sqlstate_of"]

# SQLSTATEs (or their prefixes) that mean "try again": the connection failed (class 08), the server is
# shutting down, restarting or not yet accepting connections (57P01-57P05), the transaction lost a race
# (40001 serialization failure, 40P01 deadlock) or the server has no connection slot free (53300).
# Every other code is permanent: bad data (22), a constraint (23), a program limit such as an index row
# too large (54), a permission denied or a missing table (42), a failed login (28), a missing
# database (3D), a full disk (53100) … re-sending the same batch cannot cure those.
TRANSIENT_SQLSTATES = ("08", "57P", "40001", "40P01", "53300")

_HINTS = {
    "22": "the batch holds a value the database cannot store; fix the data",
    "23": "the batch breaks a constraint of the events table; fix the data (or the constraint)",
    "54": "a value exceeds a database limit; send shorter values",
    "42501": "the database user lacks a privilege on the events table (or its schema); grant it, or "
             "connect as a user that has it",
    "42": "the database schema is not what battleground expects (a missing or changed table); run "
          "'battleground db upgrade', or point BATTLEGROUND_DATABASE_URL at the right database",
    "28": "the database refused the login; check the user and password of BATTLEGROUND_DATABASE_URL",
    "3D": "the database does not exist; create it or fix BATTLEGROUND_DATABASE_URL",
    "53": "the database server is out of a resource (disk, memory); its operator must free some",
    "25": "the transaction is read-only; connect to a primary server, not a replica",
}


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
        if sqlstate_of(exc) != "3D000":  # only a missing database is ours to create
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


# libpq reports a refused login as an OperationalError without a SQLSTATE; the server's FATAL text
# tells a permanent refusal (wrong role, password or database) from a transient one (server down).
_LOGIN_REFUSALS = (
    (re.compile(r'FATAL:\s+role "[^"]*" does not exist'), "28000"),
    (re.compile(r"FATAL:\s+(password|ident|peer|SCRAM|GSSAPI|SSPI|LDAP|RADIUS|PAM|cert)\S* authentication failed",
                re.IGNORECASE), "28P01"),
    (re.compile(r"FATAL:\s+no pg_hba\.conf entry"), "28000"),
    (re.compile(r'FATAL:\s+database "[^"]*" does not exist'), "3D000"),
    (re.compile(r'FATAL:\s+permission denied for database'), "42501"),
)


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, or of the psycopg error a SQLAlchemy error wraps; for a refused
    login, which libpq reports without one, the code the server's message stands for (``None``: the
    connection could not be made at all).

    Example:
        >>> import psycopg
        >>> sqlstate_of(psycopg.OperationalError('connection failed: FATAL:  role "x" does not exist'))
        '28000'
    """
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str) and code:
            return code
    text = str(getattr(exc, "orig", None) or exc)
    return next((code for pattern, code in _LOGIN_REFUSALS if pattern.search(text)), None)


def is_transient(exc: BaseException) -> bool:
    """Whether re-sending may succeed: a transient SQLSTATE (:data:`TRANSIENT_SQLSTATES`), or a
    connection-level failure without one (server down, connection refused or broken)."""
    code = sqlstate_of(exc)
    if code is None:
        import psycopg

        inner = getattr(exc, "orig", None) or exc
        return isinstance(inner, psycopg.OperationalError | psycopg.InterfaceError) or type(exc).__name__ in (
            "OperationalError", "InterfaceError", "TimeoutError")
    return code.startswith(TRANSIENT_SQLSTATES)


def classify_error(exc: BaseException, *, where: str, writing: bool) -> Exception:
    """The battleground error for a database failure at ``where`` (e.g. ``the event store (PostgreSQL at
    host:5432)``): :class:`~battleground.storage.events.StoreUnavailableError` (retry) when it is
    transient, else :class:`~battleground.storage.events.StoreRefusedError` (do not retry) with the
    SQLSTATE and a hint. Messages are redacted (no password, no path).

    Example:
        >>> import psycopg
        >>> classify_error(psycopg.errors.lookup("42501")("permission denied for table events"),
        ...                where="the event store", writing=True).status
        500
        >>> type(classify_error(psycopg.errors.lookup("57P01")("terminating connection"),
        ...                     where="the event store", writing=True)).__name__
        'StoreUnavailableError'
    """
    from battleground._redact import redact_text
    from battleground.storage.events import StoreRefusedError, StoreUnavailableError

    text = str(getattr(exc, "orig", None) or exc).strip()
    reason = redact_text(text.splitlines()[0][:300]) if text else type(exc).__name__
    code = sqlstate_of(exc)
    if is_transient(exc):
        what = (
            "this batch may not have been stored: re-send it once the server is back (ingest is "
            "idempotent, so re-sending never stores an event twice)" if writing
            else "retry once the server is back"
        )
        return StoreUnavailableError(f"{where} is unavailable ({reason}); {what}")
    hint = _HINTS.get(code or "") or _HINTS.get((code or "")[:2], "see the database server's log")
    done = "nothing of the batch was stored, and re-sending it will fail the same way" if writing \
        else "retrying will fail the same way"
    return StoreRefusedError(
        f"{where} refused the {'write' if writing else 'read'} (SQLSTATE {code or '?'}: {reason}); {done}: {hint}",
        sqlstate=code,
    )
