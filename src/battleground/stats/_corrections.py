"""Multiple-testing corrections across metrics × variants (statsmodels ``multipletests`` conventions).

* ``holm``: step-down Bonferroni, controls the family-wise error rate (default for guardrails);
* ``bh``: Benjamini–Hochberg step-up, controls the false discovery rate;
* also ``bonferroni``, ``sidak``, ``by`` (Benjamini–Yekutieli) and ``hommel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import Result, StatsInputError, check_alpha, check_choice

__all__ = ["CorrectionResult", "adjust_pvalues"]

METHODS = ("holm", "bh", "bonferroni", "sidak", "by", "hommel", "none")


@dataclass(frozen=True)
class CorrectionResult(Result):
    """Adjusted p-values in the input order; ``rejected`` = adjusted p ≤ alpha."""

    method: str
    alpha: float
    p_values: tuple[float, ...]
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]


def _adjust_sorted(p: np.ndarray, method: str) -> np.ndarray:
    m = p.size
    rank = np.arange(1, m + 1, dtype=float)
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "sidak":
        return -np.expm1(m * np.log1p(-p))
    if method == "holm":
        return np.minimum(np.maximum.accumulate(p * (m - rank + 1)), 1.0)
    if method in ("bh", "by"):
        c = 1.0 if method == "bh" else float(np.sum(1.0 / rank))
        adj = np.minimum.accumulate((p * m * c / rank)[::-1])[::-1]
        return np.minimum(adj, 1.0)
    if method == "hommel":
        a = p.copy()
        for k in range(m, 1, -1):
            cim = np.min(k * p[-k:] / np.arange(1, k + 1))
            a[-k:] = np.maximum(a[-k:], cim)
            a[:-k] = np.maximum(a[:-k], np.minimum(k * p[:-k], cim))
        return a
    return p.copy()


def adjust_pvalues(p_values: Any, *, method: str = "holm", alpha: float = 0.05) -> CorrectionResult:
    """Adjust p-values for multiple comparisons.

    Example (``f_gbstats_summary_stats.json``):
        >>> r = adjust_pvalues([0.001, 0.008, 0.012, 0.035, 0.041, 0.2, 0.6], method="bh")
        >>> [round(p, 6) for p in r.adjusted[:3]]
        [0.007, 0.028, 0.028]
    """
    alpha = check_alpha(alpha)
    check_choice("method", method, METHODS)
    p = np.asarray(p_values, dtype=float).ravel()
    if p.size == 0:
        return CorrectionResult(method=method, alpha=alpha, p_values=(), adjusted=(), rejected=())
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise StatsInputError(f"p_values must lie in [0, 1], got {p.tolist()!r}")
    order = np.argsort(p, kind="mergesort")
    adj_sorted = _adjust_sorted(p[order], method)
    adj = np.empty_like(adj_sorted)
    adj[order] = adj_sorted
    adj_t = tuple(float(v) for v in adj)
    return CorrectionResult(
        method=method, alpha=alpha, p_values=tuple(float(v) for v in p), adjusted=adj_t,
        rejected=tuple(bool(v <= alpha) for v in adj),
    )
