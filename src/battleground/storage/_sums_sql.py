"""The SQL of metric sums: the sums of any number of metric definitions of one experiment from one scan.

One text serves DuckDB and PostgreSQL (``:name`` placeholders, see :func:`_events_sql.render`); the
semantics (which users count, what x, y and c are) are in ``_events_sql.py``'s docstring. The per-user
step is the expensive part (a GROUP BY over every user of the experiment) and is the same for every
metric, so it runs once: for each distinct event type ``i`` the per-user count ``n_i`` and sum ``s_i``
(empty value = 1), then per metric ``x`` (``n > 0`` for proportions, else ``s`` of the numerator) and
``y`` (``s`` of the denominator for ratios, else 0).

The generated text contains only placeholders and column aliases built from indices, never user input;
event types travel as parameters (``:et0``, ``:et1``, …).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MetricDefinition", "daily_sums_many_sql", "metric_sums_many_sql", "sums_many_params"]

# (kind, numerator event type, denominator event type or None)
MetricDefinition = tuple[str, str, "str | None"]

_ONE = "CAST(1 AS DOUBLE PRECISION)"
_ZERO = "CAST(0 AS DOUBLE PRECISION)"


def _event_types(metrics: Sequence[MetricDefinition]) -> list[str]:
    types: list[str] = []
    for kind, numerator, denominator in metrics:
        if kind not in ("proportion", "mean", "ratio"):
            raise ValueError(f"kind must be proportion, mean or ratio, got {kind!r}")
        for et in (numerator, denominator if kind == "ratio" else None):
            if et and et not in types:
                types.append(et)
    return types


def sums_many_params(metrics: Sequence[MetricDefinition]) -> dict[str, str]:
    """The ``:et<i>`` parameters of the generated queries."""
    return {f"et{i}": et for i, et in enumerate(_event_types(metrics))}


def _needed(metrics: Sequence[MetricDefinition]) -> tuple[set[int], set[int]]:
    """Which per-type counts n_i and sums s_i the metrics use (each aggregate costs a pass over the rows)."""
    index = {et: i for i, et in enumerate(_event_types(metrics))}
    counts, sums = set(), set()
    for kind, numerator, denominator in metrics:
        counts.add(index[numerator])
        if kind != "proportion":
            sums.add(index[numerator])
        if kind == "ratio" and denominator:
            sums.add(index[denominator])
    return counts, sums


def _per_user_columns(metrics: Sequence[MetricDefinition], *, prefix: str = "") -> str:
    counts, sums = _needed(metrics)
    cols = ["COUNT(*) FILTER (WHERE event_type = :exposure) AS exposed"]
    for i in range(len(_event_types(metrics))):
        if i in counts:
            cols.append(f"CAST(COUNT(*) FILTER (WHERE event_type = :et{i}) AS DOUBLE PRECISION) AS n{i}")
        if i in sums:
            cols.append(
                f"COALESCE(SUM(COALESCE(value, {_ONE})) FILTER (WHERE event_type = :et{i}), {_ZERO}) AS s{i}"
            )
    cols.append("MAX(covariate) AS c")
    return ",\n        ".join(cols)


def _carried(metrics: Sequence[MetricDefinition]) -> list[str]:
    """The per-user columns that later steps carry (n_i and s_i in use)."""
    counts, sums = _needed(metrics)
    out = []
    for i in range(len(_event_types(metrics))):
        if i in counts:
            out.append(f"n{i}")
        if i in sums:
            out.append(f"s{i}")
    return out


def _filter(metrics: Sequence[MetricDefinition]) -> str:
    types = ", ".join(f":et{i}" for i in range(len(_event_types(metrics))))
    return f"""
    FROM events
    WHERE experiment_id = :experiment
      AND ts >= :start AND ts < :end
      AND event_type IN (:exposure, {types})"""


def _xy(metrics: Sequence[MetricDefinition], *, n: str = "n{}", s: str = "s{}") -> list[tuple[str, str, str]]:
    """Per metric: (numerator count, x, y) expressions over the per-user columns."""
    index = {et: i for i, et in enumerate(_event_types(metrics))}
    out = []
    for kind, numerator, denominator in metrics:
        a = index[numerator]
        x = f"(CASE WHEN {n.format(a)} > 0 THEN {_ONE} ELSE {_ZERO} END)" if kind == "proportion" else s.format(a)
        y = s.format(index[denominator]) if kind == "ratio" and denominator else _ZERO
        out.append((n.format(a), x, y))
    return out


def metric_sums_many_sql(metrics: Sequence[MetricDefinition]) -> str:
    """One row per variant: users, then for each metric (events, Σx, Σx², Σy, Σy², Σxy, Σc, Σc², Σxc)."""
    if not metrics:
        raise ValueError("metric_sums_many_sql needs at least one metric")
    parts = []
    for j, (n, _x, _y) in enumerate(_xy(metrics)):
        terms = [n, f"x{j}", f"x{j} * x{j}", f"y{j}", f"y{j} * y{j}", f"x{j} * y{j}", "c", "c * c", f"x{j} * c"]
        parts.append(", ".join(f"SUM({term}) AS m{j}_{t}" for t, term in enumerate(terms)))
    xy = ", ".join(f"{x} AS x{j}, {y} AS y{j}" for j, (_n, x, y) in enumerate(_xy(metrics)))
    counts = ", ".join(sorted({n for n, _x, _y in _xy(metrics)}))
    return f"""
WITH per_user AS (
    SELECT variant, user_id,
        {_per_user_columns(metrics)}{_filter(metrics)}
    GROUP BY variant, user_id
),
v AS (
    SELECT variant, {counts}, {xy}, COALESCE(c, {_ZERO}) AS c
    FROM per_user
    WHERE exposed > 0
)
SELECT variant, COUNT(*) AS users,
       {", ".join(parts)}
FROM v
GROUP BY variant
ORDER BY variant
"""


def daily_sums_many_sql(metrics: Sequence[MetricDefinition]) -> str:
    """Per (day, variant): the change of users, then per metric the changes of the 9 sums (as DAILY_SUMS)."""
    if not metrics:
        raise ValueError("daily_sums_many_sql needs at least one metric")
    carried = _carried(metrics)
    ns = ", ".join(f"SUM(p.{c}) AS {c}" for c in carried)
    cum = ", ".join(f"SUM({c}) OVER w AS {c}" for c in carried)
    xy = ", ".join(f"{x} AS x{j}, {y} AS y{j}" for j, (_n, x, y) in enumerate(_xy(metrics)))
    counts = ", ".join(sorted({n for n, _x, _y in _xy(metrics)}))
    lag = "LAG({e}, 1, " + _ZERO + ") OVER u"
    deltas = []
    sums = []
    for j, (n, _x, _y) in enumerate(_xy(metrics)):
        terms = [n, f"x{j}", f"x{j} * x{j}", f"y{j}", f"y{j} * y{j}", f"x{j} * y{j}", "c", "c * c", f"x{j} * c"]
        for t, term in enumerate(terms):
            deltas.append(f"{term} - {lag.format(e=term)} AS d{j}_{t}")
            sums.append(f"SUM(d{j}_{t})")
    return f"""
WITH per_user_day AS (
    SELECT variant, user_id, CAST(date_trunc('day', ts) AS DATE) AS day,
        {_per_user_columns(metrics)}{_filter(metrics)}
    GROUP BY variant, user_id, CAST(date_trunc('day', ts) AS DATE)
),
first_exposure AS (
    SELECT variant, user_id, MIN(day) AS day0
    FROM per_user_day
    WHERE exposed > 0
    GROUP BY variant, user_id
),
effective AS (
    SELECT p.variant, p.user_id, CASE WHEN p.day > f.day0 THEN p.day ELSE f.day0 END AS day,
           {ns}, MAX(p.c) AS c
    FROM per_user_day p
    JOIN first_exposure f ON p.variant = f.variant AND p.user_id = f.user_id
    GROUP BY p.variant, p.user_id, CASE WHEN p.day > f.day0 THEN p.day ELSE f.day0 END
),
cumulative AS (
    SELECT variant, user_id, day, {cum},
           COALESCE(MAX(c) OVER w, {_ZERO}) AS c, ROW_NUMBER() OVER w AS k
    FROM effective
    WINDOW w AS (PARTITION BY variant, user_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
vals AS (
    SELECT variant, user_id, day, k, {counts}, {xy}, c FROM cumulative
),
deltas AS (
    SELECT variant, day, CASE WHEN k = 1 THEN 1 ELSE 0 END AS du,
           {", ".join(deltas)}
    FROM vals
    WINDOW u AS (PARTITION BY variant, user_id ORDER BY day)
)
SELECT day, variant, SUM(du), {", ".join(sums)}
FROM deltas
GROUP BY day, variant
ORDER BY day, variant
"""
