"""The order statistics of quantile metrics, from the metric-sums scan.

Per arm and per quantile metric j (level ν_j): the number of analysed units n, their numerator events,
and three sample quantiles of the per-user value x_j — at ν_j (the estimate) and at the bound levels
ν_j ∓ z·√(ν_j(1−ν_j)/n) (z = Φ⁻¹(0.975), clamped to [1e-8, 1 − 1e-8]) whose order statistics bracket
its 95 % interval (Deng, Knoblich and Yu 2018; gbstats' ``quantile_lower``/``quantile_upper``). Each is
numpy's default quantile, linear between the order statistics at 1 + level·(n − 1), written with
ROW_NUMBER so that every engine computes the same numbers (the winsorisation caps use the same rule).
The bound levels use the arm's own n, known inside the query (GrowthBook writes its SQL before it knows
n and so picks the nearest of a grid of n*).

The per-user step is :func:`~battleground.storage._sums_sql.metric_sums_many_sql`'s, reused as is (as
``_covariate_sql.py`` does), so who counts and which events count are the rules of the plain sums (a
quantile metric's per-user value is a ``mean`` metric's: Σ value of its numerator events in the
window, capped when winsorised). Nothing here knows statistics beyond the bound levels.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from battleground.storage._sums_sql import _PER_USER_END, MetricQuery, metric_sums_many_sql
from battleground.storage.sums import QuantileSums

if TYPE_CHECKING:
    from battleground.storage.events import EventStore

__all__ = ["Z95", "check_quantile_level", "quantile_sums", "quantile_sums_sql"]

Z95 = 1.959963984540054  # Φ⁻¹(0.975), the bounds' z (gbstats fixes the bounds at the 95 % level)
_DOUBLE = "DOUBLE PRECISION"


def check_quantile_level(nu: Any, where: str = "") -> float:
    """``nu`` if it is a quantile level in (0, 1), else a clear ``ValueError``."""
    if isinstance(nu, bool) or not isinstance(nu, int | float) or not 0.0 < nu < 1.0:
        raise ValueError(f"{where}quantile must be a level in (0, 1) such as 0.5, 0.9 or 0.99, got {nu!r}")
    return float(nu)


def _interpolated(level: str, name: str) -> str:
    """The aggregates of the sample quantile at ``level`` (an expression of n) over rows (v, r)."""
    pos = f"(1 + ({level}) * (n - 1))"
    lo = f"MAX(CASE WHEN r = FLOOR({pos}) THEN v END)"
    hi = f"COALESCE(MAX(CASE WHEN r = FLOOR({pos}) + 1 THEN v END), {lo})"
    return f"{lo} + (MIN({pos}) - FLOOR(MIN({pos}))) * ({hi} - {lo}) AS {name}"


def quantile_sums_sql(metrics: Sequence[MetricQuery], quantiles: Mapping[int, float],
                      multiple: str = "exclude") -> str:
    """One row per (quantile metric, arm): ``metric`` (its index j in ``metrics``), ``variant``,
    ``users``, ``events``, ``q`` (the sample ν_j-quantile), ``q_lower``, ``q_upper``. The levels are
    the parameters ``:ql<j>``, z is ``:qz`` (see :func:`quantile_params`)."""
    if not quantiles:
        raise ValueError("quantile_sums_sql needs at least one quantile metric")
    bad = sorted(j for j in quantiles if not 0 <= j < len(metrics))
    if bad:
        raise ValueError(f"quantile metric indices {bad} are outside the {len(metrics)} metrics")
    text = metric_sums_many_sql(metrics, multiple)
    head, found, _ = text.partition(_PER_USER_END)
    if not found:  # the per-user step is no longer where this module expects it
        raise AssertionError("metric_sums_many_sql no longer has its per-user step before the shifts")
    ctes, selects = [], []
    for j in sorted(quantiles):
        half = f"CAST(:qz AS {_DOUBLE}) * SQRT(:ql{j} * (1 - :ql{j}) / CAST(n AS {_DOUBLE}))"
        levels = (f"CAST(:ql{j} AS {_DOUBLE})", f"GREATEST(:ql{j} - {half}, 1e-8)",
                  f"LEAST(:ql{j} + {half}, 1 - 1e-8)")
        ctes.append(f"""qv{j} AS (
    SELECT grp, x{j} AS v, n{j} AS ne,
           ROW_NUMBER() OVER (PARTITION BY grp ORDER BY x{j}) AS r, COUNT(*) OVER (PARTITION BY grp) AS n
    FROM per_user WHERE grp IS NOT NULL
)""")
        aggs = ", ".join(_interpolated(lv, name) for lv, name in zip(levels, ("q", "q_lower", "q_upper"),
                                                                      strict=True))
        selects.append(f"SELECT {j} AS metric, grp AS variant, MIN(n) AS users, SUM(ne) AS events, {aggs} "
                       f"FROM qv{j} GROUP BY grp")
    return f"""{head.rstrip().removesuffix(",")},
{",".join(ctes)}
{" UNION ALL ".join(selects)}
ORDER BY metric, variant
"""


def quantile_params(quantiles: Mapping[int, float]) -> dict[str, Any]:
    """The levels ``:ql<j>`` and z ``:qz`` of :func:`quantile_sums_sql`."""
    out: dict[str, Any] = {f"ql{j}": check_quantile_level(nu, f"metric {j}: ") for j, nu in quantiles.items()}
    out["qz"] = Z95
    return out


def quantile_sums(
    store: EventStore,
    experiment_id: int,
    defs: Sequence[MetricQuery],
    quantiles: Mapping[int, float],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    variants: Sequence[str] = (),
    *,
    multiple_exposures: str = "exclude",
) -> dict[int, tuple[QuantileSums, ...]]:
    """Run :func:`quantile_sums_sql` on ``store`` and decode it: per quantile metric index j, one
    :class:`QuantileSums` per arm, ``variants`` first (n = 0 and NaN quantiles when an arm has no units
    yet), then any other arm found."""
    from battleground.storage.events import _params

    if not quantiles:
        return {}
    params = _params(experiment_id, defs, start, end)
    params.update(quantile_params(quantiles))
    sql = quantile_sums_sql(defs, quantiles, multiple_exposures)
    found: dict[int, dict[str, QuantileSums]] = {j: {} for j in quantiles}
    nan = float("nan")
    for j, variant, users, events, q, lo, hi in store._query(sql, params, scan=True):
        n = int(users or 0)
        found[int(j)][str(variant)] = QuantileSums(
            variant=str(variant), users=n, events=int(events or 0), nu=float(quantiles[int(j)]),
            quantile=nan if q is None else float(q), lower=nan if lo is None else float(lo),
            upper=nan if hi is None else float(hi), n_star=n)
    out: dict[int, tuple[QuantileSums, ...]] = {}
    for j, arms in found.items():
        rows = [arms.get(v) or QuantileSums(v, 0, 0, float(quantiles[j]), nan, nan, nan, 0) for v in variants]
        rows += [arms[v] for v in sorted(arms) if v not in set(variants)]
        out[j] = tuple(rows)
    return out
