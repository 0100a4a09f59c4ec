"""Sequential tests that stay valid when you look every day.

**mSPRT** (mixture sequential probability ratio test, Johari et al. 2017) with a normal mixing prior
N(0, τ²) on the effect. With Δ̂ the current estimate and V = SE²:

    Λ = √(V/(V+τ²)) · exp(τ²Δ̂² / (2V(V+τ²)))
    always-valid p = min over looks of min(1, 1/Λ)
    CI = Δ̂ ± √(V(V+τ²)/τ² · (2 ln(1/α) + ln((V+τ²)/V)))   (intersected over looks)

τ is the mixing standard deviation, on the scale of the effect: battleground's default is 10 % of the
control mean for absolute effects (τ = 0.1 for relative lifts). Larger τ favours detecting larger
effects quickly; the guarantee P(ever p ≤ α | H0) ≤ α holds for any τ.

``method="confidence_sequence"`` offers gbstats' asymptotic confidence sequence (Howard et al. 2021)
with its tuning parameter N* (the sample size at which the sequence is tightest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import (
    Result,
    StatsInputError,
    check_alpha,
    check_finite,
    check_positive,
)

__all__ = [
    "SequentialPath",
    "SequentialResult",
    "confidence_sequence",
    "msprt",
    "msprt_path",
]


@dataclass(frozen=True)
class SequentialResult(Result):
    """One look of a sequential test.

    Attributes:
        method: "msprt" or "confidence_sequence".
        estimate, se: the effect and its standard error at this look.
        tau2: mSPRT mixing variance (None for the confidence sequence).
        n_star: confidence-sequence tuning (None for mSPRT).
        likelihood_ratio: Λ (mSPRT only).
        p_value: always-valid p-value (running minimum when ``previous`` was given).
        ci_lower, ci_upper: always-valid confidence interval (running intersection).
        alpha: level.
        boundary_crossed: p_value ≤ alpha (you may stop).
    """

    method: str
    estimate: float
    se: float
    tau2: float | None
    n_star: float | None
    likelihood_ratio: float | None
    p_value: float
    ci_lower: float
    ci_upper: float
    alpha: float
    boundary_crossed: bool

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_lower, self.ci_upper)


def _msprt_arrays(
    est: np.ndarray, se: np.ndarray, tau2: float | np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Λ, 1/Λ capped at 1, CI half-width) per look: the one mSPRT formula (also used by analyze_metrics)."""
    v = se * se
    log_lam = 0.5 * np.log(v / (v + tau2)) + tau2 * est * est / (2.0 * v * (v + tau2))
    p = np.minimum(1.0, np.exp(-log_lam))
    half = np.sqrt(v * (v + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + np.log((v + tau2) / v)))
    return np.exp(log_lam), p, half


def msprt(
    estimate: float,
    se: float,
    *,
    tau2: float,
    alpha: float = 0.05,
    previous: SequentialResult | None = None,
) -> SequentialResult:
    """mSPRT at one look; pass the previous look's result as ``previous`` to keep it always valid.

    Example (``f_gbstats_summary_stats.json``, 1000/10000 vs 1100/10000, absolute, τ² = 1e-4):
        >>> r = msprt(0.01, 0.004334743360338649, tau2=1e-4)
        >>> round(r.likelihood_ratio, 6), round(r.p_value, 6)
        (3.736177, 0.267653)
    """
    alpha = check_alpha(alpha)
    tau2 = check_positive("tau2", tau2)
    estimate = check_finite("estimate", estimate)
    se = check_positive("se", se)
    lam, p, half = _msprt_arrays(np.asarray([estimate]), np.asarray([se]), tau2, alpha)
    p_val, lo, hi = float(p[0]), float(estimate - half[0]), float(estimate + half[0])
    if previous is not None:
        p_val = min(p_val, previous.p_value)
        lo, hi = max(lo, previous.ci_lower), min(hi, previous.ci_upper)
    return SequentialResult(
        method="msprt", estimate=float(estimate), se=float(se), tau2=tau2, n_star=None,
        likelihood_ratio=float(lam[0]), p_value=p_val, ci_lower=lo, ci_upper=hi, alpha=alpha,
        boundary_crossed=p_val <= alpha,
    )


@dataclass(frozen=True)
class SequentialPath(Result):
    """mSPRT over a series of looks (e.g. daily cumulative data).

    Attributes:
        estimate, se: per look.
        likelihood_ratio: Λ per look.
        p_value: always-valid p per look (running minimum of 1/Λ).
        ci_lower, ci_upper: running intersection of the per-look intervals.
        first_crossing: index of the first look with p ≤ α (None if never).
    """

    estimate: np.ndarray
    se: np.ndarray
    likelihood_ratio: np.ndarray
    p_value: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    tau2: float
    alpha: float
    first_crossing: int | None


def msprt_path(estimates: Any, ses: Any, *, tau2: float, alpha: float = 0.05) -> SequentialPath:
    """Vectorised mSPRT over looks along the last axis (works on (n_sims, n_looks) arrays too)."""
    alpha = check_alpha(alpha)
    tau2 = check_positive("tau2", tau2)
    est = np.asarray(estimates, dtype=float)
    se = np.asarray(ses, dtype=float)
    if est.shape != se.shape:
        raise StatsInputError(f"estimates and ses must have the same shape, got {est.shape} and {se.shape}")
    if not np.all(np.isfinite(est)):
        raise StatsInputError(
            f"estimates must all be finite, got {est[~np.isfinite(est)].ravel()[:3].tolist()!r}; an "
            "undefined look (e.g. a relative lift over a zero baseline) cannot be tested"
        )
    if not np.all(np.isfinite(se) & (se > 0)):
        raise StatsInputError(
            "ses must all be finite and > 0 (a look with zero or undefined standard error has no data), "
            f"got {se[~(np.isfinite(se) & (se > 0))].ravel()[:3].tolist()!r}"
        )
    lam, p, half = _msprt_arrays(est, se, tau2, alpha)
    p_run = np.minimum.accumulate(p, axis=-1)
    lo = np.maximum.accumulate(est - half, axis=-1)
    hi = np.minimum.accumulate(est + half, axis=-1)
    first = None
    if est.ndim == 1:
        hits = np.flatnonzero(p_run <= alpha)
        first = int(hits[0]) if hits.size else None
    return SequentialPath(
        estimate=est, se=se, likelihood_ratio=lam, p_value=p_run, ci_lower=lo, ci_upper=hi,
        tau2=tau2, alpha=alpha, first_crossing=first,
    )


def _cs_rho(alpha: float, n_star: float) -> float:
    return math.sqrt((-2.0 * math.log(alpha) + math.log(-2.0 * math.log(alpha) + 1.0)) / n_star)


def _cs_halfwidth(se: float, n: float, alpha: float, rho: float) -> float:
    s2 = se * se * n
    a = n * rho * rho
    return math.sqrt(s2) * math.sqrt(2.0 * (a + 1.0) / (n * n * rho * rho) * math.log(math.sqrt(a + 1.0) / alpha))


def confidence_sequence(
    estimate: float, se: float, n: float, *, n_star: float = 5000.0, alpha: float = 0.05
) -> SequentialResult:
    """gbstats' asymptotic confidence sequence; ``n`` is the total users of both arms.

    ρ = √((−2 ln α + ln(1 − 2 ln α)) / N*), half-width = √(n·SE²)·√(2(nρ²+1)/(n²ρ²) · ln(√(nρ²+1)/α)).
    The p-value is the smallest α whose sequence excludes 0 (ρ held at the chosen α).
    """
    alpha = check_alpha(alpha)
    estimate = check_finite("estimate", estimate)
    se = check_positive("se", se)
    check_positive("n", n)
    check_positive("n_star", n_star)
    rho = _cs_rho(alpha, n_star)
    half = _cs_halfwidth(se, n, alpha, rho)
    a = n * rho * rho
    # |Δ̂| = half-width(α') solved for α' in closed form with ρ fixed.
    s2 = se * se * n
    log_ratio = estimate * estimate / s2 * (n * n * rho * rho) / (2.0 * (a + 1.0))
    p = float(min(1.0, math.sqrt(a + 1.0) * math.exp(-log_ratio)))
    return SequentialResult(
        method="confidence_sequence", estimate=float(estimate), se=float(se), tau2=None,
        n_star=float(n_star), likelihood_ratio=None, p_value=p, ci_lower=float(estimate - half),
        ci_upper=float(estimate + half), alpha=alpha, boundary_crossed=p <= alpha,
    )

