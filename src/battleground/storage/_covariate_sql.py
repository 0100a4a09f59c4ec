"""The sums of regression adjustment with several covariates (CUPED++), from the metric-sums scan.

Per arm: the number of units n and, for every metric j of the experiment (outcome y_j = the metric's
per-user value x, the numerator for ratios) and every covariate z_a, the sums Σy_j, Σy_j², Σz_a,
Σz_a·z_b and Σy_j·z_a, all around shifts (the means over the analysed units, in the same query), so the
moments come out exact. The covariates, in this order:

* ``c<j>``: each metric's pre-period value (its CUPED covariate, capped when the metric is winsorised:
  the column ``c<j>`` of the per-user step of :func:`~battleground.storage._sums_sql.metric_sums_many_sql`);
* per declared numeric user attribute ``a``: its value (events of type ``a`` whose ``value`` is the
  attribute; the smallest one logged at or before the user's first exposure, the post-stratification
  rule, 0 without one) and ``a?``, 1 for users without it (so a missing value is not read as 0);
  (a model's prediction is one such attribute: CUPAC, ``experiment/_cupac.py``).

The per-user step is :func:`metric_sums_many_sql`'s, reused as is (as ``per_user_values_sql`` does), so
every rule of who counts and which events count is the one of the plain sums; only the aggregation over
users differs. Nothing here knows statistics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from battleground.storage._sums_sql import _PER_USER_END, MetricQuery, metric_sums_many_sql

if TYPE_CHECKING:
    from battleground.storage.events import EventStore

__all__ = ["CovariateSums", "covariate_names", "covariate_sums", "covariate_sums_sql"]

_ZERO = "CAST(0 AS DOUBLE PRECISION)"
_ONE = "CAST(1 AS DOUBLE PRECISION)"


@dataclass(frozen=True)
class CovariateSums:
    """One arm's sums for regression adjustment (module docstring), every Σ around the shifts.

    Attributes:
        variant, users: the arm and its number of units.
        covariates: the covariates' names (``c<j>``, ``a``, ``a?``, …).
        sum_y, sum_y2, shift_y: per metric, Σy', Σy'² and the shift.
        sum_z, shift_z: per covariate, Σz' and the shift.
        sum_zz: Σz'_a·z'_b (covariates × covariates); sum_yz: Σy'_j·z'_a (metrics × covariates).
    """

    variant: str
    users: int
    covariates: tuple[str, ...]
    sum_y: tuple[float, ...]
    sum_y2: tuple[float, ...]
    sum_z: tuple[float, ...]
    sum_zz: tuple[tuple[float, ...], ...]
    sum_yz: tuple[tuple[float, ...], ...]
    shift_y: tuple[float, ...]
    shift_z: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def covariate_names(n_metrics: int, attributes: Sequence[str]) -> tuple[str, ...]:
    """The covariates' names in the order of the sums."""
    return (*(f"c{j}" for j in range(n_metrics)), *(n for a in attributes for n in (a, f"{a}?")))


def covariate_sums_sql(metrics: Sequence[MetricQuery], multiple: str = "exclude", *, attributes: int = 0) -> str:
    """One row per arm: ``variant``, ``users``, then per metric ``sy<j>``, ``syy<j>``, ``ky<j>``, per
    covariate ``sz<a>``, ``kz<a>``, then ``szz<a>_<b>`` (a ≤ b) and ``syz<j>_<a>``. Attribute i is
    carried by events of type ``:st<i>`` (as for post-stratification)."""
    text = metric_sums_many_sql(metrics, multiple, strata=attributes)
    head, found, _ = text.partition(_PER_USER_END)
    if not found:  # the per-user step is no longer where this module expects it
        raise AssertionError("metric_sums_many_sql no longer has its per-user step before the shifts")
    m = len(metrics)
    z = [f"c{j}" for j in range(m)]
    for i in range(attributes):
        z += [f"COALESCE(st{i}, {_ZERO})", f"CASE WHEN st{i} IS NULL THEN {_ONE} ELSE {_ZERO} END"]
    p = len(z)
    shifts = ", ".join([f"COALESCE(AVG(x{j}), {_ZERO}) AS ky{j}" for j in range(m)]
                       + [f"COALESCE(AVG({e}), {_ZERO}) AS kz{a}" for a, e in enumerate(z)])
    dev = ", ".join([f"x{j} - ky{j} AS y{j}" for j in range(m)] + [f"{e} - kz{a} AS z{a}" for a, e in enumerate(z)]
                    + [f"ky{j}" for j in range(m)] + [f"kz{a}" for a in range(p)])
    outs = ["COUNT(*) AS users"]
    outs += [f"SUM(y{j}) AS sy{j}, SUM(y{j} * y{j}) AS syy{j}, MIN(ky{j}) AS ky{j}" for j in range(m)]
    outs += [f"SUM(z{a}) AS sz{a}, MIN(kz{a}) AS kz{a}" for a in range(p)]
    outs += [f"SUM(z{a} * z{b}) AS szz{a}_{b}" for a in range(p) for b in range(a, p)]
    outs += [f"SUM(y{j} * z{a}) AS syz{j}_{a}" for j in range(m) for a in range(p)]
    return f"""{head.rstrip().removesuffix(",")},
k AS MATERIALIZED (SELECT {shifts} FROM per_user WHERE grp IS NOT NULL),
d AS (SELECT grp, {dev} FROM per_user CROSS JOIN k WHERE grp IS NOT NULL)
SELECT grp AS variant, {", ".join(outs)}
FROM d
GROUP BY grp
ORDER BY grp
"""


def covariate_sums(
    store: EventStore,
    experiment_id: int,
    defs: Sequence[MetricQuery],
    attributes: Sequence[str] = (),
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    variants: Sequence[str] = (),
    *,
    multiple_exposures: str = "exclude",
) -> tuple[CovariateSums, ...]:
    """Run :func:`covariate_sums_sql` on ``store`` and decode it: one :class:`CovariateSums` per arm,
    ``variants`` first (zero sums when an arm has no units yet), then any other arm found."""
    from battleground.storage.events import _params

    attrs = [str(a) for a in attributes]
    names = covariate_names(len(defs), attrs)
    if len(set(attrs)) != len(attrs) or "exposure" in attrs or len(attrs) > 8:
        raise ValueError(f"attributes must be up to 8 distinct event types other than 'exposure', got {attrs}")
    params = _params(experiment_id, defs, start, end)
    params.update({f"st{i}": a for i, a in enumerate(attrs)})
    sql = covariate_sums_sql(defs, multiple_exposures, attributes=len(attrs))
    m, p = len(defs), len(names)
    cols = ["variant", "users", *(f"{c}{j}" for j in range(m) for c in ("sy", "syy", "ky")),
            *(f"{c}{a}" for a in range(p) for c in ("sz", "kz")),
            *(f"szz{a}_{b}" for a in range(p) for b in range(a, p)), *(f"syz{j}_{a}" for j in range(m) for a in range(p))]
    found: dict[str, CovariateSums] = {}
    for row in store._query(sql, params, scan=True):
        r = dict(zip(cols, row, strict=True))
        if r["variant"] is None:
            continue

        def f(key: str, r: dict[str, Any] = r) -> float:
            return float(r[key] or 0.0)

        zz = [[f(f"szz{min(a, b)}_{max(a, b)}") for b in range(p)] for a in range(p)]
        found[str(r["variant"])] = CovariateSums(
            variant=str(r["variant"]), users=round(f("users")), covariates=names,
            sum_y=tuple(f(f"sy{j}") for j in range(m)), sum_y2=tuple(f(f"syy{j}") for j in range(m)),
            sum_z=tuple(f(f"sz{a}") for a in range(p)), sum_zz=tuple(tuple(row) for row in zz),
            sum_yz=tuple(tuple(f(f"syz{j}_{a}") for a in range(p)) for j in range(m)),
            shift_y=tuple(f(f"ky{j}") for j in range(m)), shift_z=tuple(f(f"kz{a}") for a in range(p)))
    empty = CovariateSums("", 0, names, (0.0,) * m, (0.0,) * m, (0.0,) * p, ((0.0,) * p,) * p, ((0.0,) * p,) * m,
                          (0.0,) * m, (0.0,) * p)
    out = [found.get(v) or CovariateSums(**{**asdict(empty), "variant": v}) for v in variants]
    out += [found[v] for v in sorted(found) if v not in set(variants)]
    return tuple(out)
