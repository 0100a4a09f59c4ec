"""One-sided sequential test: gbstats' one-sided asymptotic confidence sequence (Waudby-Smith et al.
2023, eq. 134), for designs that only ask "is the variant better?".

With n the users of both arms, s² = n·SE² and ρ = √((−2 ln 2α + ln(1 − 2 ln 2α)) / N*):

    half-width = √(s² · 2(nρ² + 1)/(nρ)² · ln(1 + √(nρ² + 1)/(2α)))
    "greater":  [Δ̂ − half-width, ∞)        "less":  (−∞, Δ̂ + half-width]

valid at every look simultaneously. The p-value is the smallest α whose bound excludes 0 (ρ held at
the design's α, as gbstats' bisection does), in closed form:

    p = √(nρ² + 1) / (2(exp(Δ̂²(nρ)²/(2s²(nρ² + 1))) − 1))    (capped at 1; 1 when Δ̂ points the other way)

gbstats reports the same p by bisection clamped to [1e-5, 0.4999].
"""

from __future__ import annotations

import math

from battleground.stats._base import StatsInputError, check_alpha, check_finite, check_positive
from battleground.stats._sequential import SequentialResult

__all__ = ["one_sided_confidence_sequence", "one_sided_rho"]


def one_sided_rho(alpha: float, n_star: float) -> float:
    """gbstats' ``sequential_rho(alpha, N*, two_sided=False)``."""
    a2 = 2.0 * alpha
    return math.sqrt((-2.0 * math.log(a2) + math.log(-2.0 * math.log(a2) + 1.0)) / n_star)


def one_sided_confidence_sequence(
    estimate: float,
    se: float,
    n: float,
    *,
    n_star: float = 5000.0,
    alpha: float = 0.05,
    alternative: str = "greater",
    previous: SequentialResult | None = None,
) -> SequentialResult:
    """gbstats' one-sided sequential test at one look (``alternative`` "greater" or "less");
    ``previous`` (the last look's result) keeps the running p-value and bound.

    Example (gbstats' ``TestSequentialOneSidedGreaterTTest``, absolute difference):
        >>> r = one_sided_confidence_sequence(0.23437666666666668, 0.12983081254184736, 6461)
        >>> round(r.ci_lower, 5), round(r.p_value, 3)
        (-0.12657, 0.463)
    """
    alpha = check_alpha(alpha)
    if not alpha < 0.5:
        raise StatsInputError(f"alpha of a one-sided sequential test must be < 0.5, got {alpha!r}")
    if alternative not in ("greater", "less"):
        raise StatsInputError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    estimate = check_finite("estimate", estimate)
    se = check_positive("se", float(se))
    n = check_positive("n", float(n))
    check_positive("n_star", n_star)
    rho = one_sided_rho(alpha, n_star)
    s2 = se * se * n
    a = n * rho * rho
    scale = 2.0 * (a + 1.0) / (n * rho) ** 2
    half = math.sqrt(s2 * scale * math.log(1.0 + math.sqrt(a + 1.0) / (2.0 * alpha)))
    toward = estimate > 0 if alternative == "greater" else estimate < 0
    if toward:
        expo = estimate * estimate / (s2 * scale)
        p = 1.0 if expo <= 0 else min(1.0, math.sqrt(a + 1.0) / (2.0 * math.expm1(expo)))
    else:
        p = 1.0
    lo, hi = (estimate - half, math.inf) if alternative == "greater" else (-math.inf, estimate + half)
    if previous is not None:
        p = min(p, previous.p_value)
        lo, hi = max(lo, previous.ci_lower), min(hi, previous.ci_upper)
    return SequentialResult(
        method=f"confidence_sequence_{alternative}", estimate=float(estimate), se=float(se), tau2=None,
        n_star=float(n_star), likelihood_ratio=None, p_value=float(p), ci_lower=float(lo), ci_upper=float(hi),
        alpha=alpha, boundary_crossed=p <= alpha,
    )
