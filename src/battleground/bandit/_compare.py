"""Is agent A better than agent B? A paired interval on per-customer accumulated revenue.

Every agent is evaluated on the same customers (the world is drawn from the simulator's seed) and the
same episode seeds, so the comparison pairs customers: ``d_i`` is customer ``i``'s accumulated revenue
under A minus under B, averaged over the trajectories, and the interval is ``mean(d) ± z·sd(d)/√n``
over customers. Two trajectories give two numbers per agent, far too few to call a winner; a thousand
customers give a usable interval. "A beats B" only when the whole interval lies above zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from battleground.errors import BanditError

__all__ = ["AgentComparison", "ComparisonInputError", "compare_agents"]


class ComparisonInputError(BanditError, ValueError):
    """Per-customer revenues that cannot be paired."""


@dataclass(frozen=True)
class AgentComparison:
    """A − B in accumulated revenue per customer, with its paired interval and the verdict."""

    agent_a: str
    agent_b: str
    mean_a: float
    mean_b: float
    difference: float
    se: float
    ci_low: float
    ci_high: float
    alpha: float
    n_customers: int

    @property
    def a_beats_b(self) -> bool:
        return self.ci_low > 0

    @property
    def b_beats_a(self) -> bool:
        return self.ci_high < 0

    @property
    def verdict(self) -> str:
        ci = f"{100 * (1 - self.alpha):g} % CI [{self.ci_low:+,.2f}, {self.ci_high:+,.2f}]"
        if self.a_beats_b:
            return f"{self.agent_a} beats {self.agent_b} by {self.difference:+,.2f} per customer ({ci})"
        if self.b_beats_a:
            return f"{self.agent_b} beats {self.agent_a} by {-self.difference:+,.2f} per customer ({ci})"
        return f"{self.agent_a} and {self.agent_b} are not distinguishable: {self.difference:+,.2f} per customer ({ci})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "a_beats_b": self.a_beats_b, "b_beats_a": self.b_beats_a, "verdict": self.verdict}


def compare_agents(
    agent_a: str, revenue_a: ArrayLike, agent_b: str, revenue_b: ArrayLike, *, alpha: float = 0.05
) -> AgentComparison:
    """Paired comparison of two agents on the same customers.

    Args:
        agent_a, agent_b: names, for the verdict.
        revenue_a, revenue_b: accumulated revenue per customer, ``(n_customers,)`` or
            ``(n_trajectories, n_customers)`` (averaged over trajectories first), customers aligned.
        alpha: 1 − the interval's coverage.
    """
    a = np.asarray(revenue_a, dtype=np.float64)
    b = np.asarray(revenue_b, dtype=np.float64)
    a = a.mean(axis=0) if a.ndim == 2 else a
    b = b.mean(axis=0) if b.ndim == 2 else b
    if a.ndim != 1 or a.shape != b.shape:
        raise ComparisonInputError(
            f"revenue_a and revenue_b must hold the same customers, got shapes {a.shape} and {b.shape}"
        )
    if a.size < 2:
        raise ComparisonInputError(f"need at least 2 customers to compare agents, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ComparisonInputError("revenues contain NaN or infinite values")
    if not 0 < alpha < 1:
        raise ComparisonInputError(f"alpha must lie in (0, 1), got {alpha!r}; 0.05 gives a 95 % interval")
    d = a - b
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return AgentComparison(agent_a, agent_b, float(a.mean()), float(b.mean()), diff, se,
                           diff - z * se, diff + z * se, float(alpha), int(d.size))
