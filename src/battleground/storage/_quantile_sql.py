"""The order statistics of quantile metrics, from the metric-sums scan.

Per arm and per quantile metric j (level ν_j): the number of analysed units n, their numerator events,
the sample ν_j-quantile of the per-user value x_j (the estimate) and the sample quantiles at the bound
levels ν_j ∓ z·√(ν_j(1−ν_j)/n*) (z = Φ⁻¹(0.975), clamped to [1e-8, 1 − 1e-8]) whose order statistics
bracket its 95 % interval (Deng, Knoblich and Yu 2018; gbstats' ``quantile_lower``/``quantile_upper``).
Every quantile is ``QUANTILE_CONT`` (PostgreSQL: ``PERCENTILE_CONT … WITHIN GROUP``), linear between
the order statistics at 1 + level·(n − 1), numpy's default.

An aggregate's levels must be constants, and n is known only once the query runs; so, as GrowthBook,
the query asks for the bound levels of a grid of n* (100·1.25^k, finer than GrowthBook's doubling)
in one list per metric — one sort per arm serves them all — and the decoder keeps those of the largest
n* below the arm's n (``QuantileSums.n_star``; the statistics scale the variance by n*/n).

The per-user step is :func:`~battleground.storage._sums_sql.metric_sums_many_sql`'s, reused as is (as
``_covariate_sql.py`` does), so who counts and which events count are the rules of the plain sums (a
quantile metric's per-user value is a ``mean`` metric's: Σ value of its numerator events in the
window, capped when winsorised). Nothing here knows statistics beyond the bound levels.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from battleground._quantiles import bound_levels
from battleground.storage._sums_sql import _PER_USER_END, MetricQuery, metric_sums_many_sql
from battleground.storage.sums import QuantileSums

if TYPE_CHECKING:
    from battleground.storage.events import EventStore

__all__ = ["check_quantile_level", "n_star_grid", "pick_n_star", "quantile_sums", "quantile_sums_sql", "quantile_tail_sql"]

def check_quantile_level(nu: Any, where: str = "") -> float:
    """``nu`` if it is a quantile level in (0, 1), else a clear ``ValueError``."""
    if isinstance(nu, bool) or not isinstance(nu, int | float) or not 0.0 < nu < 1.0:
        raise ValueError(f"{where}quantile must be a level in (0, 1) such as 0.5, 0.9 or 0.99, got {nu!r}")
    return float(nu)


def n_star_grid() -> tuple[int, ...]:
    """The n* the bound levels are written for: 100·1.25^k up to 5·10⁷ (GrowthBook's grid doubles)."""
    return _N_STAR


_N_STAR = tuple(round(100 * 1.25**k) for k in range(60))


def pick_n_star(n: int, n_stars: Sequence[int] = _N_STAR) -> int:
    """The n* among ``n_stars`` (ascending; default the grid) for an arm of n units: the largest at most
    n (the smallest when none is), GrowthBook's rule; the statistics scale the bounds at n* to n
    (Var ∝ n*/n), so any n* near n is valid and n* = n is exact.

    Example:
        >>> pick_n_star(50), pick_n_star(101), pick_n_star(11054), pick_n_star(11054, (10861, 11054))
        (100, 100, 10842, 11054)
    """
    below = [k for k in n_stars if k <= n]
    return below[-1] if below else n_stars[0]


def _n_stars(hint: Sequence[int] | None) -> tuple[int, ...]:
    """The n* to ask the bounds for: the arms' expected n when known (exact), else the grid."""
    if hint is None:
        return _N_STAR
    chosen = tuple(sorted({int(n) for n in hint if int(n) > 0}))
    return chosen or _N_STAR


def _levels(nu: float, n_stars: Sequence[int]) -> list[float]:
    """ν, then the lower and upper bound level of every n*."""
    return [nu, *(lv for n_star in n_stars for lv in bound_levels(nu, n_star))]


def quantile_sums_sql(metrics: Sequence[MetricQuery], quantiles: Mapping[int, float],
                      multiple: str = "exclude", n_stars: Sequence[int] | None = None) -> str:
    """The per-user step of the metric sums, then :func:`quantile_tail_sql` over it for the quantile
    metrics ``{index j into metrics: level ν_j}``."""
    if not quantiles:
        raise ValueError("quantile_sums_sql needs at least one quantile metric")
    bad = sorted(j for j in quantiles if not 0 <= j < len(metrics))
    if bad:
        raise ValueError(f"quantile metric indices {bad} are outside the {len(metrics)} metrics")
    text = metric_sums_many_sql(metrics, multiple)
    head, found, _ = text.partition(_PER_USER_END)
    if not found:  # the per-user step is no longer where this module expects it
        raise AssertionError("metric_sums_many_sql no longer has its per-user step before the shifts")
    return f"""{head.rstrip().removesuffix(",")}
{quantile_tail_sql(quantiles, n_stars)}
"""


def quantile_tail_sql(quantiles: Mapping[int, float], n_stars: Sequence[int] | None = None) -> str:
    """The quantile part alone: a SELECT over a relation ``per_user`` with the columns
    ``grp`` (the arm, NULL: not analysed), ``x<j>`` (the per-user value) and ``n<j>`` (its events), as
    the per-user step of the metric sums gives them. One row per arm: ``variant``, ``users``, then per
    quantile metric j ``events<j>`` and ``qs<j>``, the list of the sample quantiles at :func:`_levels`
    (one sort per arm and metric serves every level) for ``n_stars`` (default: the grid)."""
    stars = _n_stars(n_stars)
    cols = ["grp AS variant", "COUNT(*) AS users"]
    for j in sorted(quantiles):
        levels = ", ".join(repr(float(v)) for v in _levels(check_quantile_level(quantiles[j], f"metric {j}: "), stars))
        cols += [f"SUM(n{j}) AS events{j}", f"QUANTILE_CONT(x{j}, [{levels}]) AS qs{j}"]
    return f"SELECT {', '.join(cols)}\nFROM per_user WHERE grp IS NOT NULL GROUP BY grp ORDER BY grp"


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
    users: Sequence[int] | None = None,
) -> dict[int, tuple[QuantileSums, ...]]:
    """Run :func:`quantile_sums_sql` on ``store`` and decode it: per quantile metric index j, one
    :class:`QuantileSums` per arm, ``variants`` first (n = 0 and NaN quantiles when an arm has no units
    yet), then any other arm found. ``users``: the arms' numbers of units when already known (e.g. from
    the metric-sums scan): the bounds are then asked at exactly those n (a few levels instead of the
    grid's 120, and n* = n)."""
    from battleground.storage.events import _params

    if not quantiles:
        return {}
    params = _params(experiment_id, defs, start, end)
    stars = _n_stars(users)
    sql = quantile_sums_sql(defs, quantiles, multiple_exposures, stars)
    found: dict[int, dict[str, QuantileSums]] = {j: {} for j in quantiles}
    nan = float("nan")
    order = sorted(quantiles)
    for row in store._query(sql, params, scan=True):
        variant, n = str(row[0]), int(row[1] or 0)
        n_star = pick_n_star(n, stars)
        k = 1 + 2 * stars.index(n_star)
        for i, j in enumerate(order):
            events, qs = row[2 + 2 * i], row[3 + 2 * i]
            q, lo, hi = (nan, nan, nan) if qs is None else (float(qs[0]), float(qs[k]), float(qs[k + 1]))
            found[j][variant] = QuantileSums(variant=variant, users=n, events=int(events or 0),
                                             nu=float(quantiles[j]), quantile=q, lower=lo, upper=hi, n_star=n_star)
    out: dict[int, tuple[QuantileSums, ...]] = {}
    for j, arms in found.items():
        rows = [arms.get(v) or QuantileSums(v, 0, 0, float(quantiles[j]), nan, nan, nan, 0) for v in variants]
        rows += [arms[v] for v in sorted(arms) if v not in set(variants)]
        out[j] = tuple(rows)
    return out
