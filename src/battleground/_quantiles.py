"""The one formula storage and statistics share for quantile metrics: the levels of the order statistics
that bound the 95 % interval of a sample ν-quantile (Deng, Knoblich and Yu 2018; gbstats).

The scan computes the sample quantiles at these levels (``storage/_quantile_sql.py``) and the statistics
turn them into a variance (``stats/_quantile.py``); both read the levels from here.
"""

from __future__ import annotations

import math

__all__ = ["LEVEL_FLOOR", "Z95", "bound_levels"]

Z95 = 1.959963984540054  # Φ⁻¹(0.975): the bounds are always those of the 95 % interval (gbstats)
LEVEL_FLOOR = 1e-8  # the levels stay in [1e-8, 1 − 1e-8], as GrowthBook's


def bound_levels(nu: float, n_star: float) -> tuple[float, float]:
    """ν ∓ z·√(ν(1−ν)/n*), clamped to [1e-8, 1 − 1e-8] (``nu`` in (0, 1) and ``n_star`` > 0 unchecked).

    Example:
        >>> [round(v, 6) for v in bound_levels(0.9, 11054)]
        [0.894407, 0.905593]
    """
    half = Z95 * math.sqrt(nu * (1.0 - nu) / n_star)
    return max(nu - half, LEVEL_FLOOR), min(nu + half, 1.0 - LEVEL_FLOOR)
