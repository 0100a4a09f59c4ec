"""The SQL of the event stores: one text for DuckDB and PostgreSQL.

Queries use ``:name`` placeholders; :func:`render` turns them into each driver's style (``$name`` for
DuckDB, ``%(name)s`` for psycopg). Only constructs both engines accept are used (CAST, CASE, COALESCE,
``date_trunc``, window functions with a named WINDOW), so the numbers cannot drift between backends.

Which users count: users with at least one exposure event (``event_type = 'exposure'``) of the
experiment in the window, in the variant that event names. For each such user (and metric):

* ``n_u``: number of numerator events; ``x_u``: 1 if ``n_u > 0`` else 0 for proportion metrics, else
  Σ value over numerator events (an empty value counts as 1, so a mean of events is a count);
* ``y_u``: Σ value (count when empty) of denominator events, for ratio metrics;
* ``c_u``: the user's pre-period covariate (largest non-empty ``covariate`` on the rows above), 0 if none.

Events are counted whether they happened before or after the exposure, as long as they are in the window;
in the daily (cumulative) series a user enters on the day of their first exposure, carrying their earlier
events with them, so the last day of the series equals the whole-window sums.
"""

from __future__ import annotations

import re

__all__ = [
    "COLUMNS",
    "CONTENT",
    "DUCKDB_VERSION",
    "EXPOSURE",
    "KEY",
    "PG_KEY_MIGRATION",
    "conflicts_sql",
    "render",
    "schema",
]

EXPOSURE = "exposure"
COLUMNS = ("event_id", "experiment_id", "variant", "user_id", "event_type", "ts", "value", "covariate")
# The idempotency key: an event id names one event *of one experiment* (ids are the sender's, and two
# experiments' senders may well both count from 1).
KEY = ("experiment_id", "event_id")
# What a re-sent id is compared on: identical content is a duplicate, anything else a conflict.
CONTENT = tuple(c for c in COLUMNS if c not in KEY)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id {text} NOT NULL,
    experiment_id INTEGER NOT NULL,
    variant {text} NOT NULL,
    user_id {text} NOT NULL,
    event_type {text} NOT NULL,
    ts TIMESTAMP NOT NULL,
    value DOUBLE PRECISION,
    covariate DOUBLE PRECISION{primary_key}
)
"""


def schema(backend: str) -> str:
    """The ``CREATE TABLE events`` statement of a backend (``"duckdb"`` or ``"postgresql"``).

    The columns are the same; PostgreSQL adds the primary key on ``(experiment_id, event_id)`` (what
    makes concurrent writers exact) and the byte-order ``C`` collation on text, so that sorting, grouping and the key's
    B-tree compare bytes as DuckDB does, without the cost of locale-aware comparison.
    """
    if backend == "duckdb":
        return _SCHEMA.format(text="VARCHAR", primary_key="")
    if backend == "postgresql":
        return _SCHEMA.format(text='VARCHAR COLLATE "C"', primary_key=f",\n    PRIMARY KEY ({', '.join(KEY)})")
    raise ValueError(f"backend must be 'duckdb' or 'postgresql', got {backend!r}")


# Stores written before the key included the experiment have PRIMARY KEY (event_id): replace it by the
# new key in place (rows are kept; ids were unique before, so they are unique per experiment too). Run by
# the event store on first use and by the registry's Alembic revision 0002 when both share a database.
PG_KEY_MIGRATION = f"""
DO $$
DECLARE old_key text;
BEGIN
    SELECT c.conname INTO old_key FROM pg_constraint c
    WHERE c.conrelid = to_regclass('events') AND c.contype = 'p' AND array_length(c.conkey, 1) = 1;
    IF old_key IS NOT NULL THEN
        EXECUTE format('ALTER TABLE events DROP CONSTRAINT %I', old_key);
        ALTER TABLE events ADD PRIMARY KEY ({", ".join(KEY)});
    END IF;
END $$
"""

# DuckDB stores record their layout version in this table; :data:`DUCKDB_VERSION` is the newest.
DUCKDB_VERSION = 2


def conflicts_sql(batch: str) -> str:
    """The number of rows of ``batch`` whose key is stored with other content (run after the insert:
    then a row's stored twin is either an earlier event or the row itself)."""
    on = " AND ".join(f"e.{c} = b.{c}" for c in KEY)
    differs = " OR ".join(f"e.{c} IS DISTINCT FROM b.{c}" for c in CONTENT)
    return f"SELECT COUNT(*) FROM {batch} b JOIN events e ON {on} WHERE {differs}"


# A quoted literal (left alone) or a ``:name`` placeholder (not ``::type`` casts).
_TOKEN = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_]\w*)")


def render(sql: str, style: str) -> str:
    """Turn ``:name`` placeholders into ``$name`` (``style="duckdb"``) or ``%(name)s`` (``"psycopg"``);
    text inside quotes is left as it is."""
    if style == "duckdb":
        return _TOKEN.sub(lambda m: m.group(0) if m.group(1) is None else f"${m.group(1)}", sql)
    if style == "psycopg":
        return _TOKEN.sub(lambda m: m.group(0) if m.group(1) is None else f"%({m.group(1)})s", sql.replace("%", "%%"))
    raise ValueError(f"style must be 'duckdb' or 'psycopg', got {style!r}")
