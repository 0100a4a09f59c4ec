"""Planning: sample size, power, minimum detectable effect and duration.

Notation: z_α = z_{1−α/2} (two-sided) or z_{1−α} (one-sided), z_β = z_{power}, δ = p₂ − p₁ (or μ₂ − μ₁),
r = n_treatment / n_control (allocation ratio). With k arms, each of the k − 1 treatment-vs-control
comparisons uses α/(k − 1) (Bonferroni) and every treatment arm gets r·n_control users.

Proportion formulas, per control group (``method=``):

==========================  ======================================================================
``"unpooled"`` (default)    n = (z_α + z_β)² (p₁q₁ + p₂q₂/r) / δ² — the normal approximation that
                            matches battleground's unpooled z/Welch test
``"cohens_h"``              h = 2 asin√p₂ − 2 asin√p₁, solved with statsmodels' NormalIndPower
                            power (which adds the tiny opposite-tail term)
``"cohens_h_closed_form"``  n = (z_α + z_β)² (1 + 1/r) / h²
``"pooled"``                Fleiss without continuity correction (statsmodels' samplesize_proportions_2indep_onetail)
``"evan_miller"``           n = (z_α √(p₁q₁(1+1/r)) + z_β √(p₁q₁ + p₂q₂/r))² / δ²
``"baseline_variance"``     n = (z_α + z_β)² p₁q₁ (1 + 1/r) / δ² (spotify-confidence)
==========================  ======================================================================

Direction: ``mde`` is always the *size* of the change (> 0); ``alternative="greater"`` plans for an
increase of that size, ``"less"`` for a decrease (statsmodels: a negative effect with
``alternative="smaller"``; its names ``"larger"``/``"smaller"`` are accepted too), ``"two-sided"`` for
either. Every function matches statsmodels for every alternative (tests/data/ab/h_planning_alternatives.json).
Root finding is bounded (a bracket that doubles at most 200 times, brentq with at most 200 iterations):
a call returns or raises, it never hangs.

Means (``method=``): ``"normal"`` (default) n = (z_α + z_β)² σ² (1 + 1/r) / δ²; ``"normal_exact"`` the
same z-test solved with both tails (statsmodels NormalIndPower); ``"t"`` the noncentral-t power
(statsmodels TTestIndPower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from battleground.stats._base import (
    Alternative,
    Result,
    StatsInputError,
    as_ratio_summary,
    check_alpha,
    check_alternative,
    check_choice,
    check_positive,
    lazy_module,
)

optimize = lazy_module("scipy.optimize")
_st = lazy_module("scipy.stats")

__all__ = [
    "DurationResult",
    "MdeResult",
    "PowerResult",
    "SampleSizeResult",
    "estimate_duration",
    "mde_means",
    "mde_proportions",
    "power_means",
    "power_proportions",
    "sample_size_means",
    "sample_size_proportions",
    "sample_size_ratio",
]

PROPORTION_METHODS = (
    "unpooled", "cohens_h", "cohens_h_closed_form", "pooled", "evan_miller", "baseline_variance",
)
MEAN_METHODS = ("normal", "normal_exact", "t")

_FORMULAS = {
    "unpooled": "unpooled normal approximation: n = (z_a+z_b)^2 (p1q1 + p2q2/r) / d^2",
    "cohens_h": "Cohen's h with statsmodels NormalIndPower (both tails)",
    "cohens_h_closed_form": "Cohen's h closed form: n = (z_a+z_b)^2 (1+1/r) / h^2",
    "pooled": "pooled-null (Fleiss, no continuity correction)",
    "evan_miller": "Evan Miller: n = (z_a sqrt(p1q1(1+1/r)) + z_b sqrt(p1q1+p2q2/r))^2 / d^2",
    "baseline_variance": "baseline variance in both arms: n = (z_a+z_b)^2 p1q1 (1+1/r) / d^2",
    "normal": "normal approximation: n = (z_a+z_b)^2 sigma^2 (1+1/r) / d^2",
    "normal_exact": "two-sided z-test power with both tails (statsmodels NormalIndPower)",
    "t": "noncentral t power (statsmodels TTestIndPower)",
}


@dataclass(frozen=True)
class SampleSizeResult(Result):
    """Required users; ``n_control``/``n_treatment`` are before rounding up, ``*_ceil`` after.

    ``n_total`` = n_control_ceil + (n_arms − 1)·n_treatment_ceil.
    """

    metric: str
    method: str
    formula: str
    baseline: float | None
    effect: float
    relative_effect: float | None
    std: float | None
    alpha: float
    alpha_per_comparison: float
    power: float
    alternative: str
    ratio: float
    n_arms: int
    n_control: float
    n_treatment: float
    n_control_ceil: int
    n_treatment_ceil: int
    n_total: int

    @property
    def per_group(self) -> float:
        return self.n_control


@dataclass(frozen=True)
class PowerResult(Result):
    """Power of the test at the given sizes and effect."""

    metric: str
    method: str
    n_control: float
    n_treatment: float
    effect: float
    alpha: float
    alternative: str
    power: float


@dataclass(frozen=True)
class MdeResult(Result):
    """Smallest effect detectable with the given power (absolute, and relative to the baseline)."""

    metric: str
    method: str
    n_control: float
    n_treatment: float
    baseline: float | None
    mde: float
    relative_mde: float | None
    alpha: float
    power: float
    alternative: str


@dataclass(frozen=True)
class DurationResult(Result):
    """Days needed to reach ``total_users`` at ``daily_users`` × ``traffic_fraction`` per day."""

    total_users: int
    daily_users: float
    traffic_fraction: float
    days: float
    days_ceil: int


# ---------------------------------------------------------------------------------------------------


def _check_common(alpha: float, power: float, ratio: float, alternative: str, n_arms: int) -> tuple[float, float, float, Alternative, int]:
    alpha = check_alpha(alpha)
    power = check_alpha(power, "power")
    if power <= alpha:
        raise StatsInputError(f"power must exceed alpha, got power={power!r}, alpha={alpha!r}")
    ratio = check_positive("ratio", ratio)
    alt = check_alternative(alternative)
    if not (isinstance(n_arms, int) and n_arms >= 2):
        raise StatsInputError(f"n_arms must be an integer >= 2, got {n_arms!r}")
    return alpha, power, ratio, alt, n_arms


def _z_alpha(alpha: float, alternative: str) -> float:
    return float(_st.norm.isf(alpha / 2.0 if alternative == "two-sided" else alpha))


def _check_mde(mde: float, alternative: str) -> float:
    """The size of the change to plan for (> 0); its direction is ``alternative``'s."""
    if isinstance(mde, int | float) and math.isfinite(mde) and mde < 0:
        raise StatsInputError(
            f"mde must be > 0, got {mde!r}: give the size of the change, and its direction with "
            "alternative='greater' or alternative='less'"
        )
    return check_positive("mde", mde)


def _normal_power(effect_over_se: float, alpha: float, alternative: str) -> float:
    """Power of a z-test whose statistic has mean ``effect_over_se`` (both tails when two-sided).

    The effect is signed: for ``"less"`` a decrease (negative) is what the test looks for.
    """
    if alternative == "two-sided":
        crit = _st.norm.isf(alpha / 2.0)
        return float(_st.norm.sf(crit - effect_over_se) + _st.norm.cdf(-crit - effect_over_se))
    d = effect_over_se if alternative == "greater" else -effect_over_se
    return float(_st.norm.sf(_st.norm.isf(alpha) - d))


def _t_power(d: float, n1: float, ratio: float, alpha: float, alternative: str) -> float:
    """Power of the two-sample t-test at standardised effect ``d`` (signed, as :func:`_normal_power`)."""
    n2 = n1 * ratio
    df = n1 + n2 - 2
    nc = d * math.sqrt(n1 * n2 / (n1 + n2))
    if alternative == "two-sided":
        crit = _st.t.isf(alpha / 2.0, df)
        # P(T < −c | nc) written as P(T > c | −nc): scipy's nct.cdf returns NaN far in the tail.
        lower = float(_st.nct.sf(crit, df, -nc))
        return float(_st.nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0)
    nc = nc if alternative == "greater" else -nc
    return float(_st.nct.sf(_st.t.isf(alpha, df), df, nc))


_MAX_DOUBLINGS = 200  # 2**200 users: far beyond any experiment
_MAXITER = 200


def _solve_increasing(fn: Any, target: float, lo: float, start: float, name: str) -> float:
    """Smallest x >= lo with fn(x) = target for an increasing fn (power in n, or in the effect).

    Bounded: the bracket doubles at most ``_MAX_DOUBLINGS`` times and brentq runs at most
    ``_MAXITER`` iterations; a NaN on the way is an error, never a loop.
    """
    def f(x: float) -> float:
        v = fn(x) - target
        if not math.isfinite(v):
            raise StatsInputError(f"the power is undefined at {name}={x!r}; check the inputs")
        return v

    if f(lo) >= 0:
        return float(lo)
    hi = max(start, lo) * 2.0
    for _ in range(_MAX_DOUBLINGS):
        if f(hi) >= 0:
            break
        lo, hi = hi, hi * 2.0
    else:
        raise StatsInputError(f"no {name} up to {hi:.3g} reaches the target power {target!r}")
    return float(optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-14, maxiter=_MAXITER))


def _check_plannable(square: float, effect: float) -> None:
    # 1e-280 keeps (z_α + z_β)²(1 + 1/r)/square finite for any sane α, power and ratio
    if not square > 1e-280:
        raise StatsInputError(
            f"mde is too small to plan for (standardised effect {effect!r}; its square underflows); "
            "use a larger mde"
        )


def _one_side(alternative: str) -> str:
    """Planning works with the size of the effect in the direction tested: "less" is "greater" mirrored."""
    return "two-sided" if alternative == "two-sided" else "greater"


def _result(
    metric: str, method: str, baseline: float | None, effect: float, rel: float | None,
    std: float | None, alpha: float, alpha_c: float, power: float, alternative: str, ratio: float,
    n_arms: int, n_control: float,
) -> SampleSizeResult:
    if not math.isfinite(n_control):
        raise StatsInputError(
            f"mde={effect!r} is too small to plan for: the sample size overflows; use a larger mde"
        )
    n_t = n_control * ratio
    nc, nt = math.ceil(n_control - 1e-9), math.ceil(n_t - 1e-9)
    return SampleSizeResult(
        metric=metric, method=method, formula=_FORMULAS[method], baseline=baseline, effect=effect,
        relative_effect=rel, std=std, alpha=alpha, alpha_per_comparison=alpha_c, power=power,
        alternative=alternative, ratio=ratio, n_arms=n_arms, n_control=float(n_control),
        n_treatment=float(n_t), n_control_ceil=nc, n_treatment_ceil=nt, n_total=nc + (n_arms - 1) * nt,
    )


def _check_proportion(name: str, p: float) -> float:
    if not (isinstance(p, int | float) and 0.0 < p < 1.0):
        raise StatsInputError(f"{name} must be a proportion in (0, 1), got {p!r}")
    return float(p)


def _prop_n(p1: float, p2: float, za: float, zb: float, ratio: float, method: str, alpha_c: float, power: float, alternative: str) -> float:
    q1, q2, d = 1 - p1, 1 - p2, p2 - p1
    _check_plannable(d * d, d)
    r = ratio
    if method == "unpooled":
        return (za + zb) ** 2 * (p1 * q1 + p2 * q2 / r) / d**2
    if method == "baseline_variance":
        return (za + zb) ** 2 * p1 * q1 * (1 + 1 / r) / d**2
    if method == "evan_miller":
        return (za * math.sqrt(p1 * q1 * (1 + 1 / r)) + zb * math.sqrt(p1 * q1 + p2 * q2 / r)) ** 2 / d**2
    if method == "pooled":
        pbar = (p1 + r * p2) / (1 + r)
        return (za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / r)) + zb * math.sqrt(p1 * q1 + p2 * q2 / r)) ** 2 / d**2
    h = 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))
    closed = (za + zb) ** 2 * (1 + 1 / r) / h**2
    if method == "cohens_h_closed_form":
        return closed
    side = _one_side(alternative)

    def pw(n1: float) -> float:
        return _normal_power(abs(h) * math.sqrt(n1 * r / (1 + r)), alpha_c, side)

    return _solve_increasing(pw, power, 1e-9, closed, "n_control")


def sample_size_proportions(
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    n_arms: int = 2,
    method: str = "unpooled",
) -> SampleSizeResult:
    """Users per group to detect a change of ``mde`` in a conversion rate from ``baseline``.

    Args:
        baseline: control conversion rate p₁ in (0, 1).
        mde: minimum detectable effect, > 0: absolute (p₂ − p₁) or, with ``relative=True``, a fraction
            of the baseline (0.1 = +10 %).
        ratio: n_treatment / n_control.
        n_arms: arms including control (α is split over the k − 1 comparisons).
        method: see the module docstring; default ``"unpooled"``.

    Example (``a_sample_size.json``: 10 % → 11 %):
        >>> round(sample_size_proportions(0.1, 0.01, method="cohens_h").n_control, 3)
        14744.105
        >>> sample_size_proportions(0.1, 0.01).n_control_ceil
        14749
    """
    alpha, power, ratio, alt, n_arms = _check_common(alpha, power, ratio, alternative, n_arms)
    check_choice("method", method, PROPORTION_METHODS)
    p1 = _check_proportion("baseline", baseline)
    mde = _check_mde(mde, alt)
    delta = mde * p1 if relative else mde
    p2 = p1 + (delta if alt != "less" else -delta)
    if not 0.0 < p2 < 1.0:
        raise StatsInputError(
            f"baseline {p1!r} with mde {mde!r} gives p2={p2!r}, outside (0, 1); use a smaller mde"
        )
    alpha_c = alpha / (n_arms - 1)
    za, zb = _z_alpha(alpha_c, alt), float(_st.norm.ppf(power))
    n1 = _prop_n(p1, p2, za, zb, ratio, method, alpha_c, power, alt)
    return _result(
        "proportion", method, p1, abs(p2 - p1), abs(p2 - p1) / p1, None, alpha, alpha_c, power, alt,
        ratio, n_arms, n1,
    )


def _mean_n(d: float, za: float, zb: float, ratio: float, method: str, alpha_c: float, power: float, alternative: str) -> float:
    """Users per control group; ``d`` > 0 is the standardised effect in the direction tested."""
    _check_plannable(d * d, d)
    closed = (za + zb) ** 2 * (1 + 1 / ratio) / d**2
    if method == "normal":
        return closed
    side = _one_side(alternative)
    if method == "normal_exact":
        return _solve_increasing(
            lambda n1: _normal_power(d * math.sqrt(n1 * ratio / (1 + ratio)), alpha_c, side), power,
            1e-9, closed, "n_control",
        )
    # the t-test needs df = n1(1 + r) − 2 >= 1
    return _solve_increasing(
        lambda n1: _t_power(d, n1, ratio, alpha_c, side), power, 3.0 / (1 + ratio), closed, "n_control"
    )


def sample_size_means(
    mde: float,
    std: float,
    *,
    baseline_mean: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    n_arms: int = 2,
    method: str = "normal",
) -> SampleSizeResult:
    """Users per group to detect a change of ``mde`` in a mean with per-user standard deviation ``std``.

    With ``relative=True`` the effect is ``mde × |baseline_mean|``.

    Example (``a_sample_size.json``, Cohen's d = 0.2):
        >>> round(sample_size_means(0.2, 1.0).n_control, 4)
        392.444
        >>> round(sample_size_means(0.2, 1.0, method="t").n_control, 4)
        393.4057
    """
    alpha, power, ratio, alt, n_arms = _check_common(alpha, power, ratio, alternative, n_arms)
    check_choice("method", method, MEAN_METHODS)
    mde = _check_mde(mde, alt)
    std = check_positive("std", std)
    if relative:
        if baseline_mean is None or baseline_mean == 0:
            raise StatsInputError(
                f"relative=True needs a non-zero baseline_mean, got {baseline_mean!r}"
            )
        effect = mde * abs(baseline_mean)
    else:
        effect = mde
    alpha_c = alpha / (n_arms - 1)
    za, zb = _z_alpha(alpha_c, alt), float(_st.norm.ppf(power))
    n1 = _mean_n(effect / std, za, zb, ratio, method, alpha_c, power, alt)
    rel = effect / abs(baseline_mean) if baseline_mean else None
    return _result(
        "mean", method, baseline_mean, effect, rel, std, alpha, alpha_c, power, alt, ratio, n_arms, n1
    )


def sample_size_ratio(
    pre_period: Any,
    mde: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    n_arms: int = 2,
) -> SampleSizeResult:
    """Sample size for a ratio metric (e.g. CTR = clicks/impressions per user) from pre-period data.

    The per-user variance of the ratio comes from the delta method on the pre-period sums,
    σ² = (s_M² − 2R s_MD + R² s_D²)/μ_D², then the normal formula for means is used with that σ.

    Args:
        pre_period: :class:`RatioSummary`, ``MetricSums`` (x = numerator, y = denominator) or a
            ``(numerator, denominator)`` pair of per-user arrays.
        mde: relative (default, fraction of the pre-period ratio) or absolute change of the ratio.
    """
    s = as_ratio_summary(pre_period, "pre_period")
    sigma = math.sqrt(s.var_ratio() * s.n)
    if not sigma > 0:
        raise StatsInputError("pre_period: the ratio has zero variance across users; cannot plan")
    res = sample_size_means(
        mde, sigma, baseline_mean=s.ratio, relative=relative, alpha=alpha, power=power, ratio=ratio,
        alternative=alternative, n_arms=n_arms,
    )
    return SampleSizeResult(**{**res.to_dict(), "metric": "ratio"})


def power_means(
    n_control: float,
    mde: float,
    std: float,
    *,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    method: str = "normal_exact",
) -> PowerResult:
    """Power of the two-sample test of means at ``n_control`` users (treatment: ``ratio × n_control``).

    ``method``: ``"normal_exact"`` (z-test, both tails; statsmodels NormalIndPower) or ``"t"``.

    Example (``a_sample_size.json``: d = 0.1, n = 1000 per group):
        >>> round(power_means(1000, 0.1, 1.0, method="t").power, 6)
        0.608367
    """
    alpha = check_alpha(alpha)
    alt = check_alternative(alternative)
    check_choice("method", method, ("normal_exact", "normal", "t"))
    n = check_positive("n_control", n_control)
    ratio = check_positive("ratio", ratio)
    d = _check_mde(mde, alt) / check_positive("std", std)
    side = _one_side(alt)  # mde is the size of the change in the direction tested
    if method == "t":
        if n * (1 + ratio) - 2 < 1:
            raise StatsInputError(f"n_control={n!r} is too small for a t-test (df < 1); use more users")
        pw = _t_power(d, n, ratio, alpha, side)
    else:
        pw = _normal_power(d * math.sqrt(n * ratio / (1 + ratio)), alpha, side)
    return PowerResult(
        metric="mean", method=method, n_control=n, n_treatment=n * ratio, effect=mde, alpha=alpha,
        alternative=alt, power=pw,
    )


def power_proportions(
    n_control: float,
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
) -> PowerResult:
    """Power of the unpooled two-proportion z-test at ``n_control`` users per control group."""
    alpha = check_alpha(alpha)
    alt = check_alternative(alternative)
    n = check_positive("n_control", n_control)
    ratio = check_positive("ratio", ratio)
    p1 = _check_proportion("baseline", baseline)
    delta = _check_mde(mde, alt) * (p1 if relative else 1.0)
    p2 = p1 + (delta if alt != "less" else -delta)
    _check_proportion("baseline + mde", p2)
    se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / (n * ratio))
    pw = _normal_power((p2 - p1) / se, alpha, alt)
    return PowerResult(
        metric="proportion", method="unpooled", n_control=n, n_treatment=n * ratio,
        effect=p2 - p1, alpha=alpha, alternative=alt, power=pw,
    )


def mde_means(
    n_control: float,
    std: float,
    *,
    baseline_mean: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    n_arms: int = 2,
    method: str = "normal",
) -> MdeResult:
    """Minimum detectable effect for a mean (its size; for ``"less"`` a decrease of that size).

    ``method``: ``"normal"`` (default) the closed form δ = (z_α + z_β) σ √((1 + 1/r)/n_control), the
    inverse of :func:`sample_size_means`; ``"normal_exact"`` (z-test with both tails, statsmodels'
    NormalIndPower) or ``"t"`` (TTestIndPower), solved with a bounded root finder.

    Example:
        >>> round(mde_means(392.444, 1.0).mde, 4)
        0.2
    """
    alpha, power, ratio, alt, n_arms = _check_common(alpha, power, ratio, alternative, n_arms)
    check_choice("method", method, MEAN_METHODS)
    n = check_positive("n_control", n_control)
    std = check_positive("std", std)
    alpha_c = alpha / (n_arms - 1)
    closed = (_z_alpha(alpha_c, alt) + _st.norm.ppf(power)) * math.sqrt((1 + 1 / ratio) / n)
    side = _one_side(alt)
    if method == "normal":
        d = closed
    elif method == "normal_exact":
        d = _solve_increasing(
            lambda e: _normal_power(e * math.sqrt(n * ratio / (1 + ratio)), alpha_c, side), power,
            1e-12, closed, "mde",
        )
    else:
        if n * (1 + ratio) - 2 < 1:
            raise StatsInputError(f"n_control={n!r} is too small for a t-test (df < 1); use more users")
        d = _solve_increasing(lambda e: _t_power(e, n, ratio, alpha_c, side), power, 1e-12, closed, "mde")
    d *= std
    return MdeResult(
        metric="mean", method=method, n_control=n, n_treatment=n * ratio, baseline=baseline_mean,
        mde=float(d), relative_mde=float(d / abs(baseline_mean)) if baseline_mean else None,
        alpha=alpha, power=power, alternative=alt,
    )


def mde_proportions(
    n_control: float,
    baseline: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    n_arms: int = 2,
    method: str = "unpooled",
) -> MdeResult:
    """Minimum detectable (upward, or downward for ``"less"``) change of a conversion rate at n users.

    Solves ``sample_size_proportions(baseline, mde, method=method).n_control == n_control`` for mde
    (bounded: brentq on (0, the largest change the baseline allows), at most 200 iterations).
    """
    alpha, power, ratio, alt, n_arms = _check_common(alpha, power, ratio, alternative, n_arms)
    check_choice("method", method, PROPORTION_METHODS)
    n = check_positive("n_control", n_control)
    p1 = _check_proportion("baseline", baseline)
    top = (1.0 - p1 if alt != "less" else p1) * (1 - 1e-9)
    alpha_c = alpha / (n_arms - 1)
    za, zb = _z_alpha(alpha_c, alt), float(_st.norm.ppf(power))
    sign = -1.0 if alt == "less" else 1.0

    def gap(d: float) -> float:
        return _prop_n(p1, p1 + sign * d, za, zb, ratio, method, alpha_c, power, alt) - n

    if gap(top) > 0:
        raise StatsInputError(
            f"n_control={n!r} is too small to detect any change from baseline {p1!r} with "
            f"power {power!r}; add users"
        )
    lo = min(1e-12, top / 2)
    if gap(lo) <= 0:
        d = lo
    else:
        d = float(optimize.brentq(gap, lo, top, xtol=1e-14, rtol=1e-12, maxiter=_MAXITER))
    return MdeResult(
        metric="proportion", method=method, n_control=n, n_treatment=n * ratio, baseline=p1, mde=d,
        relative_mde=d / p1, alpha=alpha, power=power, alternative=alt,
    )


def estimate_duration(
    sample_size: SampleSizeResult | int,
    daily_users: float,
    *,
    traffic_fraction: float = 1.0,
) -> DurationResult:
    """Days to collect the planned users when ``daily_users`` new users arrive per day, a
    ``traffic_fraction`` of them enrolled.

    Example:
        >>> estimate_duration(sample_size_proportions(0.1, 0.01), 5000).days_ceil
        6
    """
    total = sample_size.n_total if isinstance(sample_size, SampleSizeResult) else sample_size
    if not (isinstance(total, int) and total > 0):
        raise StatsInputError(f"sample_size must be a positive integer or a SampleSizeResult, got {total!r}")
    daily = check_positive("daily_users", daily_users)
    frac = check_positive("traffic_fraction", traffic_fraction)
    if frac > 1:
        raise StatsInputError(f"traffic_fraction must be in (0, 1], got {traffic_fraction!r}")
    days = total / (daily * frac)
    return DurationResult(
        total_users=total, daily_users=daily, traffic_fraction=frac, days=float(days),
        days_ceil=math.ceil(days - 1e-9),
    )
