"""Confidence intervals: analytic (normal, delta method) and a vectorised block bootstrap.

The bootstrap never materialises resampled data. Each resample is a vector of multinomial counts over
resampling units; every estimator is a sum of ratios of column sums, so a resample's estimates need only
``counts @ unit_sums`` (a matrix product shared by all estimators). Units are single rounds when there are
at most ``max_units`` rounds, else ``max_units`` groups of ⌊n / max_units⌋ or ⌈n / max_units⌉ rounds drawn
at random: a seeded permutation of the rows (from ``random_state``) is cut into equal groups. With
independent rounds the group sums are then independent and exchangeable, so resampling groups has the
variance of resampling rounds whatever the order of the log (contiguous blocks did not: a log sorted by
reward put similar rounds together and doubled the interval). That caps the random numbers per resample
at ``max_units``. It is not a block bootstrap for drift in time; a log with drift needs one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from battleground.ope._estimators import Column, Estimator
from battleground.ope._results import OPEEstimate
from battleground.ope._validation import LoggedFeedback, OPEInputError

__all__ = ["analytic_interval", "bootstrap_intervals", "resampling_counts"]

DEFAULT_MAX_UNITS = 100_000
_CHUNK_CELLS = 4_000_000  # counts matrix cells per chunk of resamples (32 MB in float64)


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0 < a < 1:
        raise OPEInputError(f"alpha={alpha!r} must lie in (0, 1); 0.05 gives a 95% interval")
    return a


def analytic_interval(
    estimator: Estimator, data: LoggedFeedback, alpha: float = 0.05
) -> OPEEstimate:
    """Normal interval value ± z·sd(ψ)/√n from the estimator's linearised per-round terms ψ."""
    a = _check_alpha(alpha)
    psi = estimator.round_values(data)
    value = estimator.estimate_from(data)
    se = float(psi.std(ddof=1) / math.sqrt(data.n)) if data.n > 1 else float("nan")
    z = NormalDist().inv_cdf(1 - a / 2)
    return OPEEstimate(
        estimator.label, value, se, value - z * se, value + z * se, a, "analytic", data.n
    )


def resampling_counts(
    n_units: int, n_resamples: int, rng: np.random.Generator, *, dtype: type = np.float64
) -> np.ndarray:
    """Multinomial(n_units, uniform) counts for ``n_resamples`` resamples: a bincount of random indices.

    One bincount per resample keeps its output in cache (a single bincount over all resamples is ~4×
    slower); the indices of all resamples are drawn in one call.
    """
    idx_dtype = np.int64 if n_units > 2**31 - 1 else np.int32
    idx = rng.integers(0, n_units, size=(n_resamples, n_units), dtype=idx_dtype)
    counts: np.ndarray = np.empty((n_resamples, n_units), dtype=dtype)
    for b in range(n_resamples):
        counts[b] = np.bincount(idx[b], minlength=n_units)
    return counts


def _unit_sums(matrix: np.ndarray, n_units: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums over ``n_units`` random groups of rows (the rows themselves when ``n_units == n``)."""
    n = matrix.shape[0]
    if n_units == n:
        return matrix
    starts = (np.arange(n_units, dtype=np.int64) * n) // n_units
    return np.add.reduceat(matrix[rng.permutation(n)], starts, axis=0)


def bootstrap_intervals(
    estimators: Sequence[Estimator],
    data: LoggedFeedback,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    random_state: int | np.random.Generator | None = 0,
    max_units: int = DEFAULT_MAX_UNITS,
) -> list[OPEEstimate]:
    """Percentile bootstrap intervals for several estimators from one set of resampling weights."""
    a = _check_alpha(alpha)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 2:
        raise OPEInputError(f"n_bootstrap={n_bootstrap!r} must be an integer ≥ 2; 1000 is usual")
    if int(max_units) != max_units or max_units < 1:
        raise OPEInputError(f"max_units={max_units!r} must be a positive integer")
    n_boot = int(n_bootstrap)
    rng = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )
    cols: list[Column] = []
    for est in estimators:
        for c in est.columns():
            if c not in cols:
                cols.append(c)
    if ("one", None) not in cols:
        cols.append(("one", None))
    matrix = np.empty((data.n, len(cols)))
    for j, c in enumerate(cols):
        matrix[:, j] = data.column(*c)
    n_units = min(data.n, int(max_units))
    unit = _unit_sums(matrix, n_units, rng)
    # Centre the unit sums so the product sums small numbers; the means are added back exactly below.
    centre = unit.mean(axis=0)
    unit_c = unit - centre
    sums = np.empty((n_boot, len(cols)))
    per_chunk = max(1, _CHUNK_CELLS // n_units)
    for start in range(0, n_boot, per_chunk):
        stop = min(n_boot, start + per_chunk)
        counts = resampling_counts(n_units, stop - start, rng)
        # counts rows sum to n_units, so Σ counts·unit = counts @ (unit − centre) + n_units·centre
        sums[start:stop] = counts @ unit_c + n_units * centre
    by_col = {c: sums[:, j] for j, c in enumerate(cols)}
    out = []
    for est in estimators:
        value = est.estimate_from(data)
        draws = np.asarray(est.combine(by_col), dtype=np.float64)
        lo, hi = np.quantile(draws, [a / 2, 1 - a / 2])
        out.append(
            OPEEstimate(
                est.label,
                value,
                float(draws.std(ddof=1)),
                float(lo),
                float(hi),
                a,
                "bootstrap",
                data.n,
            )
        )
    return out
