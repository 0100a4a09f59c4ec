"""The boundary type between storage and statistics: per-variant sufficient statistics of one metric.

Event stores compute these in SQL (aggregating per user first); statistics code works only from them.
For user u in a variant, ``x_u`` is the user's metric value (numerator), ``y_u`` the denominator of a
ratio metric (e.g. impressions for CTR) and ``c_u`` the pre-period covariate (for CUPED).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MetricSums:
    """Sufficient statistics of one metric for one variant over a time window.

    Attributes:
        variant: variant name.
        users: number of users (the unit of analysis; each contributes one x_u).
        events: number of raw events that went into the numerator.
        sum_x, sum_x2: Σx_u and Σx_u².
        sum_y, sum_y2, sum_xy: Σy_u, Σy_u², Σx_u·y_u (ratio metrics; 0 otherwise).
        sum_c, sum_c2, sum_xc: Σc_u, Σc_u², Σx_u·c_u (pre-period covariate; 0 when absent).
    """

    variant: str
    users: int
    events: int
    sum_x: float
    sum_x2: float
    sum_y: float = 0.0
    sum_y2: float = 0.0
    sum_xy: float = 0.0
    sum_c: float = 0.0
    sum_c2: float = 0.0
    sum_xc: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
