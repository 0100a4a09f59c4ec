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
    "DAILY_SUMS",
    "EXPOSURE",
    "METRIC_SUMS",
    "render",
    "schema",
]

EXPOSURE = "exposure"
COLUMNS = ("event_id", "experiment_id", "variant", "user_id", "event_type", "ts", "value", "covariate")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id {text} NOT NULL{primary_key},
    experiment_id INTEGER NOT NULL,
    variant {text} NOT NULL,
    user_id {text} NOT NULL,
    event_type {text} NOT NULL,
    ts TIMESTAMP NOT NULL,
    value DOUBLE PRECISION,
    covariate DOUBLE PRECISION
)
"""


def schema(backend: str) -> str:
    """The ``CREATE TABLE events`` statement of a backend (``"duckdb"`` or ``"postgresql"``).

    The columns are the same; PostgreSQL adds the primary key on ``event_id`` (what makes concurrent
    writers exact) and the byte-order ``C`` collation on text, so that sorting, grouping and the key's
    B-tree compare bytes as DuckDB does, without the cost of locale-aware comparison.
    """
    if backend == "duckdb":
        return _SCHEMA.format(text="VARCHAR", primary_key="")
    if backend == "postgresql":
        return _SCHEMA.format(text='VARCHAR COLLATE "C"', primary_key=" PRIMARY KEY")
    raise ValueError(f"backend must be 'duckdb' or 'postgresql', got {backend!r}")


_ONE = "CAST(1 AS DOUBLE PRECISION)"
_ZERO = "CAST(0 AS DOUBLE PRECISION)"

_FILTER = """
    FROM events
    WHERE experiment_id = :experiment
      AND ts >= :start AND ts < :end
      AND event_type IN (:exposure, :numerator, :denominator)
"""

_PER_USER_COLUMNS = f"""
        MAX(CASE WHEN event_type = :exposure THEN 1 ELSE 0 END) AS exposed,
        SUM(CASE WHEN event_type = :numerator THEN {_ONE} ELSE {_ZERO} END) AS n,
        SUM(CASE WHEN event_type = :numerator THEN COALESCE(value, {_ONE}) ELSE {_ZERO} END) AS s,
        SUM(CASE WHEN event_type = :denominator THEN COALESCE(value, {_ONE}) ELSE {_ZERO} END) AS d,
        MAX(covariate) AS c
"""

# x_u from the per-user numerator count n and sum s.
_X = f"CASE WHEN :proportion = 1 THEN (CASE WHEN n > 0 THEN {_ONE} ELSE {_ZERO} END) ELSE s END"

METRIC_SUMS = f"""
WITH per_user AS (
    SELECT variant, user_id,{_PER_USER_COLUMNS}{_FILTER}
    GROUP BY variant, user_id
),
v AS (
    SELECT variant, n, {_X} AS x, d AS y, COALESCE(c, {_ZERO}) AS c
    FROM per_user
    WHERE exposed = 1
)
SELECT variant, COUNT(*) AS users, SUM(n) AS events,
       SUM(x) AS sum_x, SUM(x * x) AS sum_x2,
       SUM(y) AS sum_y, SUM(y * y) AS sum_y2, SUM(x * y) AS sum_xy,
       SUM(c) AS sum_c, SUM(c * c) AS sum_c2, SUM(x * c) AS sum_xc
FROM v
GROUP BY variant
ORDER BY variant
"""

# Per (variant, day): the change of each sum on that day. Each user's value is cumulative over days;
# summing per-user day-to-day deltas keeps Σx² etc. exact, and Python accumulates the days.
DAILY_SUMS = f"""
WITH per_user_day AS (
    SELECT variant, user_id, CAST(date_trunc('day', ts) AS DATE) AS day,{_PER_USER_COLUMNS}{_FILTER}
    GROUP BY variant, user_id, CAST(date_trunc('day', ts) AS DATE)
),
first_exposure AS (
    SELECT variant, user_id, MIN(day) AS day0
    FROM per_user_day
    WHERE exposed = 1
    GROUP BY variant, user_id
),
effective AS (
    SELECT p.variant, p.user_id, CASE WHEN p.day > f.day0 THEN p.day ELSE f.day0 END AS day,
           SUM(p.n) AS n, SUM(p.s) AS s, SUM(p.d) AS d, MAX(p.c) AS c
    FROM per_user_day p
    JOIN first_exposure f ON p.variant = f.variant AND p.user_id = f.user_id
    GROUP BY p.variant, p.user_id, CASE WHEN p.day > f.day0 THEN p.day ELSE f.day0 END
),
cumulative AS (
    SELECT variant, user_id, day,
           SUM(n) OVER w AS n, SUM(s) OVER w AS s, SUM(d) OVER w AS y,
           COALESCE(MAX(c) OVER w, {_ZERO}) AS c, ROW_NUMBER() OVER w AS k
    FROM effective
    WINDOW w AS (PARTITION BY variant, user_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
vals AS (
    SELECT variant, user_id, day, k, n, {_X} AS x, y, c FROM cumulative
),
deltas AS (
    SELECT variant, day,
           CASE WHEN k = 1 THEN 1 ELSE 0 END AS du,
           n - LAG(n, 1, {_ZERO}) OVER u AS dn,
           x - LAG(x, 1, {_ZERO}) OVER u AS dx,
           x * x - LAG(x * x, 1, {_ZERO}) OVER u AS dx2,
           y - LAG(y, 1, {_ZERO}) OVER u AS dy,
           y * y - LAG(y * y, 1, {_ZERO}) OVER u AS dy2,
           x * y - LAG(x * y, 1, {_ZERO}) OVER u AS dxy,
           c - LAG(c, 1, {_ZERO}) OVER u AS dc,
           c * c - LAG(c * c, 1, {_ZERO}) OVER u AS dc2,
           x * c - LAG(x * c, 1, {_ZERO}) OVER u AS dxc
    FROM vals
    WINDOW u AS (PARTITION BY variant, user_id ORDER BY day)
)
SELECT day, variant, SUM(du), SUM(dn), SUM(dx), SUM(dx2), SUM(dy), SUM(dy2), SUM(dxy),
       SUM(dc), SUM(dc2), SUM(dxc)
FROM deltas
GROUP BY day, variant
ORDER BY day, variant
"""

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
