"""CUPED for ratio metrics (gbstats' regression-adjusted ratio, by the delta method).

Per arm, with the user as the unit, four per-user quantities: m and d (the metric's numerator and
denominator in the experiment) and m⁻ and d⁻ (the same over the pre-period). With β = their means and Λ
their 4×4 covariance (ddof 1), the arm's adjusted ratio is

    R̃ = m̄/d̄ − θ · m̄⁻/d̄⁻,    Var(R̃) = ∇ᵀΛ∇ / n,    ∇ = (1/d̄, −m̄/d̄², −θ/d̄⁻, θ·m̄⁻/d̄⁻²),

and one θ for both arms minimises the summed per-user variance of the post ratio minus θ times the pre
ratio: θ = Σ_arms Cov(R, R⁻) / Σ_arms Var(R⁻), both by the delta method (gbstats'
``compute_theta_regression_adjusted_ratio``). The relative lift (R̃_T − R̃_C)/|R_C| divides by the
*unadjusted* control ratio, its variance by the delta method through all eight means (gbstats'
``frequentist_variance_relative_cuped_ratio``).

Reference: Deng, Xu, Kohavi, Walker (2013), "Improving the sensitivity of online controlled experiments
by utilizing pre-experiment data" (CUPED), §3.4 for ratio metrics; GrowthBook's gbstats
(``models/statistics.py``, ``frequentist/tests.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import (
    Alternative,
    Result,
    StatsInputError,
    check_alpha,
    check_alternative,
    check_choice,
)
from battleground.stats._tests import Distribution, EffectResult, _effect, welch_df

__all__ = ["RatioCupedSummary", "ratio_cuped_test", "ratio_cuped_theta"]

_NAMES = ("m", "d", "mp", "dp")  # numerator, denominator, pre-period numerator, pre-period denominator


@dataclass(frozen=True)
class RatioCupedSummary(Result):
    """One arm of a ratio metric with its pre-period numerator and denominator.

    ``sums`` are Σ of (m, d, mp, dp) around ``shifts``; ``products`` the 4×4 matrix of Σ of their
    products (around the same shifts), as nested tuples. Build one with :meth:`from_arrays`,
    :meth:`from_sums` (gbstats' raw sums) or :meth:`from_metric_sums` (a store's ``MetricSums``).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> d = rng.poisson(5, 200) + 1.0
        >>> s = RatioCupedSummary.from_arrays(d * 0.3, d, d * 0.25, d)
        >>> round(s.ratio, 3)
        0.3
    """

    n: float
    sums: tuple[float, float, float, float]
    products: tuple[tuple[float, ...], ...]
    shifts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_arrays(cls, m: Any, d: Any, m_pre: Any, d_pre: Any) -> RatioCupedSummary:
        """From per-user arrays (one entry per user)."""
        cols = [np.asarray(a, dtype=float).ravel() for a in (m, d, m_pre, d_pre)]
        if len({c.size for c in cols}) != 1:
            raise StatsInputError(f"m, d, m_pre and d_pre must have one value per user each, got sizes "
                                  f"{[c.size for c in cols]}")
        x = np.column_stack(cols)
        return cls(float(len(x)), tuple(float(v) for v in x.sum(axis=0)),  # type: ignore[arg-type]
                   tuple(tuple(float(v) for v in row) for row in x.T @ x))

    @classmethod
    def from_sums(cls, n: float, sums: Any, products: Any) -> RatioCupedSummary:
        """From raw Σ (m, d, mp, dp) and their 4×4 Σ of products."""
        s = tuple(float(v) for v in sums)
        p = np.asarray(products, dtype=float)
        if len(s) != 4 or p.shape != (4, 4):
            raise StatsInputError(f"give 4 sums and a 4×4 matrix of sums of products, got {len(s)} and {p.shape}")
        return cls(float(n), s, tuple(tuple(float(v) for v in row) for row in p))  # type: ignore[arg-type]

    @classmethod
    def from_metric_sums(cls, s: Any) -> RatioCupedSummary:
        """From a store's ``MetricSums`` of a ratio metric (x = m, y = d, c = m⁻, e = d⁻; e is around the
        denominator's shift)."""
        ky = float(s.shift_y)
        p = ((s.sum_x2, s.sum_xy, s.sum_xc, s.sum_xe), (s.sum_xy, s.sum_y2, s.sum_yc, s.sum_ye),
             (s.sum_xc, s.sum_yc, s.sum_c2, s.sum_ce), (s.sum_xe, s.sum_ye, s.sum_ce, s.sum_e2))
        return cls(float(s.users), (float(s.sum_x), float(s.sum_y), float(s.sum_c), float(s.sum_e)),
                   tuple(tuple(float(v) for v in row) for row in p),
                   (float(s.shift_x), ky, float(s.shift_c), ky))

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(β, Λ): the means of (m, d, mp, dp) and their covariance matrix (ddof 1)."""
        if not self.n >= 2:
            raise StatsInputError(f"ratio CUPED needs at least 2 users per arm, got n={self.n!r}")
        s = np.asarray(self.sums, dtype=float)
        p = np.asarray(self.products, dtype=float)
        cov = (p - np.outer(s, s) / self.n) / (self.n - 1)
        var = np.diag(cov)
        if np.any(var < -1e-9 * np.maximum(np.abs(np.diag(p)) / self.n, 1.0)):
            bad = _NAMES[int(np.argmin(var))]
            raise StatsInputError(f"the sums of {bad} imply a negative variance ({var.min()!r}); they are not "
                                  "the sums of one set of users")
        return np.asarray(self.shifts) + s / self.n, cov

    @property
    def ratio(self) -> float:
        """The unadjusted ratio Σm/Σd (NaN when Σd = 0)."""
        beta = np.asarray(self.shifts) + np.asarray(self.sums) / self.n
        return float(beta[0] / beta[1]) if beta[1] != 0 else math.nan


def _grad(beta: np.ndarray, theta: float) -> np.ndarray:
    """∇ of m̄/d̄ − θ·m̄⁻/d̄⁻ with respect to the four means."""
    m, d, mp, dp = beta
    if theta == 0.0:  # no adjustment: the pre-period means need not exist
        return np.array([1 / d, -m / d**2, 0.0, 0.0])
    return np.array([1 / d, -m / d**2, -theta / dp, theta * mp / dp**2])


def ratio_cuped_theta(control: RatioCupedSummary, treatment: RatioCupedSummary) -> float:
    """θ = Σ_arms Cov(R, R⁻) / Σ_arms Var(R⁻) (per user, by the delta method); 0 when the pre-period
    ratio has no variance."""
    cov = var = 0.0
    for arm in (control, treatment):
        beta, lam = arm.moments()
        g = _grad(beta, -1.0)  # ∇(R + R⁻): its post half is ∇R, its pre half ∇R⁻
        cov += float(g[2:] @ lam[2:, :2] @ g[:2])
        var += float(g[2:] @ lam[2:, 2:] @ g[2:])
    return cov / var if var > 0 else 0.0


def ratio_cuped_test(
    control: Any,
    treatment: Any,
    *,
    relative: bool = True,
    distribution: Distribution = "t",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> EffectResult:
    """CUPED for a ratio metric ΣM/ΣD: the pre-period ratio ΣM⁻/ΣD⁻ is the covariate (module docstring).

    Args:
        control, treatment: :class:`RatioCupedSummary` or a store's ``MetricSums`` of a ratio metric
            with a lookback (its ``sum_e…`` sums).
        relative: the lift (R̃_T − R̃_C)/|R_C| (default), else the absolute difference R̃_T − R̃_C.

    Returns:
        An :class:`EffectResult` with ``metric="cuped_ratio"``, ``theta`` and ``variance_reduction`` =
        1 − Var(adjusted difference)/Var(unadjusted difference).

    Example (gbstats' ``test_two_sided_ttest_test_runs_ratio_ra`` gives −0.0007 ± 0.00391):
        >>> a = RatioCupedSummary.from_sums(100, (485.11, 679.91, 192.59, 290.14), [
        ...     [2715.48, 3602.15, 1113.62, 1559.29], [3602.15, 4939.42, 1460.32, 2130.94],
        ...     [1113.62, 1460.32, 460.08, 634.24], [1559.29, 2130.94, 634.24, 920.95]])
        >>> b = RatioCupedSummary.from_sums(100, (514.78, 705.41, 206.94, 302.54), [
        ...     [2994.90, 3918.16, 1237.10, 1701.03], [3918.16, 5291.37, 1604.08, 2292.08],
        ...     [1237.10, 1604.08, 514.29, 698.42], [1701.03, 2292.08, 698.42, 994.45]])
        >>> r = ratio_cuped_test(a, b)
        >>> round(r.estimate, 4), round(r.se, 4)
        (-0.0007, 0.0039)
    """
    alpha = check_alpha(alpha)
    alternative = check_alternative(alternative)
    check_choice("distribution", distribution, ("t", "normal"))
    c = _summary(control, "control")
    t = _summary(treatment, "treatment")
    (bc, lc), (bt, lt) = c.moments(), t.moments()
    for name, beta in (("control", bc), ("treatment", bt)):
        if not beta[1] > 0:
            raise StatsInputError(
                f"{name}'s mean denominator is {float(beta[1])!r}; a ratio needs denominator events (> 0) in each arm"
            )
    # without pre-period denominators in an arm there is no pre-period ratio: θ = 0, the plain ratio
    theta = ratio_cuped_theta(c, t) if bc[3] > 0 and bt[3] > 0 else 0.0
    gc, gt = _grad(bc, theta), _grad(bt, theta)
    vm_c, vm_t = max(float(gc @ lc @ gc), 0.0) / c.n, max(float(gt @ lt @ gt), 0.0) / t.n
    # θ = 0 leaves the plain ratio; its pre-period term is skipped, not 0·(0/0) = NaN when an arm has no
    # pre-period denominator
    adj_c = bc[0] / bc[1] - (theta * bc[2] / bc[3] if theta else 0.0)
    adj_t = bt[0] / bt[1] - (theta * bt[2] / bt[3] if theta else 0.0)
    g0c, g0t = _grad(bc, 0.0), _grad(bt, 0.0)
    plain = float(g0c @ lc @ g0c) / c.n + float(g0t @ lt @ g0t) / t.n
    reduction = 1.0 - (vm_c + vm_t) / plain if plain > 0 else 0.0
    r_c = float(bc[0] / bc[1])
    rel_var = None
    if relative and r_c != 0:
        den, g, sign = abs(r_c), adj_t - adj_c, math.copysign(1.0, r_c)
        # L = g/|R_C|: ∂L/∂R_C = −(|R_C| + sign·g)/R_C² (R_C is in the adjusted control mean and in
        # |R_C|; gbstats writes the R_C > 0 case), then through m̄_C and d̄_C; the pre-period terms
        # are the arm's own over |R_C|
        k = -(den + sign * g) / den**2
        grad_c = np.array([k / bc[1], -k * bc[0] / bc[1] ** 2, -gc[2] / den, -gc[3] / den])
        rel_var = float(grad_c @ lc @ grad_c) / c.n + float((gt / den) @ lt @ (gt / den)) / t.n
    return _effect(
        metric="cuped_ratio", mean_c=adj_c, vm_c=vm_c, n_c=c.n, mean_t=adj_t, vm_t=vm_t, n_t=t.n,
        df=welch_df(vm_c * c.n, c.n, vm_t * t.n, t.n), relative=relative, relative_ci="delta",
        distribution=distribution, alpha=alpha, alternative=alternative, method="welch",
        control_mean=r_c, treatment_mean=float(bt[0] / bt[1]), rel_var=rel_var, rel_den=r_c,
        theta=theta, variance_reduction=float(reduction),
    )


def _summary(obj: Any, name: str) -> RatioCupedSummary:
    if isinstance(obj, RatioCupedSummary):
        return obj
    if all(hasattr(obj, a) for a in ("users", "sum_x", "sum_y", "sum_c", "sum_e")):
        return RatioCupedSummary.from_metric_sums(obj)
    raise StatsInputError(f"{name} must be a RatioCupedSummary or a ratio metric's MetricSums, got {type(obj).__name__}")
