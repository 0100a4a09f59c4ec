"""The SQL of metric sums: the sums of any number of metric definitions of one experiment from one scan.

One text serves DuckDB and PostgreSQL (``:name`` placeholders, see :func:`_events_sql.render`). What the
numbers mean (the rules GrowthBook and Eppo follow):

* **Who counts.** A user counts from their *first exposure* in the window ``[start, end)``, in the
  variant it named. A user exposed to more than one variant is a data-quality problem; ``multiple``
  says what to do: ``"exclude"`` (default) leaves them out of every arm, ``"first"`` keeps them in
  the variant of their first exposure, ``"keep"`` counts them in each variant they saw (the old rule;
  each (user, variant) pair is then a unit, from that variant's first exposure). Either way the query
  reports how many users were exposed and how many of them saw more than one variant.
* **Which events.** For a user with first exposure ``t0`` a metric counts the events in
  ``[t0, t0 + window)`` (``window`` per metric; none: up to ``end``). Events before the exposure never
  count toward the metric.
* **What x, y and c are.** ``x_u``: 1 if the user has a numerator event (proportion), else Σ value of
  numerator events (an empty value counts as 1, so a mean of events is a count); ``y_u``: the same Σ
  over denominator events (ratio metrics); ``c_u``: the CUPED covariate, the same metric's numerator over
  ``[t0 - lookback, t0)`` (1/0 for proportions), unless the user's rows carry an explicit ``covariate``
  (then the largest one). Lookback events may lie before ``start``.
* **Shifted sums.** Every Σ is taken around a per-metric shift, Σ(x − kx), Σ(x − kx)², Σ(x − kx)(y − ky)
  …, with kx, ky, kc the means of x, y and c over the users analysed (computed in the same query; 0 for
  proportions, whose 0/1 values lose nothing). Raw Σx² of values near 1e8 keep no digit of a variance
  of 1; the shifted sums keep all of them.

The per-user step (a GROUP BY over every user of the experiment, joined to their first exposure) is the
expensive part and is shared by all metrics: per metric only the aggregates it needs, deduplicated
(two metrics on the same events share them). Output columns are named in :data:`HEAD_COLUMNS` and
:data:`METRIC_COLUMNS`, which the decoder in ``events.py`` reads by the same names.

The generated text contains only placeholders and aliases built from indices, never user input; event
types, windows and bounds travel as parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEAD_COLUMNS",
    "METRIC_COLUMNS",
    "MULTIPLE_EXPOSURES",
    "MetricDefinition",
    "MetricQuery",
    "as_query",
    "covariate_columns",
    "covariate_count",
    "daily_sums_many_sql",
    "metric_sums_many_sql",
    "per_user_values_sql",
    "sums_many_params",
]

# (kind, numerator event type, denominator event type or None), the short form of a MetricQuery.
MetricDefinition = tuple[str, str, "str | None"]
MULTIPLE_EXPOSURES = ("exclude", "first", "keep")

# The per-variant head of each result row, then per metric these columns (in this order): the decoder
# reads rows by these names, so the SQL and the decoder cannot drift apart.
HEAD_COLUMNS = ("variant", "users", "exposed_users", "multiple_users")
METRIC_COLUMNS = (
    "events", "sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_c", "sum_c2", "sum_xc",
    "shift", "shift_y", "shift_c",
    # ratio CUPED (issue 17): e = the denominator over the lookback, its sums around shift_y
    "sum_e", "sum_e2", "sum_xe", "sum_ye", "sum_ce", "sum_yc",
    # winsorisation (issue 17): the caps applied to x and c (NULL: not capped)
    "cap_x", "cap_c",
)
# Of those, the ones a daily series accumulates (the shifts and caps are the same every day).
DAILY_COLUMNS = METRIC_COLUMNS[:9] + METRIC_COLUMNS[12:18]

_ONE = "CAST(1 AS DOUBLE PRECISION)"
_ZERO = "CAST(0 AS DOUBLE PRECISION)"
KINDS = ("proportion", "mean", "ratio")


@dataclass(frozen=True)
class MetricQuery:
    """One metric as the store computes it.

    Attributes:
        kind: ``proportion``, ``mean`` or ``ratio``.
        numerator, denominator: event types (``denominator`` for ratios only).
        window_days: count a user's events in ``[first exposure, + window_days)``; ``None``: no limit.
        lookback_days: the CUPED covariate covers ``[first exposure - lookback_days, first exposure)``;
            ``0`` or ``None``: no pre-period (the covariate is only an explicit ``covariate``, else 0).
        cap_quantile: winsorise: cap each user's x (the numerator) at this quantile of x over the
            analysed users (linear interpolation, numpy's default), and the covariate c at the same
            quantile of c; in (0, 1), e.g. 0.999 (Statsig's suggestion). ``None``: no quantile cap.
        cap_value: winsorise at this fixed value instead (x and c); > 0. ``None``: no fixed cap.
    """

    kind: str
    numerator: str
    denominator: str | None = None
    window_days: float | None = None
    lookback_days: float | None = 14.0
    cap_quantile: float | None = None
    cap_value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be proportion, mean or ratio, got {self.kind!r}")
        if self.kind == "ratio" and not self.denominator:
            raise ValueError(f"a ratio metric needs a denominator event type, got {self.denominator!r}")
        for name in ("window_days", "lookback_days"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and 0 <= v <= 3650):
                raise ValueError(f"{name} must be a number of days in [0, 3650] or None, got {v!r}")
        if self.window_days == 0:
            raise ValueError("window_days must be > 0 (or None for no window), got 0")
        if self.kind != "ratio":
            object.__setattr__(self, "denominator", None)
        check_cap(self.kind, self.cap_quantile, self.cap_value)

    @property
    def capped(self) -> bool:
        """Whether x and c are winsorised."""
        return self.cap_quantile is not None or self.cap_value is not None


def check_cap(kind: str, cap_quantile: float | None, cap_value: float | None, where: str = "") -> None:
    """Raise a clear ``ValueError`` for an impossible winsorisation setting."""
    q, v = cap_quantile, cap_value
    if q is not None and not (isinstance(q, int | float) and not isinstance(q, bool) and 0 < q < 1):
        raise ValueError(f"{where}cap_quantile must be a quantile in (0, 1) such as 0.999, or None, got {q!r}")
    if v is not None and not (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < float("inf")):
        raise ValueError(f"{where}cap_value must be a finite number > 0, or None, got {v!r}")
    if q is not None and v is not None:
        raise ValueError(f"{where}give cap_quantile or cap_value, not both (got {q!r} and {v!r})")
    if kind == "proportion" and (q is not None or v is not None):
        raise ValueError(f"{where}a proportion metric is 0/1 per user and cannot be capped; drop cap_quantile/cap_value")


def as_query(metric: MetricQuery | Sequence[Any]) -> MetricQuery:
    """A :class:`MetricQuery` from itself or from ``(kind, numerator, denominator[, window, lookback])``."""
    if isinstance(metric, MetricQuery):
        return metric
    kind, numerator, denominator, *rest = metric
    return MetricQuery(str(kind), str(numerator), denominator, *rest)


def _event_types(metrics: Sequence[MetricQuery]) -> list[str]:
    types: list[str] = []
    for m in metrics:
        for et in (m.numerator, m.denominator):
            if et and et not in types:
                types.append(et)
    return types


def _days(value: float | None) -> dt.timedelta | None:
    return None if not value else dt.timedelta(days=float(value))


def sums_many_params(metrics: Sequence[MetricQuery]) -> dict[str, Any]:
    """The parameters of the generated queries other than the experiment and the bounds: event types
    ``:et<i>``, windows ``:w<j>`` and lookbacks ``:lb<j>`` (as intervals)."""
    out: dict[str, Any] = {f"et{i}": et for i, et in enumerate(_event_types(metrics))}
    for j, m in enumerate(metrics):
        if _days(m.window_days):
            out[f"w{j}"] = _days(m.window_days)
        if _days(m.lookback_days):
            out[f"lb{j}"] = _days(m.lookback_days)
        if m.cap_quantile is not None:
            out[f"cq{j}"] = float(m.cap_quantile)
        if m.cap_value is not None:
            out[f"cv{j}"] = float(m.cap_value)
    return out


def max_lookback(metrics: Sequence[MetricQuery]) -> dt.timedelta:
    """How far before ``start`` the scan must reach for the covariates."""
    return max((_days(m.lookback_days) or dt.timedelta(0) for m in metrics), default=dt.timedelta(0))


class _Columns:
    """The per-user aggregates in use, deduplicated by their expression."""

    def __init__(self) -> None:
        self.exprs: dict[str, str] = {}

    def add(self, expr: str) -> str:
        if expr not in self.exprs:
            self.exprs[expr] = f"a{len(self.exprs)}"
        return self.exprs[expr]


def _per_metric(metrics: Sequence[MetricQuery], cols: _Columns) -> list[dict[str, str]]:
    """Per metric: the per-user expressions n (numerator events), x, y and c over the aggregates."""
    index = {et: i for i, et in enumerate(_event_types(metrics))}
    out = []
    for j, m in enumerate(metrics):
        until = f" AND e.ts < x.t0 + :w{j}" if _days(m.window_days) else ""
        after = f"e.ts >= x.t0{until}"

        def count(et: str, when: str) -> str:
            return cols.add(f"CAST(COUNT(*) FILTER (WHERE e.event_type = :et{index[et]} AND {when}) "
                            "AS DOUBLE PRECISION)")

        def total(et: str, when: str) -> str:
            return cols.add(f"COALESCE(SUM(COALESCE(e.value, {_ONE})) FILTER (WHERE e.event_type = "
                            f":et{index[et]} AND {when}), {_ZERO})")

        parts = {"n": count(m.numerator, after),
                 "s": None if m.kind == "proportion" else total(m.numerator, after),
                 "d": total(m.denominator, after) if m.kind == "ratio" and m.denominator else None,
                 "p": None, "q": None}
        if _days(m.lookback_days):
            before = f"e.ts >= x.t0 - :lb{j} AND e.ts < x.t0"
            parts["p"] = count(m.numerator, before) if m.kind == "proportion" else total(m.numerator, before)
            if m.kind == "ratio" and m.denominator:  # the pre-period denominator (ratio CUPED)
                parts["q"] = total(m.denominator, before)
        out.append(_values(m, parts))
    return out


def _values(m: MetricQuery, parts: dict[str, str | None]) -> dict[str, str]:
    """Per-user expressions n, x, y, c of a metric from its parts (numerator count ``n`` and total ``s``,
    denominator total ``d``, pre-exposure numerator ``p``; expressions or aliases)."""
    n = str(parts["n"])
    x = f"(CASE WHEN {n} > 0 THEN {_ONE} ELSE {_ZERO} END)" if m.kind == "proportion" else str(parts["s"])
    y = str(parts["d"]) if parts["d"] else _ZERO
    pre = parts["p"]
    if pre is None:
        pre = _ZERO
    elif m.kind == "proportion":
        pre = f"(CASE WHEN {pre} > 0 THEN {_ONE} ELSE {_ZERO} END)"
    return {"n": n, "x": x, "y": y, "c": f"COALESCE(cg, {pre})", "ratio": str(m.kind == "ratio"),
            "proportion": str(m.kind == "proportion"), **{f"part_{k}": v or "" for k, v in parts.items()},
            "e": str(parts.get("q") or _ZERO), "capped": str(m.capped)}


def _exposure(multiple: str) -> str:
    """Per unit (user, or (user, variant) for ``keep``): variant, first exposure t0, whether the user saw
    several variants (``multi``) and the unit's weight in the count of users (``wu``)."""
    where = "experiment_id = :experiment AND event_type = :exposure AND ts >= :start AND ts < :end"
    if multiple == "exclude":
        return f"""
    SELECT user_id, MIN(variant) AS variant, MIN(ts) AS t0, MIN(variant) <> MAX(variant) AS multi,
           {_ONE} AS wu
    FROM events WHERE {where}
    GROUP BY user_id"""
    if multiple == "first":
        return f"""
    SELECT user_id, variant, t0, multi, {_ONE} AS wu FROM (
        SELECT user_id, variant, ts AS t0,
               (MIN(variant) OVER p) <> (MAX(variant) OVER p) AS multi,
               ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts, variant) AS k
        FROM events WHERE {where}
        WINDOW p AS (PARTITION BY user_id)
    ) f WHERE k = 1"""
    if multiple == "keep":
        return f"""
    SELECT user_id, variant, t0, (COUNT(*) OVER p) > 1 AS multi,
           {_ONE} / CAST(COUNT(*) OVER p AS DOUBLE PRECISION) AS wu
    FROM (SELECT user_id, variant, MIN(ts) AS t0 FROM events WHERE {where} GROUP BY user_id, variant) g
    WINDOW p AS (PARTITION BY user_id)"""
    raise ValueError(f"multiple_exposures must be one of {list(MULTIPLE_EXPOSURES)}, got {multiple!r}")


def _scan(metrics: Sequence[MetricQuery], multiple: str, units: str = "exposure") -> str:
    types = ", ".join(f":et{i}" for i in range(len(_event_types(metrics))))
    join = "e.user_id = x.user_id" + (" AND e.variant = x.variant" if multiple == "keep" else "")
    return f"""
    FROM {units} x JOIN events e ON {join}
    WHERE e.experiment_id = :experiment
      AND e.ts >= :scan_start AND e.ts < :end
      AND e.event_type IN (:exposure, {types})"""


def _unit_join(alias: str, multiple: str) -> str:
    """Back from per-unit aggregates to their exposure row (grouping by the unit's key alone, and joining
    variant and flags afterwards, keeps the big GROUP BY on one key)."""
    return f"{alias}.user_id = x.user_id" + (f" AND {alias}.variant = x.variant" if multiple == "keep" else "")


def _group(multiple: str, of: str = "") -> str:
    """The arm a unit is analysed in: NULL for users excluded for seeing several variants."""
    return f"CASE WHEN {of}multi THEN NULL ELSE {of}variant END" if multiple == "exclude" else f"{of}variant"


def _terms(j: int, e: dict[str, str]) -> dict[str, str]:
    """The METRIC_COLUMNS of metric j over the per-user values x{j}, y{j}, c{j} and shifts k*{j}."""
    dx, dy, dc = f"(x{j} - kx{j})", f"(y{j} - ky{j})", f"(c{j} - kc{j})"
    ratio = e["ratio"] == "True"
    return {
        "events": f"SUM(n{j})", "sum_x": f"SUM({dx})", "sum_x2": f"SUM({dx} * {dx})",
        "sum_y": f"SUM({dy})" if ratio else _ZERO, "sum_y2": f"SUM({dy} * {dy})" if ratio else _ZERO,
        "sum_xy": f"SUM({dx} * {dy})" if ratio else _ZERO, "sum_c": f"SUM({dc})",
        "sum_c2": f"SUM({dc} * {dc})", "sum_xc": f"SUM({dx} * {dc})",
        "shift": f"MIN(kx{j})", "shift_y": f"MIN(ky{j})", "shift_c": f"MIN(kc{j})",
        **_ratio_cuped_terms(j, ratio),
        "cap_x": f"MIN(cx{j})" if e.get("capped") == "True" else "CAST(NULL AS DOUBLE PRECISION)",
        "cap_c": f"MIN(cc{j})" if e.get("capped") == "True" else "CAST(NULL AS DOUBLE PRECISION)",
    }


def _ratio_cuped_terms(j: int, ratio: bool) -> dict[str, str]:
    """The sums of the pre-period denominator e (around the denominator's shift ky) with x, y, c."""
    dx, dy, dc, de = f"(x{j} - kx{j})", f"(y{j} - ky{j})", f"(c{j} - kc{j})", f"(e{j} - ky{j})"
    if not ratio:
        return dict.fromkeys(("sum_e", "sum_e2", "sum_xe", "sum_ye", "sum_ce", "sum_yc"), _ZERO)
    return {"sum_e": f"SUM({de})", "sum_e2": f"SUM({de} * {de})", "sum_xe": f"SUM({dx} * {de})",
            "sum_ye": f"SUM({dy} * {de})", "sum_ce": f"SUM({dc} * {de})", "sum_yc": f"SUM({dy} * {dc})"}


def _capping(metrics: Sequence[MetricQuery], base: str, final: str, carry: str) -> str:
    """CTEs that winsorise: per capped metric j the caps ``cx<j>`` (of x) and ``cc<j>`` (of c), then
    ``<base>`` again with x and c capped (``CASE WHEN x > cap``: a NULL cap, no users, leaves x).

    ``final`` is a query over ``<base>_raw`` giving each analysed unit's final values (the quantile is
    over those); ``carry`` the columns other than x, c passed through. A quantile is numpy's default
    (linear between the order statistics at 1 + q(n − 1)), written with ROW_NUMBER so that every engine
    computes it the same way."""
    ctes: list[str] = []
    caps: list[str] = []
    cols: list[str] = [carry]
    for j, m in enumerate(metrics):
        for v, cap in ((f"x{j}", f"cx{j}"), (f"c{j}", f"cc{j}")):
            if m.capped:
                cols.append(f"CASE WHEN {v} > {cap} THEN {cap} ELSE {v} END AS {v}, {cap}")
            else:
                cols.append(v)
            if m.cap_value is not None:
                caps.append(f"CAST(:cv{j} AS DOUBLE PRECISION) AS {cap}")
            elif m.cap_quantile is not None:
                ctes.append(f"""q_{cap} AS (
    SELECT v, ROW_NUMBER() OVER (ORDER BY v) AS r, 1 + :cq{j} * (COUNT(*) OVER () - 1) AS pos
    FROM (SELECT {v} AS v FROM ({final}) f0) f1
)""")
                lo = "MAX(CASE WHEN r = FLOOR(pos) THEN v END)"
                hi = f"COALESCE(MAX(CASE WHEN r = FLOOR(pos) + 1 THEN v END), {lo})"
                caps.append(f"(SELECT {lo} + (MIN(pos) - FLOOR(MIN(pos))) * ({hi} - {lo}) FROM q_{cap}) AS {cap}")
    ctes.append(f"caps AS MATERIALIZED (SELECT {', '.join(caps)})")
    ctes.append(f"{base} AS MATERIALIZED (SELECT {', '.join(cols)} FROM {base}_raw CROSS JOIN caps)")
    return ",\n" + ",\n".join(ctes)


def _shifts(per_metric: list[dict[str, str]], source: str, extra: Sequence[str] = (), by: str = "") -> str:
    """One row of per-metric shifts: the means of x, y and c over the analysed units of ``source`` (and
    the ``extra`` columns, over the same units; one row per value of ``by`` when given, e.g. per
    experiment of a batch)."""
    cols = list(extra)
    for j, e in enumerate(per_metric):
        kx = _ZERO if e["proportion"] == "True" else f"COALESCE(AVG(x{j}), {_ZERO})"
        ky = f"COALESCE(AVG(y{j}), {_ZERO})" if e["ratio"] == "True" else _ZERO
        cols.append(f"{kx} AS kx{j}, {ky} AS ky{j}, COALESCE(AVG(c{j}), {_ZERO}) AS kc{j}")
    if by:
        return f"SELECT {by}, {', '.join(cols)} FROM {source} WHERE grp IS NOT NULL GROUP BY {by}"
    return f"SELECT {', '.join(cols)} FROM {source} WHERE grp IS NOT NULL"


def covariate_columns(n_metrics: int, attributes: int) -> tuple[str, ...]:
    """The CUPED++ columns of :func:`metric_sums_many_sql` (``covariates=attributes``), after the metric
    and strata columns: per covariate a (see :func:`covariate_count`) ``pp_z<a>`` = Σz'_a and ``pp_kz<a>``
    its shift, then ``pp_zz<a>_<b>`` = Σz'_a·z'_b (a ≤ b), then ``pp_yz<j>_<a>`` = Σx'_j·z'_a (x' around
    the metric's own shift, so Σx' and Σx'² are the metric's ``sum_x`` and ``sum_x2``)."""
    p = covariate_count(n_metrics, attributes)
    return (*(f"pp_{c}{a}" for a in range(p) for c in ("z", "kz")),
            *(f"pp_zz{a}_{b}" for a in range(p) for b in range(a, p)),
            *(f"pp_yz{j}_{a}" for j in range(n_metrics) for a in range(p)))


def covariate_count(n_metrics: int, attributes: int) -> int:
    """How many CUPED++ covariates: every metric's pre-period value ``c<j>``, then per attribute its
    value (0 when missing) and a missing flag."""
    return n_metrics + 2 * attributes


def _attribute_ctes(name: str, param: str, count: int, units: str = "units") -> str:
    """Per declared attribute i a CTE ``<name><i>`` of each user's value ``st``: the smallest ``value`` of
    their events of type ``:<param><i>`` logged at or before their first exposure (an attribute logged
    later could be moved by the treatment, so it does not count); ``units`` has ``user_id`` and ``t0``."""
    return "".join(f"""{name}{i} AS (
    SELECT a.user_id, MIN(a.value) AS st
    FROM events a JOIN {units} x ON a.user_id = x.user_id
    WHERE a.experiment_id = :experiment AND a.event_type = :{param}{i} AND a.ts <= x.t0 AND a.ts < :end
    GROUP BY a.user_id
),
""" for i in range(count))


def _covariate_terms(n_metrics: int, attributes: int) -> tuple[list[str], list[str]]:
    """(the shifts of the attributes' covariates, for ``k``; the CUPED++ output columns ``SUM(per-unit
    term) AS column`` or ``MIN(shift) AS column``). The metrics' pre-period values keep their own shifts
    ``kc<j>``."""
    z = [(f"c{j}", f"kc{j}") for j in range(n_metrics)]
    shifts = []
    for i in range(attributes):
        value, missing = f"COALESCE(at{i}, {_ZERO})", f"(CASE WHEN at{i} IS NULL THEN {_ONE} ELSE {_ZERO} END)"
        shifts += [f"COALESCE(AVG({value}), {_ZERO}) AS kv{i}", f"COALESCE(AVG({missing}), {_ZERO}) AS km{i}"]
        z += [(value, f"kv{i}"), (missing, f"km{i}")]
    dz = [f"({e} - {k})" for e, k in z]
    p = len(z)
    terms = [t for a in range(p) for t in (f"SUM({dz[a]})", f"MIN({z[a][1]})")]
    terms += [f"SUM({dz[a]} * {dz[b]})" for a in range(p) for b in range(a, p)]
    terms += [f"SUM((x{j} - kx{j}) * {dz[a]})" for j in range(n_metrics) for a in range(p)]
    return shifts, [f"{t} AS {c}" for t, c in zip(terms, covariate_columns(n_metrics, attributes), strict=True)]


def metric_sums_many_sql(metrics: Sequence[MetricQuery], multiple: str = "exclude", *,
                         fixed_shifts: bool = False, active: bool = False, strata: int = 0,
                         covariates: int | None = None, batch: int = 0) -> str:
    """One row per arm (and one with a NULL arm for excluded users): :data:`HEAD_COLUMNS`, then per metric
    :data:`METRIC_COLUMNS` named ``m<j>_<column>``.

    Two passes, so that the common case costs what plain sums cost. Pass 1 is one GROUP BY per unit over
    the experiment's events, as plain sums are, adding the first exposure ``t0`` and the first and last
    metric-event times. A unit whose metric events all fall in ``[t0, t0 + shortest window)`` (the usual
    case: exposure first) has its sums right there and no pre-period. Only the other units ("dirty":
    an event before the exposure, after a window, or — for ``first`` — several variants) go through
    pass 2, the join of their events with their exposure that applies the rules event by event.

    ``fixed_shifts``: the shifts are parameters ``:kx<j>``, ``:ky<j>``, ``:kc<j>`` instead of the means
    (sums around any fixed shift add up over users); ``active``: only users with an event of the
    experiment in ``[:active_from, :active_to)`` (the incremental refresh, ``_incremental.py``).

    ``strata``: group by that many declared user attributes too (post-stratification). Attribute i is
    carried by events of type ``:st<i>`` whose ``value`` codes the user's stratum; a user's stratum is the
    smallest such value recorded at or before their first exposure (an attribute logged later could be
    moved by the treatment, so it does not count), NULL without one. The rows gain ``stratum<i>``
    columns after the metric columns, one row per (arm, strata); the shifts stay those of all users, so
    the strata's sums add up to the unstratified ones.

    ``covariates``: also the cross sums of regression adjustment with several covariates (CUPED++),
    :func:`covariate_columns`, from the same per-user step: every metric's pre-period value ``c<j>``
    (capped as the metric is) and that many declared numeric user attributes, attribute i carried by
    events of type ``:at<i>`` whose ``value`` is the attribute (the strata's rule: the smallest logged at
    or before the first exposure), read as its value (0 when missing) and a missing flag. ``None``: none.

    ``batch``: the same sums of up to that many experiments at once (ids ``:x0`` … ``:x<batch-1>``,
    repeat one to fill; one window ``:start``/``:end`` for all), every step also grouped by experiment,
    so each experiment's rows equal its own query's; the rows gain a leading ``experiment_id`` column.
    Not with ``fixed_shifts``, ``active``, ``strata``, ``covariates`` or capped metrics (their steps span
    one experiment).
    """
    if not metrics:
        raise ValueError("metric_sums_many_sql needs at least one metric")
    if batch and (fixed_shifts or active or strata or covariates is not None or any(m.capped for m in metrics)):
        raise ValueError("a batch of experiments takes plain sums only: no fixed_shifts, active, strata, "
                         "covariates or capped metrics (query those experiments one by one)")
    if not (isinstance(batch, int) and 0 <= batch <= 1024):
        raise ValueError(f"batch must be a number of experiments in [0, 1024], got {batch!r}")
    if not (isinstance(strata, int) and 0 <= strata <= 8):
        raise ValueError(f"strata must be a number of attributes in [0, 8], got {strata!r}")
    if covariates is not None and not (isinstance(covariates, int) and 0 <= covariates <= 8):
        raise ValueError(f"covariates must be a number of attributes in [0, 8] or None, got {covariates!r}")
    if covariates is not None and fixed_shifts:
        raise ValueError("the CUPED++ sums take their shifts from the data: covariates needs fixed_shifts=False")
    attrs = covariates or 0
    _exposure(multiple)  # validates ``multiple``
    index = {et: i for i, et in enumerate(_event_types(metrics))}
    keep = multiple == "keep"
    # the experiment(s) read, and the key every per-user step groups and joins by
    this = (f"experiment_id IN ({', '.join(f':x{i}' for i in range(batch))})" if batch
            else "experiment_id = :experiment")
    by = "experiment_id, user_id" if batch else "user_id"
    unit = f"{by}, variant" if keep else by
    plain = _Columns()
    fixed = _Columns()
    cond = _per_metric(metrics, fixed)
    per_metric = []
    for m, c in zip(metrics, cond, strict=True):
        parts = {"n": plain.add(f"CAST(COUNT(*) FILTER (WHERE event_type = :et{index[m.numerator]}) AS DOUBLE PRECISION)"),
                 "s": None if m.kind == "proportion" else plain.add(
                     f"COALESCE(SUM(COALESCE(value, {_ONE})) FILTER (WHERE event_type = :et{index[m.numerator]}), {_ZERO})"),
                 "d": plain.add(f"COALESCE(SUM(COALESCE(value, {_ONE})) FILTER (WHERE event_type = "
                                f":et{index[m.denominator]}), {_ZERO})") if m.kind == "ratio" and m.denominator else None,
                 "p": c["part_p"] or None, "q": c["part_q"] or None}
        merged = {k: None if v is None else
                  (f"(CASE WHEN u.dirty THEN f.{c['part_' + k]} ELSE {_ZERO} END)" if k in ("p", "q")
                   else f"(CASE WHEN u.dirty THEN f.{c['part_' + k]} ELSE u.{v} END)")
                  for k, v in parts.items()}
        per_metric.append(_values(m, merged))
    windows = [f":w{j}" for j, m in enumerate(metrics) if _days(m.window_days)]
    late = "".join(f" OR last_ts >= t0 + {w}" for w in windows)
    exposed = "event_type = :exposure AND ts >= :start"
    types = ", ".join(f":et{i}" for i in range(len(index)))
    if keep:
        flags = (f"(COUNT(*) OVER (PARTITION BY {by})) > 1 AS multi, "
                 f"{_ONE} / CAST(COUNT(*) OVER (PARTITION BY {by}) AS DOUBLE PRECISION) AS wu")
        variant = ""
    else:
        flags = f"v_min <> v_max AS multi, {_ONE} AS wu"
        variant = (f"MIN(variant) FILTER (WHERE {exposed}) AS v_min, "
                   f"MAX(variant) FILTER (WHERE {exposed}) AS v_max,")
    first_dirty = " OR v_min <> v_max" if multiple == "first" else ""
    arm = "u.variant" if keep else ("COALESCE(f.first_variant, u.v_min)" if multiple == "first" else "u.v_min")
    first_col = (", MIN(e.variant) FILTER (WHERE e.event_type = :exposure AND e.ts = x.t0) AS first_variant"
                 if multiple == "first" else "")
    grp = f"CASE WHEN u.multi THEN NULL ELSE {arm} END" if multiple == "exclude" else arm
    vals = ", ".join(f"{e['n']} AS n{j}, {e['x']} AS x{j}, {e['y']} AS y{j}, {e['c']} AS c{j}, {e['e']} AS e{j}"
                     for j, e in enumerate(per_metric))
    capped = any(m.capped for m in metrics)
    base = "per_user_raw" if capped else "per_user"
    capping = _capping(metrics, "per_user", "SELECT * FROM per_user_raw WHERE grp IS NOT NULL",
                       "grp, multi, wu, " + "".join(f"st{i}, " for i in range(strata))
                       + "".join(f"at{i}, " for i in range(attrs))
                       + ", ".join(f"n{j}, y{j}, e{j}" for j in range(len(metrics)))
                       ) if capped else ""
    plain_aggs = ",\n        ".join(f"{expr} AS {alias}" for expr, alias in plain.exprs.items())
    fixed_aggs = ",\n        ".join(f"{expr} AS {alias}" for expr, alias in fixed.exprs.items())
    outputs = ",\n       ".join(
        f"{term} AS m{j}_{name}" for j, e in enumerate(per_metric) for name, term in _terms(j, e).items()
    )
    on = ("f.experiment_id = u.experiment_id AND " if batch else "") + "f.user_id = u.user_id" + (
        " AND f.variant = u.variant" if keep else "")
    active_users = (f"""
      AND user_id IN (SELECT user_id FROM events WHERE experiment_id = :experiment
                      AND ts >= :active_from AND ts < :active_to AND event_type IN (:exposure, {types}))"""
                    if active else "")
    shifts = (_shifts(per_metric, "per_user", by="experiment_id" if batch else "") if not fixed_shifts else
              "SELECT " + ", ".join(f"CAST(:kx{j} AS DOUBLE PRECISION) AS kx{j}, CAST(:ky{j} AS DOUBLE PRECISION) "
                                    f"AS ky{j}, CAST(:kc{j} AS DOUBLE PRECISION) AS kc{j}"
                                    for j in range(len(per_metric))))
    join = ("e.experiment_id = x.experiment_id AND " if batch else "") + "e.user_id = x.user_id" + (
        " AND e.variant = x.variant" if keep else "")
    # per attribute, each user's stratum (or CUPED++ covariate)
    strata_ctes = _attribute_ctes("s", "st", strata) + _attribute_ctes("att", "at", attrs)
    st_cols = "".join(f"s{i}.st AS st{i}, " for i in range(strata)) + "".join(
        f"att{i}.st AS at{i}, " for i in range(attrs))
    st_joins = "".join(f" LEFT JOIN s{i} ON s{i}.user_id = u.user_id" for i in range(strata)) + "".join(
        f" LEFT JOIN att{i} ON att{i}.user_id = u.user_id" for i in range(attrs))
    st_out = "".join(f", st{i} AS stratum{i}" for i in range(strata))
    if covariates is not None:
        pp_shifts, pp_terms = _covariate_terms(len(metrics), attrs)
        if pp_shifts:  # not fixed_shifts (refused above): ``shifts`` is a SELECT over per_user
            shifts = _shifts(per_metric, "per_user", pp_shifts)
        st_out += ",\n       " + ",\n       ".join(pp_terms)
    st_group = "".join(f", st{i}" for i in range(strata))
    return f"""
WITH scan AS (
    SELECT {unit}, MIN(ts) FILTER (WHERE {exposed}) AS t0, {variant}
        MIN(ts) FILTER (WHERE event_type <> :exposure) AS first_ts,
        MAX(ts) FILTER (WHERE event_type <> :exposure) AS last_ts,
        MAX(covariate) AS cg,
        {plain_aggs}
    FROM events
    WHERE {this} AND ts >= :scan_start AND ts < :end
      AND event_type IN (:exposure, {types}){active_users}
    GROUP BY {unit}
),
units AS MATERIALIZED (
    SELECT scan.*, {flags}, (first_ts < t0{late}{first_dirty}) AS dirty FROM scan WHERE t0 IS NOT NULL
),
fixed AS (
    SELECT {", ".join(f"e.{c.strip()} AS {c.strip()}" for c in unit.split(","))}{first_col},
        {fixed_aggs}
    FROM units x JOIN events e ON {join}
    WHERE x.dirty AND e.{this} AND e.ts >= :scan_start AND e.ts < :end
      AND e.event_type IN (:exposure, {types})
    GROUP BY {", ".join("e." + c.strip() for c in unit.split(","))}
),
{strata_ctes}{base} AS MATERIALIZED (
    SELECT {"u.experiment_id, " if batch else ""}{grp} AS grp, u.multi, u.wu, {st_cols}{vals.replace("COALESCE(cg,", "COALESCE(u.cg,")}
    FROM units u LEFT JOIN fixed f ON {on}{st_joins}
){capping},
k AS MATERIALIZED ({shifts})
SELECT {"experiment_id, " if batch else ""}grp AS variant, COUNT(*) AS users, SUM(wu) AS exposed_users,
       SUM(CASE WHEN multi THEN wu ELSE {_ZERO} END) AS multiple_users,
       {outputs}{st_out}
FROM per_user {"LEFT JOIN k USING (experiment_id)" if batch else "CROSS JOIN k"}
GROUP BY {"experiment_id, " if batch else ""}grp{st_group}
ORDER BY {"experiment_id, " if batch else ""}grp{st_group}
"""


_RUNNING = "(PARTITION BY user_id, variant ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
_BY_DAY = "(PARTITION BY user_id, variant ORDER BY day)"


def daily_sums_many_sql(metrics: Sequence[MetricQuery], multiple: str = "exclude", *,
                        covariates: int | None = None) -> str:
    """Per (day, arm): the change of :data:`HEAD_COLUMNS` counts, then per metric the changes of
    :data:`DAILY_COLUMNS` and the (constant) shifts. A unit enters on the day of its first exposure,
    and its later events move its sums on the days they happen; summing the changes up to the last day
    gives :func:`metric_sums_many_sql`.

    ``covariates``: then the changes of the CUPED++ sums of :func:`covariate_columns` with that many
    attributes (``:at<i>``), their shifts ``pp_kz<a>`` constant, as :func:`metric_sums_many_sql` has
    them (the attributes are fixed at the first exposure; the shifts are over each unit's last day)."""
    if not metrics:
        raise ValueError("daily_sums_many_sql needs at least one metric")
    if covariates is not None and not (isinstance(covariates, int) and 0 <= covariates <= 8):
        raise ValueError(f"covariates must be a number of attributes in [0, 8] or None, got {covariates!r}")
    attrs = covariates or 0
    at_cols = "".join(f", at{i}" for i in range(attrs))
    cols = _Columns()
    per_metric = _per_metric(metrics, cols)
    aggregates = ",\n        ".join(f"{expr} AS {alias}" for expr, alias in cols.exprs.items())
    carried = list(cols.exprs.values())
    # windows written out in full (no named WINDOW with ORDER BY): sqlglot cannot transpile those to MySQL
    cum = ", ".join(f"SUM({a}) OVER {_RUNNING} AS {a}" for a in carried)
    vals = ", ".join(f"{e['n']} AS n{j}, {e['x']} AS x{j}, {e['y']} AS y{j}, {e['c']} AS c{j}, {e['e']} AS e{j}"
                     for j, e in enumerate(per_metric))
    capped = any(m.capped for m in metrics)
    base = "vals_raw" if capped else "vals"
    # the caps are over each unit's final values (its last day), the same caps on every day
    capping = _capping(metrics, "vals", "SELECT * FROM (SELECT grp, " + ", ".join(
        f"x{j}, c{j}" for j in range(len(metrics))) + ", ROW_NUMBER() OVER (PARTITION BY user_id, variant "
        "ORDER BY day DESC) AS z FROM vals_raw) l WHERE z = 1 AND grp IS NOT NULL",
        "user_id, variant, grp, multi, wu, day, r, " + "".join(f"at{i}, " for i in range(attrs))
        + ", ".join(f"n{j}, y{j}, e{j}" for j in range(len(metrics)))
        ) if capped else ""
    # no previous row (r = 1) reads 0, spelled without LAG's default argument, which MariaDB lacks
    lag = "CASE WHEN r = 1 THEN " + _ZERO + " ELSE LAG({e}, 1) OVER " + _BY_DAY + " END"
    deltas: list[str] = []
    sums: list[str] = []
    shifts: list[str] = []
    for j, e in enumerate(per_metric):
        terms = _terms(j, e)
        for name in DAILY_COLUMNS:
            inner = terms[name]
            inner = inner[4:-1] if inner.startswith("SUM(") else inner  # the per-unit term
            deltas.append(f"{inner} - {lag.format(e=inner)} AS d{j}_{name}")
            sums.append(f"SUM(d{j}_{name}) AS m{j}_{name}")
        shifts.extend(f"{terms[name]} AS m{j}_{name}" for name in ("shift", "shift_y", "shift_c"))
    pp_shifts: list[str] = []
    k_cols = "".join(f", kx{j}, ky{j}, kc{j}" for j in range(len(per_metric)))
    if covariates is not None:
        pp_shifts, pp_terms = _covariate_terms(len(metrics), attrs)
        k_cols += "".join(f", kv{i}, km{i}" for i in range(attrs))
        for t in pp_terms:
            term, _, name = t.rpartition(" AS ")
            if term.startswith("SUM("):
                inner = term[4:-1]
                deltas.append(f"{inner} - {lag.format(e=inner)} AS d_{name}")
                sums.append(f"SUM(d_{name}) AS {name}")
            else:  # a shift: the same on every row
                shifts.append(f"{term} AS {name}")
    # The day a user's event moves their sums: the event's day, but never before the first exposure's
    # (lookback events, before it, belong to the entry day).
    day = "CASE WHEN e.ts >= x.t0 THEN CAST(date_trunc('day', e.ts) AS DATE) ELSE CAST(date_trunc('day', x.t0) AS DATE) END"
    # the attributes ride with each unit from its exposure row (fixed at the first exposure)
    units = "exposure"
    attributes = ""
    if attrs:
        units = "exposure_at"
        attributes = _attribute_ctes("att", "at", attrs, units="exposure") + f"""exposure_at AS MATERIALIZED (
    SELECT x.*{"".join(f", att{i}.st AS at{i}" for i in range(attrs))}
    FROM exposure x{"".join(f" LEFT JOIN att{i} ON att{i}.user_id = x.user_id" for i in range(attrs))}
),
"""
    x_at = "".join(f", x.at{i} AS at{i}" for i in range(attrs))
    g_at = "".join(f", x.at{i}" for i in range(attrs))
    return f"""
WITH exposure AS MATERIALIZED ({_exposure(multiple)}
),
{attributes}per_unit_day AS (
    SELECT x.user_id AS user_id, x.variant AS variant, x.multi AS multi, x.wu AS wu, {day} AS day{x_at},
        MAX(e.covariate) AS cg,
        {aggregates}{_scan(metrics, multiple, units)}
    GROUP BY x.user_id, x.variant, x.multi, x.wu, x.t0{g_at}, {day}
),
cumulative AS (
    SELECT user_id, variant, multi, wu, day{at_cols}, {cum}, MAX(cg) OVER {_RUNNING} AS cg, ROW_NUMBER() OVER {_BY_DAY} AS r
    FROM per_unit_day
),
{base} AS MATERIALIZED (
    SELECT user_id, variant, {_group(multiple)} AS grp, multi, wu, day, r{at_cols}, {vals} FROM cumulative
){capping},
last AS (
    SELECT * FROM (
        SELECT grp{at_cols}, {", ".join(f"x{j}, y{j}, c{j}, e{j}" for j in range(len(per_metric)))},
               ROW_NUMBER() OVER (PARTITION BY user_id, variant ORDER BY day DESC) AS z
        FROM vals
    ) l WHERE z = 1
),
k AS MATERIALIZED ({_shifts(per_metric, "last", pp_shifts)}),
deltas AS (
    SELECT grp, day, CASE WHEN r = 1 THEN 1 ELSE 0 END AS du,
           CASE WHEN r = 1 THEN wu ELSE {_ZERO} END AS dw,
           CASE WHEN r = 1 AND multi THEN wu ELSE {_ZERO} END AS dm,
           {", ".join(deltas)}{k_cols}
    FROM vals CROSS JOIN k
)
SELECT day, grp AS variant, SUM(du) AS users, SUM(dw) AS exposed_users, SUM(dm) AS multiple_users,
       {", ".join(sums)}, {", ".join(shifts)}
FROM deltas
GROUP BY day, grp
ORDER BY day, grp
"""


# Where the per-user step of :func:`metric_sums_many_sql` ends and its aggregation over users begins.
_PER_USER_END = "\nk AS MATERIALIZED ("


def per_user_values_sql(metrics: Sequence[MetricQuery], multiple: str = "exclude") -> str:
    """One row per analysed unit (users left out for seeing several variants are not returned): its arm
    ``variant``, then per metric ``x<j>`` (the per-user value) and ``y<j>`` (the ratio's denominator, 0
    otherwise), by exactly the rules of :func:`metric_sums_many_sql` (its per-user step, reused as is):
    summing these rows per arm gives its sums. For offline A/A re-splits and other per-user statistics.
    The rows come in no particular order.
    """
    text = metric_sums_many_sql(metrics, multiple)
    head, found, _ = text.partition(_PER_USER_END)
    if not found:  # the per-user step is no longer where this function expects it
        raise AssertionError("metric_sums_many_sql no longer has its per-user step before the shifts")
    values = ", ".join(f"x{j}, y{j}" for j in range(len(metrics)))
    return f"""{head.rstrip().removesuffix(",")}
SELECT grp AS variant, {values}
FROM per_user
WHERE grp IS NOT NULL
"""
