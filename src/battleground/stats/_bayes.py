"""Bayesian comparison with a normal approximation (gbstats' engine).

The data give Δ̂ ~ N(Δ, SE²) (absolute or relative, as in :mod:`._tests`). With a normal prior
N(m₀, s₀²) the posterior is normal with precision 1/SE² + 1/s₀² and mean (Δ̂/SE² + m₀/s₀²)/precision;
without a prior (``prior_sd=None``, improper flat prior) it is N(Δ̂, SE²).

* chance to beat control = P(Δ > 0) = Φ(μ/σ) (P(Δ < 0) when lower is better),
* expected loss (risk) of shipping treatment = E[max(−Δ, 0)], of keeping control = E[max(Δ, 0)],
  with E[max(X, 0)] = μΦ(μ/σ) + σφ(μ/σ).

The prior is given on the *relative* scale (like gbstats' proper prior, e.g. N(0, 0.3²)); for absolute
effects it is multiplied by |control mean|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from battleground.stats._base import (
    Result,
    StatsInputError,
    check_alpha,
    check_finite,
    check_positive,
    lazy_module,
)
from battleground.stats._tests import compare_means, ratio_test

_st = lazy_module("scipy.stats")

__all__ = ["BayesResult", "bayes_from_estimate", "bayesian_test"]


@dataclass(frozen=True)
class BayesResult(Result):
    """Posterior of the effect.

    Attributes:
        relative: relative lift (True) or absolute difference.
        data_estimate, data_se: the likelihood's Δ̂ and SE.
        prior_mean, prior_sd: the prior on the effect's scale (None = improper flat prior).
        estimate, posterior_sd: posterior mean and standard deviation.
        ci_lower, ci_upper: equal-tailed credible interval at 1 − alpha.
        chance_to_win: posterior probability that treatment is better.
        risk_treatment: expected loss if you ship treatment and it is worse.
        risk_control: expected loss if you keep control and treatment is better.
    """

    relative: bool
    data_estimate: float
    data_se: float
    prior_mean: float | None
    prior_sd: float | None
    estimate: float
    posterior_sd: float
    ci_lower: float
    ci_upper: float
    chance_to_win: float
    risk_control: float
    risk_treatment: float
    alpha: float
    higher_is_better: bool


def _positive_part_mean(mu: float, sd: float) -> float:
    z = mu / sd
    return float(mu * _st.norm.cdf(z) + sd * _st.norm.pdf(z))


def bayes_from_estimate(
    estimate: float,
    se: float,
    *,
    relative: bool = False,
    prior_mean: float = 0.0,
    prior_sd: float | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesResult:
    """Posterior from an estimate and its SE; the prior is on the same scale as the estimate."""
    alpha = check_alpha(alpha)
    estimate = check_finite("estimate", estimate)
    se = check_positive("se", se)
    prior_mean = check_finite("prior_mean", prior_mean)
    if prior_sd is None:
        mu, sd = float(estimate), float(se)
    else:
        check_positive("prior_sd", prior_sd)
        prec = 1.0 / se**2 + 1.0 / prior_sd**2
        mu = (estimate / se**2 + prior_mean / prior_sd**2) / prec
        sd = math.sqrt(1.0 / prec)
    q = _st.norm.isf(alpha / 2.0)
    ctw = float(_st.norm.cdf(mu / sd))
    risk_control = _positive_part_mean(mu, sd)  # what keeping control forgoes
    risk_treatment = _positive_part_mean(-mu, sd)  # what shipping a worse treatment costs
    if not higher_is_better:
        ctw = 1.0 - ctw
        risk_control, risk_treatment = risk_treatment, risk_control
    return BayesResult(
        relative=relative, data_estimate=float(estimate), data_se=float(se),
        prior_mean=None if prior_sd is None else float(prior_mean),
        prior_sd=None if prior_sd is None else float(prior_sd), estimate=float(mu),
        posterior_sd=float(sd), ci_lower=float(mu - q * sd), ci_upper=float(mu + q * sd),
        chance_to_win=ctw, risk_control=risk_control, risk_treatment=risk_treatment, alpha=alpha,
        higher_is_better=higher_is_better,
    )


def bayesian_test(
    control: Any,
    treatment: Any,
    *,
    metric: str = "mean",
    relative: bool = True,
    prior_mean: float = 0.0,
    prior_sd: float | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesResult:
    """Chance to beat control and expected loss from two arms' summaries.

    Args:
        metric: "mean", "proportion" or "ratio" (how the arms' summaries are read).
        relative: relative lift (default) or absolute difference.
        prior_mean, prior_sd: normal prior on the *relative* lift (``None`` = flat prior); for an
            absolute effect both are multiplied by |control mean|.

    Example (``f_gbstats_summary_stats.json``, proportions, improper prior):
        >>> r = bayesian_test((1000, 10000), (1100, 10000), metric="proportion", relative=False)
        >>> round(r.chance_to_win, 6)
        0.989471
    """
    if metric == "ratio":
        eff = ratio_test(control, treatment, relative=relative, alpha=alpha)
    elif metric in ("mean", "proportion"):
        eff = compare_means(
            control, treatment, relative=relative, proportion=metric == "proportion", alpha=alpha
        )
    else:
        raise StatsInputError(f"metric must be 'mean', 'proportion' or 'ratio', got {metric!r}")
    scale = 1.0 if relative else abs(eff.control_mean)
    if prior_sd is not None and scale == 0:
        raise StatsInputError("control mean is 0, so a relative prior cannot be scaled; use relative=True")
    return bayes_from_estimate(
        eff.estimate, eff.se, relative=relative, prior_mean=prior_mean * scale,
        prior_sd=None if prior_sd is None else prior_sd * scale, alpha=alpha,
        higher_is_better=higher_is_better,
    )
