"""The SQL of the pruned incremental refresh: per-unit state at a cutoff, moved forward by recent events.

A *unit state* (one row per unit: a user, or a (user, variant) pair under ``multiple="keep"``) holds
what a unit's metric values are made of at a cutoff instant ``C``: its first exposure ``t0``, the
smallest and largest variant it was exposed to, the variant of its first exposure, the largest explicit
covariate, and the per-unit aggregates of :func:`_sums_sql._per_metric` (counts and sums of events in
the windows after ``t0``, and in the look-back before it). All of them add up (or take a MIN/MAX) over
events, so the state at a later instant is the state at ``C`` plus an aggregate over the events
*after* ``C`` only. The expressions are those of the metric-sums definition (``_sums_sql.py``), reused
as they are, so the two cannot drift apart.

What the queries read (``:since`` = ``:cutoff`` − the longest look-back):

* every event of the experiment in ``[:cutoff, :end)`` — a WHERE on the timestamp that the engine
  prunes (Parquet row groups, DuckDB zone maps);
* for units first exposed at or after ``:cutoff`` only, their events in ``[:since, :cutoff)`` of the
  look-back metrics' event types (the CUPED pre-period) and those carrying an explicit covariate;
* the cached state of the units with an event in ``[:cutoff, :end)``.

Exactness: a unit exposed before ``C`` has its ``t0`` and all its pre-exposure aggregates in the state
(they depend on events before ``t0 < C``), and an event after ``C`` moves only the window counts and
sums, decided against that ``t0`` — exact. A unit first exposed after ``C`` has all its events from
``t0 − look-back`` on read — exact, except an explicit ``covariate`` it carries on an event earlier than
``:since`` (a full scan takes the largest covariate of all of the unit's events), which the refresh
does not see; a covariate on the exposure row or later, the usual place, is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

from battleground.storage._sums_sql import (
    _ONE,
    _ZERO,
    DAILY_COLUMNS,
    MetricQuery,
    _Columns,
    _days,
    _event_types,
    _exposure,
    _per_metric,
    _shifts,
    _terms,
)

__all__ = ["active_sums_sql", "recent_events_sql", "state_sql", "state_sums_sql"]


def _lookback_types(metrics: Sequence[MetricQuery]) -> list[str]:
    out: list[str] = []
    for m in metrics:
        if _days(m.lookback_days):
            for et in (m.numerator, m.denominator if m.kind == "ratio" else None):
                if et and et not in out:
                    out.append(et)
    return out


def _on(a: str, b: str, keep: bool) -> str:
    return f"{a}.user_id = {b}.user_id" + (f" AND {a}.variant = {b}.variant" if keep else "")


def _least(a: str, b: str, fn: str) -> str:
    """LEAST/GREATEST of two values, either of which may be NULL (then the other)."""
    return f"COALESCE({fn}({a}, {b}), {a}, {b})"


def _types(metrics: Sequence[MetricQuery]) -> str:
    return ", ".join(f":et{i}" for i in range(len(_event_types(metrics))))


def _tail_where(metrics: Sequence[MetricQuery]) -> str:
    """The events after the cutoff that a step reads (a plain time range: the engine prunes it)."""
    return (f"experiment_id = :experiment AND ts >= :cutoff AND ts < :end "
            f"AND event_type IN (:exposure, {_types(metrics)})")


def _lookback_where(metrics: Sequence[MetricQuery]) -> str:
    """The events in ``[:since, :cutoff)`` a step reads for units first exposed after the cutoff (their
    CUPED pre-period, and explicit covariates); empty without look-backs."""
    index = {et: i for i, et in enumerate(_event_types(metrics))}
    pre_types = ", ".join(f":et{index[et]}" for et in _lookback_types(metrics))
    if not pre_types:
        return ""
    return (f"experiment_id = :experiment AND ts >= :since AND ts < :cutoff AND (event_type IN ({pre_types}) "
            f"OR (covariate IS NOT NULL AND event_type IN (:exposure, {_types(metrics)})))")


def recent_events_sql(metrics: Sequence[MetricQuery]) -> str:
    """Exactly the events a step over ``[:cutoff, :end)`` reads (:func:`state_sql` with an ``old`` state,
    :func:`active_sums_sql`): those after the cutoff, and the look-back of the units exposed after it.
    Engines that cannot read battleground's cached states (PostgreSQL, Spark, chdb, …) run this, a
    read-only query pruned by time, and the step runs on those rows beside the states."""
    cols = "experiment_id, variant, user_id, event_type, ts, value, covariate"
    sql = f"SELECT {cols} FROM events WHERE {_tail_where(metrics)}"
    look = _lookback_where(metrics)
    if look:
        sql += (f"\nUNION ALL\nSELECT {cols} FROM events WHERE {look} AND user_id IN (SELECT user_id FROM events "
                "WHERE experiment_id = :experiment AND event_type = :exposure AND ts >= :cutoff AND ts < :end "
                "AND ts >= :start)")
    return sql


def _merged_ctes(metrics: Sequence[MetricQuery], multiple: str, old: str | None, active: bool) -> tuple[str, list[str]]:
    """The CTEs up to ``merged`` (the state at ``:end`` of the units read) and the aggregate aliases."""
    _exposure(multiple)  # validates ``multiple``
    keep = multiple == "keep"
    key = "user_id, variant" if keep else "user_id"
    cols = _Columns()
    _per_metric(metrics, cols)
    aliases = list(cols.exprs.values())
    aggregates = ",\n        ".join(f"{expr} AS {alias}" for expr, alias in cols.exprs.items())
    state_cols = f"{key}, t0, v_min, v_max, fv, cg, " + ", ".join(aliases)
    if old is None:  # no state yet: an empty relation of the state's shape
        old_rel = (f"SELECT {key}, ts AS t0, variant AS v_min, variant AS v_max, variant AS fv, covariate AS cg, "
                   + ", ".join(f"{_ZERO} AS {a}" for a in aliases) + " FROM events WHERE 1 = 0")
    else:
        old_rel = f"SELECT {state_cols} FROM {old}"
    if active:
        old_rel = f"SELECT * FROM ({old_rel}) o0 WHERE user_id IN (SELECT user_id FROM act)"
    look = _lookback_where(metrics)
    # the look-back of units first exposed after the cutoff (and their explicit covariates then)
    pre = f"""
    UNION ALL
    SELECT user_id, variant, event_type, ts, value, covariate FROM events
    WHERE {look} AND user_id IN (SELECT user_id FROM fresh)""" if look else ""
    o_aggs = ", ".join(f"o.{a} AS o_{a}" for a in aliases)
    sums = ",\n           ".join(f"COALESCE(u.o_{a}, {_ZERO}) + COALESCE(g.{a}, {_ZERO}) AS {a}" for a in aliases)
    ctes = f"""
WITH tail AS (
    SELECT user_id, variant, event_type, ts, value, covariate FROM events
    WHERE {_tail_where(metrics)}
),
act AS (SELECT DISTINCT user_id FROM tail),
fx AS (
    SELECT {key}, MIN(ts) AS t0 FROM tail WHERE event_type = :exposure AND ts >= :start GROUP BY {key}
),
fresh AS MATERIALIZED (
    SELECT {", ".join(f"t.{c.strip()} AS {c.strip()}" for c in key.split(","))}, fx.t0 AS t0,
           MIN(t.variant) AS v_min, MAX(t.variant) AS v_max,
           MIN(t.variant) FILTER (WHERE t.ts = fx.t0) AS fv
    FROM tail t JOIN fx ON {_on("t", "fx", keep)}
    WHERE t.event_type = :exposure AND t.ts >= :start
    GROUP BY {", ".join(f"t.{c.strip()}" for c in key.split(","))}, fx.t0
),
old_units AS MATERIALIZED ({old_rel}),
units AS MATERIALIZED (
    SELECT COALESCE(o.user_id, f.user_id) AS user_id,{" COALESCE(o.variant, f.variant) AS variant," if keep else ""}
           COALESCE(o.t0, f.t0) AS t0, {_least("o.v_min", "f.v_min", "LEAST")} AS v_min,
           {_least("o.v_max", "f.v_max", "GREATEST")} AS v_max, COALESCE(o.fv, f.fv) AS fv,
           o.user_id IS NULL AS is_new, o.cg AS o_cg, {o_aggs}
    FROM old_units o FULL JOIN fresh f ON {_on("o", "f", keep)}
),
ev AS (
    SELECT * FROM tail{pre}
),
agg AS (
    SELECT {", ".join(f"x.{c.strip()} AS {c.strip()}" for c in key.split(","))}, MAX(e.covariate) AS cg,
        {aggregates}
    FROM units x JOIN ev e ON {_on("e", "x", keep)}
    WHERE x.is_new OR e.ts >= :cutoff
    GROUP BY {", ".join(f"x.{c.strip()}" for c in key.split(","))}
),
merged AS (
    SELECT {", ".join(f"u.{c.strip()} AS {c.strip()}" for c in key.split(","))}, u.t0, u.v_min, u.v_max, u.fv,
           {_least("u.o_cg", "g.cg", "GREATEST")} AS cg,
           {sums}
    FROM units u LEFT JOIN agg g ON {_on("g", "u", keep)}
)"""
    return ctes, aliases


def state_sql(metrics: Sequence[MetricQuery], multiple: str = "exclude", old: str | None = None) -> str:
    """The unit states at ``:end``: ``old`` (a FROM item holding the states at ``:cutoff``; ``None``: no
    state, then give ``:cutoff`` = ``:start`` and ``:since`` = ``:scan_start`` for a first full read)
    moved forward by the events after ``:cutoff``. One row per unit exposed in ``[:start, :end)``."""
    ctes, aliases = _merged_ctes(metrics, multiple, old, active=False)
    key = "user_id, variant" if multiple == "keep" else "user_id"
    return f"{ctes}\nSELECT {key}, t0, v_min, v_max, fv, cg, {', '.join(aliases)} FROM merged\n"


def _values_of(metrics: Sequence[MetricQuery], multiple: str, relation: str, tag: str) -> str:
    """Per unit of ``relation`` (unit states): its arm ``grp``, the flags ``multi`` and ``wu`` and per
    metric ``n, x, y, c, e`` — the rules of :func:`_sums_sql.metric_sums_many_sql`."""
    cols = _Columns()
    per = _per_metric(metrics, cols)
    if multiple == "keep":
        flags = (f"(COUNT(*) OVER (PARTITION BY user_id)) > 1 AS multi, "
                 f"{_ONE} / CAST(COUNT(*) OVER (PARTITION BY user_id) AS DOUBLE PRECISION) AS wu")
        grp = "variant"
    else:
        flags = f"v_min <> v_max AS multi, {_ONE} AS wu"
        grp = "fv" if multiple == "first" else "CASE WHEN multi THEN NULL ELSE v_min END"
    vals = ", ".join(f"{e['n']} AS n{j}, {e['x']} AS x{j}, {e['y']} AS y{j}, {e['c']} AS c{j}, {e['e']} AS e{j}"
                     for j, e in enumerate(per))
    return (f"SELECT '{tag}' AS tag, {grp} AS grp, multi, wu, {vals}\n"
            f"    FROM (SELECT *, {flags} FROM {relation}) s")


def _fixed_shifts(n: int) -> str:
    return "SELECT " + ", ".join(f"CAST(:kx{j} AS DOUBLE PRECISION) AS kx{j}, CAST(:ky{j} AS DOUBLE PRECISION) "
                                 f"AS ky{j}, CAST(:kc{j} AS DOUBLE PRECISION) AS kc{j}" for j in range(n))


def _arm_sums(metrics: Sequence[MetricQuery], shifts: bool) -> str:
    """The per (tag, arm) sums of ``vals`` around ``k``: HEAD columns, then ``m<j>_<DAILY_COLUMNS>``
    (and the shifts ``m<j>_shift*`` when ``shifts``)."""
    cols = _Columns()
    per = _per_metric(metrics, cols)
    names = [*DAILY_COLUMNS, *(("shift", "shift_y", "shift_c") if shifts else ())]
    outputs = ",\n       ".join(f"{_terms(j, e)[c]} AS m{j}_{c}" for j, e in enumerate(per) for c in names)
    return f"""SELECT tag, grp AS variant, COUNT(*) AS users, SUM(wu) AS exposed_users,
       SUM(CASE WHEN multi THEN wu ELSE {_ZERO} END) AS multiple_users,
       {outputs}
FROM vals CROSS JOIN k
GROUP BY tag, grp
ORDER BY tag, grp
"""


def state_sums_sql(metrics: Sequence[MetricQuery], multiple: str, state: str, *, fixed_shifts: bool) -> str:
    """The per-arm sums of the unit states in ``state`` (a FROM item), around the means (then the shifts
    are columns ``m<j>_shift*`` of the result) or the fixed shifts ``:kx<j>``, ``:ky<j>``, ``:kc<j>``."""
    k = _fixed_shifts(len(metrics)) if fixed_shifts else _shifts(
        [{"proportion": str(m.kind == "proportion"), "ratio": str(m.kind == "ratio")} for m in metrics], "vals")
    return f"""WITH vals AS MATERIALIZED (
    {_values_of(metrics, multiple, state, "new")}
),
k AS MATERIALIZED ({k})
{_arm_sums(metrics, shifts=True)}"""


def active_sums_sql(metrics: Sequence[MetricQuery], multiple: str, old: str) -> str:
    """Per arm, tagged ``old`` and ``new``: the sums (around the fixed shifts) of the units with an event
    in ``[:cutoff, :end)``, from their states at ``:cutoff`` (``old``, a FROM item) and at ``:end``. The
    sums at ``:end`` are those at ``:cutoff`` minus the ``old`` rows plus the ``new`` ones."""
    ctes, _ = _merged_ctes(metrics, multiple, old, active=True)
    return f"""{ctes},
vals AS (
    {_values_of(metrics, multiple, "merged", "new")}
    UNION ALL
    {_values_of(metrics, multiple, "old_units", "old")}
),
k AS MATERIALIZED ({_fixed_shifts(len(metrics))})
{_arm_sums(metrics, shifts=False)}"""
