"""Sample-ratio mismatch: Pearson χ² goodness of fit of the users per arm against the configured weights.

χ² = Σ(O − E)²/E with E = weight·N and k − 1 degrees of freedom. Status: ``"alert"`` at p < 0.001
(do not trust the results), ``"warn"`` at p < 0.01, ``"ok"`` otherwise (Statsig's thresholds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import Result, StatsInputError, check_alpha, lazy_module

# chi2.sf is scipy.special.chdtrc (what scipy.stats.chi2 calls): the same numbers without importing
# scipy.stats, which costs a second or more and would be the dashboard's cold list's largest part
_sp = lazy_module("scipy.special")

__all__ = ["SrmResult", "srm_test"]


@dataclass(frozen=True)
class SrmResult(Result):
    """Observed vs expected users per arm, χ², df, p-value and ``status`` ("ok", "warn", "alert")."""

    observed: tuple[float, ...]
    weights: tuple[float, ...]
    expected: tuple[float, ...]
    chi2: float
    df: int
    p_value: float
    status: str
    warn_at: float
    alert_at: float


def srm_test(
    observed: Any, weights: Any = None, *, warn_at: float = 0.01, alert_at: float = 0.001
) -> SrmResult:
    """SRM χ² test; ``weights`` default to an equal split and must sum to 1.

    Example (``d_srm.json``):
        >>> r = srm_test([50000, 49000], [0.5, 0.5])
        >>> round(r.chi2, 5), round(r.p_value, 8), r.status
        (10.10101, 0.00148188, 'warn')
    """
    check_alpha(warn_at, "warn_at")
    check_alpha(alert_at, "alert_at")
    obs = np.asarray(observed, dtype=float).ravel()
    if obs.size < 2:
        raise StatsInputError(f"observed must have at least 2 arms, got {obs.tolist()!r}")
    if (obs < 0).any() or not np.isfinite(obs).all():
        raise StatsInputError(f"observed counts must be >= 0, got {obs.tolist()!r}")
    w = np.full(obs.size, 1.0 / obs.size) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.size != obs.size:
        raise StatsInputError(
            f"weights must have one entry per arm ({obs.size}), got {w.tolist()!r}"
        )
    if (w <= 0).any() or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-6):
        raise StatsInputError(
            f"weights must be > 0 and sum to 1, got {w.tolist()!r} (sum {w.sum():.6g}); "
            "e.g. [0.5, 0.5]"
        )
    total = obs.sum()
    if total <= 0:
        raise StatsInputError("observed has no users at all; SRM needs data")
    expected = w * total
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    df = int(obs.size - 1)
    p = float(_sp.chdtrc(df, chi2))
    status = "alert" if p < alert_at else "warn" if p < warn_at else "ok"
    return SrmResult(
        observed=tuple(obs.tolist()), weights=tuple(w.tolist()), expected=tuple(expected.tolist()),
        chi2=chi2, df=df, p_value=p, status=status, warn_at=warn_at, alert_at=alert_at,
    )
