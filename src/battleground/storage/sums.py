"""The boundary types between storage and statistics: per-variant sufficient statistics of metrics.

Event stores compute these in SQL (aggregating per user first); statistics code works only from them.
For user u in a variant, ``x_u`` is the user's metric value (numerator), ``y_u`` the denominator of a
ratio metric (e.g. impressions for CTR) and ``c_u`` the CUPED covariate (the same metric over a lookback
window before the user's first exposure). See ``storage/_sums_sql.py`` for the exact rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["CovariateSums", "ExperimentSums", "MetricSums", "PerUserValues", "QuantileSums", "covariate_names"]


@dataclass(frozen=True)
class MetricSums:
    """Sufficient statistics of one metric for one variant over a time window, around shifts.

    Every sum is of *shifted* values x' = x − ``shift``, y' = y − ``shift_y``, c' = c − ``shift_c``: the
    store picks each shift near the metric's mean (the same for every variant of a metric), so that
    variances come out exact even when the mean dwarfs the spread (values near 1e8 with sd 1). With the
    shifts at 0 (the default) the sums are the raw Σx, Σx², … Statistics that do not read the shifts
    take :meth:`unshifted`; ``mean``/``var`` give the exact moments directly.

    Attributes:
        variant: variant name.
        users: number of users (the unit of analysis; each contributes one x_u).
        events: number of raw events that went into the numerator.
        sum_x, sum_x2: Σx'_u and Σx'_u².
        sum_y, sum_y2, sum_xy: Σy'_u, Σy'_u², Σx'_u·y'_u (ratio metrics; 0 otherwise).
        sum_c, sum_c2, sum_xc: Σc'_u, Σc'_u², Σx'_u·c'_u (CUPED covariate).
        shift, shift_y, shift_c: the shifts of x, y and c.
        sum_e, sum_e2, sum_xe, sum_ye, sum_ce, sum_yc: ratio metrics with a lookback: the sums of e' =
            e − ``shift_y``, e_u the denominator over the lookback (the pre-period ratio is c/e), with
            x', y', c' (ratio CUPED; 0 otherwise).
        cap_x, cap_c: the winsorisation caps applied to x and c (``None``: not capped).
    """

    variant: str
    users: int
    events: int
    sum_x: float
    sum_x2: float
    sum_y: float = 0.0
    sum_y2: float = 0.0
    sum_xy: float = 0.0
    sum_c: float = 0.0
    sum_c2: float = 0.0
    sum_xc: float = 0.0
    shift: float = 0.0
    shift_y: float = 0.0
    shift_c: float = 0.0
    sum_e: float = 0.0
    sum_e2: float = 0.0
    sum_xe: float = 0.0
    sum_ye: float = 0.0
    sum_ce: float = 0.0
    sum_yc: float = 0.0
    cap_x: float | None = None
    cap_c: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def shift_x(self) -> float:
        """The shift of x under the name :mod:`battleground.stats` reads (``shift_x``/``shift_y``/``shift_c``)."""
        return self.shift

    @property
    def mean(self) -> float:
        """Mean of x (NaN without users)."""
        return self.shift + self.sum_x / self.users if self.users else math.nan

    @property
    def var(self) -> float:
        """Sample variance (ddof=1) of x, exact from the shifted sums (NaN below 2 users)."""
        n = self.users
        return (self.sum_x2 - self.sum_x * self.sum_x / n) / (n - 1) if n > 1 else math.nan

    def unshifted(self) -> MetricSums:
        """The same statistics as raw sums (shifts 0), for code that reads Σx and Σx² directly; exact
        when the shifts are 0, else as precise as raw sums can be."""
        if self.shift == self.shift_y == self.shift_c == 0.0:
            return self
        n, kx, ky, kc = self.users, self.shift, self.shift_y, self.shift_c
        return replace(
            self,
            sum_x=self.sum_x + n * kx,
            sum_x2=self.sum_x2 + 2 * kx * self.sum_x + n * kx * kx,
            sum_y=self.sum_y + n * ky,
            sum_y2=self.sum_y2 + 2 * ky * self.sum_y + n * ky * ky,
            sum_xy=self.sum_xy + ky * self.sum_x + kx * self.sum_y + n * kx * ky,
            sum_c=self.sum_c + n * kc,
            sum_c2=self.sum_c2 + 2 * kc * self.sum_c + n * kc * kc,
            sum_xc=self.sum_xc + kc * self.sum_x + kx * self.sum_c + n * kx * kc,
            sum_e=self.sum_e + n * ky,
            sum_e2=self.sum_e2 + 2 * ky * self.sum_e + n * ky * ky,
            sum_xe=self.sum_xe + ky * self.sum_x + kx * self.sum_e + n * kx * ky,
            sum_ye=self.sum_ye + ky * self.sum_y + ky * self.sum_e + n * ky * ky,
            sum_ce=self.sum_ce + ky * self.sum_c + kc * self.sum_e + n * kc * ky,
            sum_yc=self.sum_yc + kc * self.sum_y + ky * self.sum_c + n * ky * kc,
            shift=0.0, shift_y=0.0, shift_c=0.0,
        )


@dataclass(frozen=True)
class CovariateSums:
    """One arm's sums for regression adjustment with several covariates (CUPED++), every Σ around shifts.

    The outcomes are the experiment's metrics (y_j = the metric's per-user value x, the numerator for
    ratios); the covariates z_a are every metric's pre-period value (its CUPED covariate, capped when the
    metric is winsorised), then per declared numeric user attribute its value (the smallest logged at or
    before the user's first exposure, 0 without one) and a flag, 1 for users without it (so a missing
    value is not read as 0). They come from the metric-sums scan (``storage/_sums_sql.py``).

    Attributes:
        variant, users: the arm and its number of units.
        covariates: the covariates' names (:func:`covariate_names`: ``c<j>``, ``a``, ``a?``, …).
        sum_y, sum_y2, shift_y: per metric, Σy', Σy'² and the shift (the metric's own).
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

    @classmethod
    def empty(cls, variant: str, covariates: tuple[str, ...], n_metrics: int) -> CovariateSums:
        """An arm without units yet (zero sums)."""
        p = len(covariates)
        return cls(variant, 0, covariates, (0.0,) * n_metrics, (0.0,) * n_metrics, (0.0,) * p, ((0.0,) * p,) * p,
                   ((0.0,) * p,) * n_metrics, (0.0,) * n_metrics, (0.0,) * p)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def covariate_names(n_metrics: int, attributes: Sequence[str]) -> tuple[str, ...]:
    """The CUPED++ covariates' names in the order of the sums: ``c<j>`` per metric, then per attribute
    ``a`` and ``a?`` (its missing flag)."""
    return (*(f"c{j}" for j in range(n_metrics)), *(n for a in attributes for n in (a, f"{a}?")))


@dataclass(frozen=True)
class ExperimentSums:
    """Everything one scan of an experiment's events yields: per-metric, per-variant sums and the
    exposure check (a data-quality item beside SRM).

    Attributes:
        metrics: one tuple of :class:`MetricSums` per metric definition, variants in the order asked.
        exposed_users: distinct users with an exposure in the window.
        multiple_exposure_users: those of them exposed to more than one variant.
        multiple_exposures: what the sums did with them: ``"exclude"`` (left out of every arm, the
            default), ``"first"`` (counted in the variant of their first exposure) or ``"keep"``
            (counted in every variant they saw).
        covariates: the CUPED++ sums per arm (:class:`CovariateSums`, variants in the order asked)
            when the scan was asked for them, else ``None``.
    """

    metrics: tuple[tuple[MetricSums, ...], ...]
    exposed_users: int = 0
    multiple_exposure_users: int = 0
    multiple_exposures: str = "exclude"
    covariates: tuple[CovariateSums, ...] | None = None

    @property
    def multiple_exposure_share(self) -> float:
        """Share of exposed users that saw more than one variant (0 without users)."""
        return self.multiple_exposure_users / self.exposed_users if self.exposed_users else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["multiple_exposure_share"] = self.multiple_exposure_share
        return d


@dataclass(frozen=True)
class PerUserValues:
    """The per-user values behind :class:`ExperimentSums`, one row per analysed user (the same rules).

    Attributes:
        variants: each user's arm, shape (n,).
        x: per-user metric values (numerators), shape (n, number of metrics).
        y: per-user denominators of ratio metrics (0 for other kinds), shape (n, number of metrics).
    """

    variants: Any
    x: Any
    y: Any

    @property
    def users(self) -> int:
        return len(self.variants)

    def to_dict(self) -> dict[str, Any]:
        return {"users": self.users, "metrics": int(self.x.shape[1]) if self.x.ndim == 2 else 0}


@dataclass(frozen=True)
class QuantileSums:
    """One arm's summary of a quantile metric (the per-user value's ν-quantile), from the scan.

    The sample quantile and the two order-statistic bounds of its 95 % interval (Deng, Knoblich and Yu
    2018): the sample quantiles at levels ν ∓ z·√(ν(1−ν)/n*), z = Φ⁻¹(0.975), each linear between the
    order statistics at 1 + level·(n − 1) (numpy's default). ``n_star`` is the n the bound levels were
    computed for: the arm's own n here (GrowthBook, which writes its SQL before it knows n, picks the
    nearest of a grid).

    Attributes:
        variant: variant name.
        users: n, the analysed units (one value each).
        events: numerator events of those units.
        nu: the quantile level, e.g. 0.9.
        quantile: the sample ν-quantile.
        lower, upper: the sample quantiles at the lower and upper bound levels (NaN without users).
        n_star: the n of the bound levels.
    """

    variant: str
    users: int
    events: int
    nu: float
    quantile: float
    lower: float
    upper: float
    n_star: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
