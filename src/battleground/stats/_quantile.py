"""Quantile metrics: the treatment effect on the ν-quantile of a per-user value (p50, p90, p99 …).

The estimator of Deng, Knoblich and Yu (2018, "Applying the Delta Method in Metric Analytics", §4.3),
as gbstats' ``QuantileStatistic``: the sample quantile q̂ of each arm and the order statistics that
bracket its 95 % interval. With n* the n the bound levels were computed for,

    levels  ν∓ = ν ∓ z·√(ν(1−ν)/n*)            (clamped to [1e-8, 1 − 1e-8]; z = Φ⁻¹(0.975))
    L, U    = the sample quantiles at ν−, ν+    (computed in the scan, ``storage/_quantile_sql.py``)
    Var(q̂)  = (n*/n)·((n−1)/n)·((U − L)/(2z))²  (gbstats' variance_init / n)

The two arms are independent, so the absolute effect q̂_T − q̂_C has variance Var_C + Var_T and the
relative effect (q̂_T − q̂_C)/|q̂_C| the delta-method variance Var_T/q̂_C² + Var_C·q̂_T²/q̂_C⁴; both
are asymptotically normal, so the fixed-horizon test is a z-test and the sequential one is mSPRT on
the same estimate (:func:`battleground.stats.msprt`, τ = ``mixing_sd`` on the relative scale, τ =
``mixing_sd``·|q̂_C| on the absolute one).

An arm has no variance to work with (gbstats' zero-variance rule) when n ≤ z²ν/(1−ν) or
n ≤ z²(1−ν)/ν (a bound level would leave (0, 1)), or when the bounds collapse (L = U: ties at the
quantile, e.g. all-zero values): its variance is unresolved rather than 0, so a comparison with such an
arm raises a
:class:`StatsInputError`, and :func:`battleground.stats.analyze_metrics` shows it without a p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from battleground._quantiles import Z95, bound_levels
from battleground.stats._base import IntervalResult, StatsInputError, check_alpha, check_positive
from battleground.stats._tests import infer

__all__ = ["QuantileTestResult", "quantile_bound_levels", "quantile_test", "quantile_variance"]



def quantile_bound_levels(nu: float, n_star: float) -> tuple[float, float]:
    """The levels of the order statistics that bound the 95 % interval of the ν-quantile at n*.

    Example (gbstats' p90 with n* = 11054):
        >>> [round(v, 6) for v in quantile_bound_levels(0.9, 11054)]
        [0.894407, 0.905593]
    """
    nu = _check_nu(nu)
    if not n_star > 0:
        raise StatsInputError(f"n_star must be > 0, got {n_star!r}; pass the arm's number of units")
    return bound_levels(nu, n_star)


def _check_nu(nu: float) -> float:
    if isinstance(nu, bool) or not isinstance(nu, int | float) or not 0.0 < nu < 1.0:
        raise StatsInputError(f"nu (the quantile level) must be in (0, 1), e.g. 0.9 for p90, got {nu!r}")
    return float(nu)


def _field(s: Any, name: str, where: str) -> float:
    try:
        return float(getattr(s, name))
    except (AttributeError, TypeError, ValueError):
        raise StatsInputError(f"{where}: needs a numeric {name!r} (a QuantileSums), got {s!r}") from None


def quantile_variance(s: Any, where: str = "quantile") -> float:
    """Var(q̂) of one arm from its :class:`~battleground.storage.sums.QuantileSums` (0.0 when the arm
    has no usable variance: too few units for the bound levels, or collapsed bounds).

    Example (gbstats' control arm, p90, n = n* = 11054):
        >>> from battleground.storage.sums import QuantileSums
        >>> s = QuantileSums("c", 11054, 11054, 0.9, 7.157987489967789, 7.098780136176828,
        ...                  7.217194843758751, 11054)
        >>> round(quantile_variance(s), 12)
        0.000912464191
    """
    n = _field(s, "users", where)
    nu = _check_nu(_field(s, "nu", where))
    lo, hi, n_star = _field(s, "lower", where), _field(s, "upper", where), _field(s, "n_star", where)
    if n <= 1 or not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0
    if hi < lo:
        raise StatsInputError(f"{where}: upper bound {hi!r} is below lower bound {lo!r}; the bounds are "
                              "the sample quantiles at the lower and upper level, recompute them")
    if n <= Z95**2 * nu / (1.0 - nu) or n <= Z95**2 * (1.0 - nu) / nu:
        return 0.0  # a bound level would leave (0, 1): gbstats' zero-variance rule
    return (n_star / n) * ((n - 1.0) / n) * ((hi - lo) / (2.0 * Z95)) ** 2


def quantile_arm(s: Any, where: str = "quantile") -> tuple[float, float]:
    """(q̂, Var(q̂)) of one arm (Var 0.0 when it has none; q̂ NaN without units)."""
    n = _field(s, "users", where)
    if n < 1:
        return math.nan, 0.0
    return _field(s, "quantile", where), quantile_variance(s, where)


@dataclass(frozen=True)
class QuantileTestResult(IntervalResult):
    """A treatment-vs-control comparison of one quantile.

    Attributes:
        nu: the quantile level.
        method: "z" (fixed horizon) or "msprt" (always valid at any look).
        relative: whether ``estimate`` is the relative effect (fraction, 0.05 = +5 %).
        control_quantile, treatment_quantile: the arms' sample quantiles; n_control, n_treatment: units.
        estimate, se: the effect and its standard error (delta method when relative).
        p_value, ci_lower, ci_upper: at level ``alpha`` (always-valid for "msprt").
        tau2: the mSPRT mixing variance (``None`` for "z").
    """

    nu: float
    method: str
    relative: bool
    control_quantile: float
    treatment_quantile: float
    n_control: float
    n_treatment: float
    estimate: float
    se: float
    p_value: float
    ci_lower: float
    ci_upper: float
    alpha: float
    tau2: float | None = None


def quantile_test(
    control: Any,
    treatment: Any,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    sequential: bool = False,
    mixing_sd: float = 0.1,
) -> QuantileTestResult:
    """Compare the ν-quantile of two arms (:class:`~battleground.storage.sums.QuantileSums` or any
    object with ``users``, ``nu``, ``quantile``, ``lower``, ``upper``, ``n_star``).

    Example (gbstats' p90 case, 11054 vs 10861 users):
        >>> from battleground.storage.sums import QuantileSums
        >>> c = QuantileSums("c", 11054, 0, 0.9, 7.157987489967789, 7.098780136176828, 7.217194843758751, 11054)
        >>> t = QuantileSums("t", 10861, 0, 0.9, 7.694499927525767, 7.64180598628119, 7.747193868770344, 10861)
        >>> r = quantile_test(c, t)
        >>> round(r.estimate, 6), round(r.ci_lower, 6), round(r.ci_upper, 6)
        (0.536512, 0.457256, 0.615769)
    """
    alpha = check_alpha(alpha)
    check_positive("mixing_sd", mixing_sd)
    nu_c, nu_t = _check_nu(_field(control, "nu", "control")), _check_nu(_field(treatment, "nu", "treatment"))
    if nu_c != nu_t:
        raise StatsInputError(f"control and treatment are different quantiles (nu {nu_c!r} and {nu_t!r}); "
                              "compare the same quantile level in both arms")
    qc, vc = quantile_arm(control, "control")
    qt, vt = quantile_arm(treatment, "treatment")
    nc, nt = _field(control, "users", "control"), _field(treatment, "users", "treatment")
    if not (vc > 0 and vt > 0) or not (math.isfinite(qc) and math.isfinite(qt)):
        raise StatsInputError(
            f"the p{100 * nu_c:g} has no usable variance in an arm (control: {nc:g} units, bounds "
            f"{_field(control, 'lower', 'control')!r}..{_field(control, 'upper', 'control')!r}; treatment: "
            f"{nt:g} units): too few units for the bound levels, or every value tied at the quantile; "
            "wait for more users or choose a level inside the data's spread"
        )
    diff = qt - qc
    if relative:
        if qc == 0:
            raise StatsInputError(f"the control's p{100 * nu_c:g} is 0, so the relative effect is undefined; "
                                  "use relative=False")
        est = diff / abs(qc)
        se = math.sqrt(vt + vc * (qt / qc) ** 2) / abs(qc)
    else:
        est, se = diff, math.sqrt(vc + vt)
    if sequential:
        from battleground.stats._sequential import msprt

        tau2 = mixing_sd**2 if relative else (mixing_sd * abs(qc)) ** 2
        if not tau2 > 0:
            raise StatsInputError("the control's quantile is 0, so the absolute mixing τ = mixing_sd·|q̂_C| is 0; "
                                  "give relative=True or a control with a non-zero quantile")
        seq = msprt(est, se, tau2=tau2, alpha=alpha)
        p, lo, hi, method, t2 = seq.p_value, seq.ci_lower, seq.ci_upper, "msprt", tau2
    else:
        _, p, lo, hi = infer(est, se, math.inf, alpha, "two-sided")
        method, t2 = "z", None
    return QuantileTestResult(
        nu=nu_c, method=method, relative=relative, control_quantile=qc, treatment_quantile=qt,
        n_control=nc, n_treatment=nt, estimate=float(est), se=float(se), p_value=float(p),
        ci_lower=float(lo), ci_upper=float(hi), alpha=alpha, tau2=t2,
    )
