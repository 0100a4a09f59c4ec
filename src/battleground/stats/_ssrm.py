"""Sequential sample-ratio mismatch: GrowthBook's Dirichlet–multinomial Bayes factor (Lindon et al. 2022).

Users per arm arrive in looks (days). Under H0 the counts are Multinomial(N, p₀) with the configured
weights p₀; under H1 the arm shares are Dirichlet(c·p₀) (c the concentration, 10,000 by default as in
gbstats). With cumulative counts Xₜ (Nₜ users) after look t the Bayes factor is

    ln BFₜ = ln Γ(c) − Σᵢ ln Γ(c p₀ᵢ) + Σᵢ ln Γ(c p₀ᵢ + Xₜᵢ) − ln Γ(c + Nₜ) − Σᵢ Xₜᵢ ln p₀ᵢ

(the multinomial coefficients cancel), and the always-valid p-value is ``min(1, minₛ≤ₜ 1/BFₛ)``:
BF is a test martingale under H0, so by Ville's inequality P(ever p ≤ α | H0) ≤ α however often one
looks. ``slab_weight`` > 0 mixes in a diffuse Dirichlet(slab_concentration·1) at every look, as gbstats'
spike-and-slab option. Status thresholds are those of :func:`srm_test` (alert at p < 0.001).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import Result, StatsInputError, check_alpha, lazy_module

_sp = lazy_module("scipy.special")

__all__ = ["SequentialSrmResult", "sequential_srm_test"]


@dataclass(frozen=True)
class SequentialSrmResult(Result):
    """The sequential SRM test after the last look.

    Attributes:
        observed: cumulative users per arm at the last look.
        weights: the expected shares p₀.
        looks: number of looks.
        log_bayes_factor: ln BF at the last look (> 0 favours a mismatch).
        p_value: always-valid p, the running minimum of 1/BF over the looks (1 before any user).
        p_values: the running p after each look.
        status: "ok", "warn" (p < warn_at) or "alert" (p < alert_at).
    """

    observed: tuple[float, ...]
    weights: tuple[float, ...]
    looks: int
    log_bayes_factor: float
    p_value: float
    p_values: tuple[float, ...]
    concentration: float
    slab_weight: float
    status: str
    warn_at: float
    alert_at: float


def _log_dm_step(x: np.ndarray, a: np.ndarray) -> float:
    """ln p(x | Dirichlet(a)) without the multinomial coefficient (it cancels in the Bayes factor)."""
    g = _sp.gammaln
    return float(g(a.sum()) - g(a).sum() + g(a + x).sum() - g(a.sum() + x.sum()))


def sequential_srm_test(
    counts: Any,
    weights: Any = None,
    *,
    cumulative: bool = False,
    concentration: float = 10000.0,
    slab_weight: float = 0.0,
    slab_concentration: float = 1.0,
    warn_at: float = 0.01,
    alert_at: float = 0.001,
) -> SequentialSrmResult:
    """Sequential SRM from users per arm per look.

    Args:
        counts: (looks, arms) integer counts — new users of each look (gbstats' convention), or the
            running totals with ``cumulative=True`` (what a daily cumulative series gives); a 1-D array
            is one look.
        weights: expected shares, one per arm, > 0 and summing to 1 (default equal).
        concentration: the Dirichlet concentration c of the alternative (gbstats' 10,000).
        slab_weight, slab_concentration: gbstats' spike-and-slab mixture (off by default).

    Example (gbstats' ``test_ssrm``: 100 vs 900 users at an equal split is a mismatch):
        >>> sequential_srm_test([[100, 900]]).status
        'alert'
        >>> round(sequential_srm_test([[500, 500]]).p_value, 6)
        1.0
    """
    check_alpha(warn_at, "warn_at")
    check_alpha(alert_at, "alert_at")
    x = np.asarray(counts, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 2 or x.shape[0] == 0:
        raise StatsInputError(
            f"counts must be (looks, arms) with at least 1 look and 2 arms, got shape {np.shape(counts)}"
        )
    if not np.isfinite(x).all() or (x < 0).any() or (x != np.floor(x)).any():
        raise StatsInputError(f"counts must be whole numbers >= 0, got {x.tolist()[:3]!r}")
    if cumulative:
        step = np.diff(x, axis=0, prepend=0.0)
        if (step < 0).any():
            raise StatsInputError(
                "cumulative counts must never decrease from one look to the next, got "
                f"{x.tolist()[:5]!r}; pass the new users per look with cumulative=False"
            )
        x = step
    k = x.shape[1]
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.size != k:
        raise StatsInputError(f"weights must have one entry per arm ({k}), got {w.tolist()!r}")
    if not np.isfinite(w).all() or (w <= 0).any() or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-6):
        raise StatsInputError(f"weights must be > 0 and sum to 1, got {w.tolist()!r}; e.g. [0.5, 0.5]")
    if not (math.isfinite(concentration) and concentration > 0):
        raise StatsInputError(f"concentration must be > 0, got {concentration!r}")
    if not 0.0 <= slab_weight <= 1.0:
        raise StatsInputError(f"slab_weight must be in [0, 1], got {slab_weight!r}")
    if not (math.isfinite(slab_concentration) and slab_concentration > 0):
        raise StatsInputError(f"slab_concentration must be > 0, got {slab_concentration!r}")
    w = w / w.sum()
    cum = np.cumsum(x, axis=0)
    log_p0 = (cum * np.log(w)).sum(axis=1)  # Σ Xₜᵢ ln p₀ᵢ per look (multinomial coefficients cancel)
    if slab_weight == 0.0:
        g = _sp.gammaln
        a = concentration * w
        log_m1 = g(a.sum()) - g(a).sum() + g(a + cum).sum(axis=1) - g(a.sum() + cum.sum(axis=1))
    else:  # per look the predictive is a mixture; both components keep their own posterior
        spike, slab = concentration * w, np.full(k, float(slab_concentration))
        acc, out = 0.0, []
        for row in x:
            ls, lb = _log_dm_step(row, spike), _log_dm_step(row, slab)
            if slab_weight == 1.0:
                acc += lb
            else:
                acc += float(np.logaddexp(math.log1p(-slab_weight) + ls, math.log(slab_weight) + lb))
            spike, slab = spike + row, slab + row
            out.append(acc)
        log_m1 = np.asarray(out)
    log_bf = np.asarray(log_m1 - log_p0, dtype=float)
    p_run = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_bf)))
    p = float(p_run[-1])
    status = "alert" if p < alert_at else "warn" if p < warn_at else "ok"
    return SequentialSrmResult(
        observed=tuple(cum[-1].tolist()), weights=tuple(w.tolist()), looks=int(x.shape[0]),
        log_bayes_factor=float(log_bf[-1]), p_value=p, p_values=tuple(p_run.tolist()),
        concentration=float(concentration), slab_weight=float(slab_weight), status=status,
        warn_at=warn_at, alert_at=alert_at,
    )
