"""Mid-experiment power (gbstats' ``MidExperimentPower``): given what has been seen, the power to detect
the planned MDE if the experiment runs with k times more users, and the k (and users) that reach the
target power.

With σ̂² the current variance of the effect estimate (SE²) over n users of the pair, adding k·n users
leaves V(k) = σ̂²/(1 + k). With m tests (variants − 1) × goal metrics (when corrected), the multiplier
is z = Φ⁻¹(1 − α/(2m)) and the power per test is targeted at target^(1/goal metrics). Then

    frequentist:  power(k) = 1 − Φ((z√V − δ)/√V) + Φ(−(z√V + δ)/√V)
    sequential:   the same with z√V replaced by the confidence-sequence half-width at n(1 + k) users
                  (tuning N*, level α/m; :func:`battleground.stats.confidence_sequence`)
    Bayesian (proper prior N(μ₀, σ₀²)): half-width V·√(1/σ₀² + 1/V)·z, shifted by V·μ₀/σ₀²

k is found as gbstats does: doubling from 1 until the power is reached (27 times at most), then
bisection to |power − target| < 1e-5; k = 0 when the experiment is already powered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from battleground.stats._base import Result, StatsInputError, check_alpha, lazy_module
from battleground.stats._sequential import _cs_halfwidth, _cs_rho

_st = lazy_module("scipy.stats")

__all__ = ["MidExperimentPowerResult", "mid_experiment_power", "power_after"]


@dataclass(frozen=True)
class MidExperimentPowerResult(Result):
    """Power now and at the planned end, and what it takes to reach the target.

    Attributes:
        power_now: power to detect ``mde`` with the users seen so far (k = 0).
        power_at_plan: power at the planned end (``planned_users``), NaN without a plan.
        scaling_factor: k, the multiple of the current users still needed (0 = already powered; None
            when even 2²⁷ times more users would not do).
        additional_users: k · users (None as above).
        additional_days: the extra days at the current rate of users per day (NaN without a rate).
        target_power: the target (per test: target^(1/goal metrics)).
    """

    users: float
    mde: float
    power_now: float
    power_at_plan: float
    scaling_factor: float | None
    additional_users: float | None
    additional_days: float
    target_power: float
    alpha: float
    method: str
    message: str


def power_after(
    scaling_factor: float,
    *,
    se: float,
    users: float,
    mde: float,
    alpha: float = 0.05,
    n_tests: int = 1,
    sequential: bool = False,
    n_star: float = 5000.0,
    prior_mean: float | None = None,
    prior_variance: float | None = None,
) -> float:
    """gbstats' ``MidExperimentPower.power(k)``: two-sided power to detect ``mde`` with (1 + k)·users."""
    v = se * se / (1.0 + scaling_factor)
    z = float(_st.norm.isf(alpha / (2 * n_tests)))
    sd = math.sqrt(v)
    delta = abs(mde)
    ncdf = _st.norm.cdf
    if prior_variance is not None:
        mu = 0.0 if prior_mean is None else prior_mean
        num_1 = v * math.sqrt(1.0 / prior_variance + 1.0 / v) * z
        num_2 = v * mu / prior_variance
        return float(1 - ncdf((num_1 - num_2 - delta) / sd) + ncdf(-(num_1 + num_2 + delta) / sd))
    if sequential:
        level = alpha / n_tests
        # s² = n·σ̂² stays; the sequence is evaluated at n(1 + k) users
        half = _cs_halfwidth(sd, users * (1.0 + scaling_factor), level, _cs_rho(level, n_star))
    else:
        half = z * sd
    return float(1 - ncdf((half - delta) / sd) + ncdf(-(half + delta) / sd))


def mid_experiment_power(
    se: float,
    users: float,
    mde: float,
    *,
    alpha: float = 0.05,
    target_power: float = 0.8,
    n_goal_metrics: int = 1,
    n_variants: int = 2,
    corrected: bool = True,
    sequential: bool = False,
    n_star: float = 5000.0,
    prior_mean: float | None = None,
    prior_variance: float | None = None,
    planned_users: float | None = None,
    users_per_day: float | None = None,
) -> MidExperimentPowerResult:
    """Mid-experiment power of one comparison (gbstats' method).

    Args:
        se: the current standard error of the effect (on the scale of ``mde``: relative lift for a
            relative MDE).
        users: users of the pair (control + variant) so far.
        mde: the planned minimum detectable effect (its sign is ignored).
        n_goal_metrics, n_variants, corrected: gbstats' multiplicity (m = (variants − 1) × goal metrics
            when ``corrected``; the target power is spread as target^(1/goal metrics) either way).
        sequential, n_star: power of the confidence sequence (gbstats' sequential engine).
        prior_mean, prior_variance: a proper Gaussian prior of the Bayesian engine.
        planned_users: users of the pair at the planned end (for ``power_at_plan``).
        users_per_day: the current rate, to turn the extra users into days.

    Example (gbstats' ``test_midexperimentpower``: 500 vs 500 users, relative MDE 5 %):
        >>> r = mid_experiment_power(0.09179789598577322, 1000, 0.05)
        >>> round(r.scaling_factor, 4)
        25.457
    """
    alpha = check_alpha(alpha)
    if not (0 < target_power < 1):
        raise StatsInputError(f"target_power must be in (0, 1), got {target_power!r}")
    if not (math.isfinite(se) and se > 0):
        raise StatsInputError(f"se must be finite and > 0, got {se!r}; the comparison has no variance yet")
    if not (math.isfinite(users) and users >= 2):
        raise StatsInputError(f"users must be >= 2, got {users!r}")
    if not (math.isfinite(mde) and mde != 0):
        raise StatsInputError(f"mde must be a non-zero number, got {mde!r} (e.g. 0.05 for +5 %)")
    if prior_variance is not None and not (math.isfinite(prior_variance) and prior_variance > 0):
        raise StatsInputError(f"prior_variance must be > 0, got {prior_variance!r}")
    n_tests = max(1, (n_variants - 1) * n_goal_metrics) if corrected and prior_variance is None else 1
    goal = target_power ** (1.0 / max(1, n_goal_metrics))

    def pw(k: float) -> float:
        return power_after(k, se=se, users=users, mde=mde, alpha=alpha, n_tests=n_tests, sequential=sequential,
                           n_star=n_star, prior_mean=prior_mean, prior_variance=prior_variance)

    now = pw(0.0)
    at_plan = math.nan
    if planned_users is not None and math.isfinite(planned_users) and planned_users > 0:
        at_plan = pw(max(planned_users / users - 1.0, 0.0))
    method = "bayesian" if prior_variance is not None else "sequential" if sequential else "frequentist"
    k: float | None
    if now > goal:
        k, msg = 0.0, "already powered"
    else:
        k = 1.0
        cur = pw(k)
        for _ in range(27):
            if cur >= goal:
                break
            k *= 2
            cur = pw(k)
        if cur < goal:
            k, msg = None, f"even {2 ** 27:,} times the current users would not reach the target power"
        else:
            lo, hi = 0.0, k
            diff = cur - goal
            for _ in range(100):
                if diff > 0:
                    hi = k
                else:
                    lo = k
                k = 0.5 * (lo + hi)
                diff = pw(k) - goal
                if abs(diff) < 1e-5:
                    break
            msg = "more users needed"
    extra = None if k is None else k * users
    days = math.nan
    if extra is not None and users_per_day is not None and users_per_day > 0:
        days = extra / users_per_day
    return MidExperimentPowerResult(
        users=float(users), mde=abs(float(mde)), power_now=now, power_at_plan=at_plan, scaling_factor=k,
        additional_users=extra, additional_days=days, target_power=target_power, alpha=alpha, method=method,
        message=msg,
    )
