"""Frequentist two-arm comparisons from summary statistics.

Conventions (the same as gbstats 0.8 unless named otherwise):

* effect = treatment − control; *relative* lift = (μT − μC) / |μC| (divided by the absolute value so a
  negative baseline does not flip the sign, unlike gbstats 0.8.0);
* relative-lift variance by the delta method, Var ≈ vT/μC² + vC·μT²/μC⁴ with v the variance of each mean;
* ``distribution="t"``: Student t with Welch–Satterthwaite degrees of freedom, for absolute *and*
  relative effects (gbstats); ``distribution="normal"``: z (spotify-confidence);
* proportions use the per-user variance p(1−p); continuous metrics the ddof=1 sample variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from battleground.stats._base import (
    Alternative,
    CupedSummary,
    IntervalResult,
    MeanSummary,
    StatsInputError,
    as_cuped_summary,
    as_mean_summary,
    as_ratio_summary,
    check_alpha,
    check_alternative,
    check_choice,
    lazy_module,
)

_sp = lazy_module("scipy.special")

__all__ = [
    "EffectResult",
    "compare_means",
    "cuped_test",
    "cuped_theta",
    "infer",
    "ratio_test",
    "relative_lift",
    "t_test",
    "welch_t_test",
    "z_test_proportions",
]

Distribution = Literal["t", "normal"]
RelativeCI = Literal["delta", "absolute_over_control"]
RelativeVariance = Literal["full_delta", "gbstats_0.8"]


@dataclass(frozen=True)
class EffectResult(IntervalResult):
    """A treatment-vs-control comparison.

    Attributes:
        metric: "mean", "proportion", "ratio" or "cuped".
        method: "welch", "student" or "z".
        relative: whether ``estimate`` is a relative lift (fraction, 0.05 = +5 %).
        control_mean, treatment_mean: the arms' (unadjusted) means or ratios.
        n_control, n_treatment: users per arm.
        estimate, se: the effect and its standard error.
        statistic, df: test statistic and degrees of freedom (``inf`` for the normal).
        p_value, ci_lower, ci_upper: for ``alternative`` at level ``alpha``.
        theta, variance_reduction: CUPED only (None otherwise).
    """

    metric: str
    method: str
    relative: bool
    control_mean: float
    treatment_mean: float
    n_control: float
    n_treatment: float
    estimate: float
    se: float
    statistic: float
    df: float
    p_value: float
    ci_lower: float
    ci_upper: float
    alpha: float
    alternative: str
    theta: float | None = None
    variance_reduction: float | None = None


def _sf(x: Any, df: Any) -> Any:
    """Upper tail of t(df) (normal where df is infinite), via scipy.special for speed."""
    df = np.asarray(df, dtype=float)
    if np.all(np.isinf(df)):
        return _sp.ndtr(-np.asarray(x, dtype=float))
    return _sp.stdtr(df, -np.asarray(x, dtype=float))


def _isf(q: float, df: Any) -> Any:
    df = np.asarray(df, dtype=float)
    if np.all(np.isinf(df)):
        return -_sp.ndtri(q)
    return -_sp.stdtrit(df, q)


def infer(estimate: Any, se: Any, df: Any, alpha: float, alternative: str) -> tuple[Any, Any, Any, Any]:
    """(statistic, p_value, ci_lower, ci_upper) for a normal or t pivot. Works on numpy arrays too."""
    stat = np.divide(estimate, se)
    if alternative == "two-sided":
        p = 2.0 * _sf(np.abs(stat), df)
        q = _isf(alpha / 2.0, df)
        lo, hi = estimate - q * se, estimate + q * se
    elif alternative == "greater":
        p = _sf(stat, df)
        q = _isf(alpha, df)
        lo, hi = estimate - q * se, np.inf * np.ones_like(stat)
    else:
        p = _sf(-stat, df)
        q = _isf(alpha, df)
        lo, hi = -np.inf * np.ones_like(stat), estimate + q * se
    return stat, np.minimum(p, 1.0), lo, hi


def welch_df(var_c: float, n_c: float, var_t: float, n_t: float) -> float:
    """Welch–Satterthwaite ν from per-user variances and sizes."""
    a, b = var_c / n_c, var_t / n_t
    den = a * a / (n_c - 1) + b * b / (n_t - 1)
    return float((a + b) ** 2 / den) if den > 0 else math.inf


def _effect(
    *,
    metric: str,
    mean_c: float,
    vm_c: float,
    n_c: float,
    mean_t: float,
    vm_t: float,
    n_t: float,
    df: float,
    relative: bool,
    relative_ci: RelativeCI,
    distribution: Distribution,
    alpha: float,
    alternative: Alternative,
    method: str,
    control_mean: float | None = None,
    treatment_mean: float | None = None,
    rel_var: float | None = None,
    rel_den: float | None = None,
    **extra: Any,
) -> EffectResult:
    """Shared tail: vm_* are the variances of the arms' means (var/n)."""
    if distribution == "normal":
        df = math.inf
    diff = mean_t - mean_c
    se_abs = math.sqrt(vm_c + vm_t)
    if not se_abs > 0:
        raise StatsInputError(
            f"control and treatment both have zero variance (every user of control has {mean_c!r}, every "
            f"user of treatment {mean_t!r}); no test is possible; check that the metric is recorded"
        )
    cm = mean_c if control_mean is None else control_mean
    den = cm if rel_den is None else rel_den
    if relative:
        if den == 0:
            raise StatsInputError(
                "control mean is 0, so the relative lift is undefined; use relative=False"
            )
        if relative_ci == "absolute_over_control":
            est, se = diff / abs(den), se_abs / abs(den)
        else:
            est = diff / abs(den)
            if rel_var is not None:
                se = math.sqrt(rel_var)
            else:  # √(vT/μC² + vC·μT²/μC⁴), written so that a tiny μC cannot divide by zero
                se = math.sqrt(vm_t + vm_c * (mean_t / den) ** 2) / abs(den)
    else:
        est, se = diff, se_abs
    if not (math.isfinite(est) and math.isfinite(se)):
        raise StatsInputError(
            f"the {'relative lift' if relative else 'difference'} or its standard error is not finite "
            f"(estimate {est!r}, se {se!r}; control mean {cm!r}): no honest test; "
            + ("use relative=False (the absolute difference)" if relative else "check the inputs")
        )
    if not se > 0:
        raise StatsInputError(
            f"the relative lift's delta-method standard error is 0 (treatment mean {mean_t!r} with no "
            "variance), so no interval or p-value is honest; use relative=False (the absolute difference)"
        )
    stat, p, lo, hi = infer(est, se, df, alpha, alternative)
    if relative and relative_ci == "absolute_over_control":
        # spotify-confidence: the p-value is the absolute test's; the CI is the absolute CI / |μC|.
        stat, p, _, _ = infer(diff, se_abs, df, alpha, alternative)
    return EffectResult(
        metric=metric, method="z" if math.isinf(df) else method, relative=relative,
        control_mean=float(cm),
        treatment_mean=float(mean_t if treatment_mean is None else treatment_mean),
        n_control=float(n_c), n_treatment=float(n_t), estimate=float(est), se=float(se),
        statistic=float(stat), df=float(df), p_value=float(p), ci_lower=float(lo), ci_upper=float(hi),
        alpha=alpha, alternative=alternative, **extra,
    )


def compare_means(
    control: Any,
    treatment: Any,
    *,
    relative: bool = False,
    proportion: bool = False,
    equal_var: bool = False,
    distribution: Distribution = "t",
    relative_ci: RelativeCI = "delta",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> EffectResult:
    """Compare two means (or proportions) from summaries, MetricSums or raw arrays.

    Args:
        control, treatment: :class:`MeanSummary`, ``MetricSums``, arrays; for ``proportion=True`` also
            ``(successes, n)`` tuples.
        relative: report the relative lift (μT−μC)/|μC| instead of the difference.
        proportion: per-user variance p(1−p) instead of the sample variance.
        equal_var: Student's pooled-variance t (df = nC+nT−2) instead of Welch.
        distribution: ``"t"`` (default) or ``"normal"`` (z-test).
        relative_ci: ``"delta"`` (delta method, default) or ``"absolute_over_control"`` (the absolute CI
            divided by |μC|, spotify-confidence's convention).
        alpha, alternative: level and ``"two-sided"``/``"greater"``/``"less"``.
    """
    alpha = check_alpha(alpha)
    alternative = check_alternative(alternative)
    check_choice("distribution", distribution, ("t", "normal"))
    check_choice("relative_ci", relative_ci, ("delta", "absolute_over_control"))
    c = _as_prop_or_mean(control, "control", proportion)
    t = _as_prop_or_mean(treatment, "treatment", proportion)
    if equal_var:
        pooled = ((c.n - 1) * c.var + (t.n - 1) * t.var) / (c.n + t.n - 2)
        vc, vt, df, method = pooled, pooled, c.n + t.n - 2, "student"
    else:
        vc, vt, df, method = c.var, t.var, welch_df(c.var, c.n, t.var, t.n), "welch"
    return _effect(
        metric="proportion" if proportion else "mean", mean_c=c.mean, vm_c=vc / c.n, n_c=c.n,
        mean_t=t.mean, vm_t=vt / t.n, n_t=t.n, df=df, relative=relative, relative_ci=relative_ci,
        distribution=distribution, alpha=alpha, alternative=alternative, method=method,
    )


def _as_prop_or_mean(obj: Any, name: str, proportion: bool) -> MeanSummary:
    if proportion and isinstance(obj, tuple) and len(obj) == 2 and np.ndim(obj[0]) == 0:
        successes, n = obj
        if not (n >= 2 and 0 <= successes <= n):
            raise StatsInputError(
                f"{name}: need 0 <= successes <= n and n >= 2, got successes={successes!r}, n={n!r}"
            )
        return MeanSummary.from_proportion(successes, n)
    return as_mean_summary(obj, name, proportion=proportion)


def t_test(
    control: Any,
    treatment: Any,
    *,
    equal_var: bool = False,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> EffectResult:
    """Welch's (default) or Student's two-sample t-test of treatment − control.

    Example (``b_welch_ttest.json``):
        >>> from battleground.stats import MeanSummary
        >>> a = MeanSummary(n=1000, mean=10.038584073, var=3.9647077827919697)
        >>> b = MeanSummary(n=1200, mean=10.2934923275, var=7.066521762092847)
        >>> r = t_test(a, b)
        >>> round(r.statistic, 6), round(r.df, 3), round(r.p_value, 6)
        (2.567965, 2174.162, 0.010296)
    """
    return compare_means(control, treatment, equal_var=equal_var, alpha=alpha, alternative=alternative)


def welch_t_test(
    control: Any, treatment: Any, *, alpha: float = 0.05, alternative: Alternative = "two-sided"
) -> EffectResult:
    """Welch's unequal-variance t-test (shorthand for ``t_test(..., equal_var=False)``)."""
    return compare_means(control, treatment, alpha=alpha, alternative=alternative)


def z_test_proportions(
    control: Any,
    treatment: Any,
    *,
    relative: bool = False,
    pooled: bool = False,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> EffectResult:
    """Two-proportion z-test; ``control``/``treatment`` as ``(successes, n)``, MetricSums or 0/1 arrays.

    The CI always uses the unpooled standard error; ``pooled=True`` uses the pooled p̄(1−p̄)(1/nC+1/nT)
    for the test statistic and p-value only (the textbook test under H0: pC = pT).

    Example (``f_gbstats_summary_stats.json``, spotify-confidence ZTest):
        >>> r = z_test_proportions((1000, 10000), (1100, 10000))
        >>> round(r.p_value, 8)
        0.02105807
    """
    res = compare_means(
        control, treatment, relative=relative, proportion=True, distribution="normal",
        relative_ci="absolute_over_control" if relative else "delta", alpha=alpha,
        alternative=alternative,
    )
    if not pooled:
        return res
    c = _as_prop_or_mean(control, "control", True)
    t = _as_prop_or_mean(treatment, "treatment", True)
    pbar = (c.mean * c.n + t.mean * t.n) / (c.n + t.n)
    se0 = math.sqrt(pbar * (1 - pbar) * (1 / c.n + 1 / t.n))
    if not se0 > 0:
        raise StatsInputError("control and treatment have no successes (or no failures) at all")
    stat, p, _, _ = infer(t.mean - c.mean, se0, math.inf, res.alpha, check_alternative(alternative))
    return EffectResult(**{**res.to_dict(), "statistic": float(stat), "p_value": float(p)})


def relative_lift(
    control: Any,
    treatment: Any,
    *,
    proportion: bool = False,
    distribution: Distribution = "t",
    relative_ci: RelativeCI = "delta",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> EffectResult:
    """Relative lift (μT−μC)/|μC| with a delta-method CI (Welch df) — gbstats' convention.

    Example (``g_pitfalls.json``: a negative baseline keeps the sign of the absolute effect):
        >>> from battleground.stats import MeanSummary
        >>> r = relative_lift(MeanSummary(1000, -10.0, 25.0), MeanSummary(1000, -5.0, 25.0))
        >>> r.estimate, round(r.ci_lower, 6), round(r.ci_upper, 6)
        (0.5, 0.465331, 0.534669)
    """
    return compare_means(
        control, treatment, relative=True, proportion=proportion, distribution=distribution,
        relative_ci=relative_ci, alpha=alpha, alternative=alternative,
    )


def ratio_test(
    control: Any,
    treatment: Any,
    *,
    relative: bool = False,
    distribution: Distribution = "t",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> EffectResult:
    """Ratio metric R = ΣM/ΣD per arm (user = unit), delta-method variance.

    Var(R) = (s_M² − 2R·s_MD + R²·s_D²) / (n·μ_D²) per arm; df by Welch on n·Var(R). The naive binomial
    SE over impressions ignores the clustering of impressions within users and is too small.
    """
    alpha = check_alpha(alpha)
    alternative = check_alternative(alternative)
    check_choice("distribution", distribution, ("t", "normal"))
    c = as_ratio_summary(control, "control")
    t = as_ratio_summary(treatment, "treatment")
    vc, vt = c.var_ratio(), t.var_ratio()
    df = welch_df(vc * c.n, c.n, vt * t.n, t.n)
    return _effect(
        metric="ratio", mean_c=c.ratio, vm_c=vc, n_c=c.n, mean_t=t.ratio, vm_t=vt, n_t=t.n, df=df,
        relative=relative, relative_ci="delta", distribution=distribution, alpha=alpha,
        alternative=alternative, method="welch",
    )


def cuped_theta(control: Any, treatment: Any) -> float:
    """θ = cov(Y, X) / var(X) over both arms together (pooled data, as gbstats)."""
    c = as_cuped_summary(control, "control")
    t = as_cuped_summary(treatment, "treatment")
    return _pooled(c, t)[0]


def _pooled(c: CupedSummary, t: CupedSummary) -> tuple[float, float]:
    """(θ, ρ²) of Y on X over both arms' data pooled, from each arm's centred moments (Chan et al.'s
    pairwise update: exact whatever shift each arm's sums were taken around)."""
    my_c, mx_c, vy_c, vx_c, cov_c = c.moments()
    my_t, mx_t, vy_t, vx_t, cov_t = t.moments()
    w = c.n * t.n / (c.n + t.n)
    dy, dx = my_t - my_c, mx_t - mx_c
    ss_y = (c.n - 1) * vy_c + (t.n - 1) * vy_t + w * dy * dy
    ss_x = (c.n - 1) * vx_c + (t.n - 1) * vx_t + w * dx * dx
    sp = (c.n - 1) * cov_c + (t.n - 1) * cov_t + w * dx * dy
    theta = float(sp / ss_x) if ss_x > 0 else 0.0
    rho2 = float(sp * sp / (ss_x * ss_y)) if ss_x > 0 and ss_y > 0 else 0.0
    return theta, min(rho2, 1.0)


def cuped_test(
    control: Any,
    treatment: Any,
    *,
    relative: bool = False,
    distribution: Distribution = "t",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    relative_variance: RelativeVariance = "full_delta",
) -> EffectResult:
    """CUPED: Y_cv = Y − θ(X − X̄) with one θ = cov(Y, X)/var(X) over both arms (gbstats' choice).

    The per-arm variance becomes s_Y² + θ²s_X² − 2θ·s_XY, i.e. multiplied by about (1 − ρ²). The relative
    lift L divides the adjusted difference by the *unadjusted* control mean |ȲC| (gbstats). Its variance
    (``relative_variance=``):

    * ``"full_delta"`` (default; gbstats' current source, ``frequentist_variance_relative_cuped``): the
      delta method through the control's mean *and* covariate,
      V_T/ȲC² + (s_YC²·ȲT²/ȲC² − 2θ·s_XYC·ȲT/ȲC + θ²s_XC²)/(n_C·ȲC²), with
      V = (s_Y² + θ²s_X² − 2θ·s_XY)/n per arm;
    * ``"gbstats_0.8"`` (the 2024 wheel, gbstats 0.8.0's RegressionAdjustedStatistic): the plain
      relative-lift formula with the adjusted variances, V_T/ȲC² + V_C·ȲT²/ȲC⁴ (about 1 % smaller on
      the reference data: it ignores how the control's covariate moves ȲC's weight).

    ``variance_reduction`` = ρ² over the pooled data = 1 − var(Y_cv)/var(Y).

    Args:
        control, treatment: :class:`CupedSummary`, ``MetricSums`` (x = metric, c = covariate) or
            ``(y, covariate)`` array pairs.
        relative_variance: ``"full_delta"`` or ``"gbstats_0.8"`` (relative lifts only).
    """
    alpha = check_alpha(alpha)
    alternative = check_alternative(alternative)
    check_choice("distribution", distribution, ("t", "normal"))
    if relative_variance == "gbstats":
        raise StatsInputError(
            "relative_variance='gbstats' is ambiguous: gbstats changed its formula; use 'full_delta' "
            "(gbstats' current source, the default) or 'gbstats_0.8' (the 2024 wheel)"
        )
    check_choice("relative_variance", relative_variance, ("full_delta", "gbstats_0.8"))
    c = as_cuped_summary(control, "control")
    t = as_cuped_summary(treatment, "treatment")
    theta, rho2 = _pooled(c, t)
    my_c, mx_c, vy_c, vx_c, cov_c = c.moments()
    my_t, mx_t, vy_t, vx_t, cov_t = t.moments()
    # Var(Y − θX) >= 0 for valid sums (Cauchy–Schwarz is checked on input): only rounding goes below.
    va_c = max(vy_c + theta**2 * vx_c - 2 * theta * cov_c, 0.0)
    va_t = max(vy_t + theta**2 * vx_t - 2 * theta * cov_t, 0.0)
    rel_var = None
    if relative and my_c != 0:
        if relative_variance == "gbstats_0.8":
            rel_var = va_t / t.n / my_c**2 + va_c / c.n * my_t**2 / my_c**4
        else:
            a = my_t / my_c  # ∂L/∂ȲC·ȲC², as gbstats writes it (θ(X̄C − X̄T) ≈ 0 dropped)
            # a²s_Y² − 2aθs_XY + θ²s_X² = Var(aY − θX) >= 0: only rounding goes below.
            v_ctrl = max(a * a * vy_c - 2 * a * theta * cov_c + theta**2 * vx_c, 0.0) / c.n
            rel_var = (va_t / t.n + v_ctrl) / my_c**2
    # Adjusted means on the scale of Y: Ȳ − θ(X̄_arm − X̄_pooled); their difference is `diff`.
    mx_all = (c.n * mx_c + t.n * mx_t) / (c.n + t.n)
    adj_c = my_c - theta * (mx_c - mx_all)
    adj_t = my_t - theta * (mx_t - mx_all)
    return _effect(
        metric="cuped", mean_c=adj_c, vm_c=va_c / c.n, n_c=c.n, mean_t=adj_t, vm_t=va_t / t.n,
        n_t=t.n, df=welch_df(va_c, c.n, va_t, t.n), relative=relative, relative_ci="delta",
        distribution=distribution, alpha=alpha, alternative=alternative, method="welch",
        control_mean=my_c, rel_var=rel_var, rel_den=my_c, treatment_mean=my_t, theta=theta,
        variance_reduction=rho2,
    )
