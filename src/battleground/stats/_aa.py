"""Offline A/A: replay per-user values with random re-splits and count how often a test says
"significant" when nothing differs — the empirical false-positive rate of each metric on its own data.

Each re-split draws every user into "treatment" with probability ``share`` (quantised to 1/256) and
into "control" otherwise, independently; the per-arm sums of one chunk of re-splits are one matrix
product (re-splits × users)·(users × sums), so 1,000 re-splits over 1M users are a few dense BLAS calls,
never a Python loop over re-splits. The test on each re-split is Welch's z on the difference of means
(ratio metrics: the delta method on ΣM/ΣD), two-sided at ``alpha``. A calibrated metric shows a rate
near α; heavy tails or a few whales push it away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import Result, StatsInputError, check_alpha, lazy_module

_sp = lazy_module("scipy.special")

__all__ = ["AaResult", "aa_resplits"]


@dataclass(frozen=True)
class AaResult(Result):
    """Empirical false-positive rate of one metric over ``resplits`` random re-splits.

    ``false_positive_rate`` ± ``mc_se`` (its Monte-Carlo standard error); ``calibrated``: the rate is
    within 3 Monte-Carlo SEs of ``alpha``. ``p_values`` keeps every re-split's p (uniform if calibrated).
    """

    metric: str
    kind: str
    users: int
    resplits: int
    alpha: float
    false_positive_rate: float
    mc_se: float
    calibrated: bool
    p_values: np.ndarray


def _split_sums(cols: np.ndarray, resplits: int, share: float, rng: np.random.Generator,
                chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(treatment sums, control sums), each (resplits, k), for k columns of per-user values."""
    total = cols.sum(axis=0, dtype=np.float64)
    thresh = round(share * 256)
    cols32 = np.ascontiguousarray(cols, dtype=np.float32)
    out = np.empty((resplits, cols.shape[1]), dtype=np.float64)
    chunk = min(chunk, resplits)
    # buffers reused across chunks (fresh allocations of this size cost more in page faults than the maths)
    hit = np.empty((chunk, cols.shape[0]), dtype=bool)
    mask = np.empty((chunk, cols.shape[0]), dtype=np.float32)
    for start in range(0, resplits, chunk):
        r = min(chunk, resplits - start)
        np.less(rng.integers(0, 256, size=(r, cols.shape[0]), dtype=np.uint8), thresh, out=hit[:r])
        np.copyto(mask[:r], hit[:r])
        out[start:start + r] = mask[:r] @ cols32
    return out, total[None, :] - out


def aa_resplits(
    values: Any,
    *,
    denominator: Any = None,
    metric: str = "metric",
    kind: str = "mean",
    resplits: int = 1000,
    share: float = 0.5,
    alpha: float = 0.05,
    seed: int = 0,
    chunk: int = 16,
) -> AaResult:
    """Empirical A/A false-positive rate of one metric from its per-user values.

    Args:
        values: per-user values (the numerator for a ratio metric), one per user.
        denominator: per-user denominators for ``kind="ratio"``.
        share: the treatment share of a re-split (the experiment's treatment weight).
        resplits: how many random re-splits.
        seed: the seed of the re-splits (the result is reproducible).
        chunk: re-splits per matrix product (memory: chunk × users bytes).
    """
    alpha = check_alpha(alpha)
    if kind not in ("mean", "proportion", "ratio"):
        raise StatsInputError(f"kind must be 'mean', 'proportion' or 'ratio', got {kind!r}")
    if not 0 < share < 1:
        raise StatsInputError(f"share must be in (0, 1), got {share!r}")
    if int(resplits) < 1:
        raise StatsInputError(f"resplits must be >= 1, got {resplits!r}")
    y = np.asarray(values, dtype=np.float64).ravel()
    if y.size < 4 or not np.isfinite(y).all():
        raise StatsInputError(f"values of {metric!r} need at least 4 finite per-user values, got {y.size}")
    center = y.mean()  # centred sums keep float32 products accurate
    if kind == "ratio":
        if denominator is None:
            raise StatsInputError(f"ratio metric {metric!r} needs per-user denominators")
        d = np.asarray(denominator, dtype=np.float64).ravel()
        if d.shape != y.shape or not np.isfinite(d).all():
            raise StatsInputError(f"denominator of {metric!r} needs one finite value per user")
        dc = d.mean()
        ym, dm = y - center, d - dc
        cols = np.column_stack([np.ones_like(y), ym, dm, ym * ym, dm * dm, ym * dm])
    else:
        ym = y - center
        cols = np.column_stack([np.ones_like(y), ym, ym * ym])
    rng = np.random.default_rng(seed)
    t, c = _split_sums(cols, int(resplits), share, rng, max(1, int(chunk)))
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ratio":
            est_t, est_c = _ratio(t, center, dc), _ratio(c, center, dc)
        else:
            est_t, est_c = _mean(t), _mean(c)
        diff = est_t[0] - est_c[0]
        se = np.sqrt(est_t[1] + est_c[1])
        z = diff / se
        p = np.where(np.isfinite(z), 2.0 * _sp.ndtr(-np.abs(z)), np.nan)
    ok = np.isfinite(p)
    rate = float((p[ok] < alpha).mean()) if ok.any() else math.nan
    mc = math.sqrt(alpha * (1 - alpha) / max(int(ok.sum()), 1))
    return AaResult(
        metric=metric, kind=kind, users=int(y.size), resplits=int(resplits), alpha=alpha,
        false_positive_rate=rate, mc_se=mc, calibrated=bool(abs(rate - alpha) <= 3 * mc), p_values=p,
    )


def _mean(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centred mean, variance of the mean) per re-split from columns [n, Σy, Σy²]."""
    n, s1, s2 = s[:, 0], s[:, 1], s[:, 2]
    m = s1 / n
    var = np.maximum(s2 - n * m * m, 0.0) / (n - 1)
    return m, var / n


def _ratio(s: np.ndarray, cm: float, cd: float) -> tuple[np.ndarray, np.ndarray]:
    """(ratio, delta-method variance) per re-split from centred columns [n, Σm, Σd, Σm², Σd², Σmd]."""
    n = s[:, 0]
    mm, md = s[:, 1] / n, s[:, 2] / n
    vm = (s[:, 3] - n * mm * mm) / (n - 1)
    vd = (s[:, 4] - n * md * md) / (n - 1)
    cov = (s[:, 5] - n * mm * md) / (n - 1)
    num, den = mm + cm, md + cd
    r = num / den
    var = (vm - 2 * r * cov + r * r * vd) / (den * den) / n
    return r, np.maximum(var, 0.0)
