"""Frozen result dataclasses of off-policy evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Diagnostics", "OPEEstimate"]


@dataclass(frozen=True)
class OPEEstimate:
    """One estimator's policy value with its confidence interval.

    ``ci_method`` is ``"analytic"`` (normal, from the estimator's linearised per-round terms) or
    ``"bootstrap"`` (percentile); ``se`` is the analytic standard error or the bootstrap standard deviation.
    """

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    alpha: float
    ci_method: str
    n_rounds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Diagnostics:
    """Importance-weight diagnostics of an evaluation policy against the logs.

    ``ess`` is Kish's effective sample size (Σw)²/Σw²; ``zero_support_share`` is the share of the evaluation
    policy's probability mass on actions the logging policy never takes (or never logged).
    ``trustworthy`` is False when any of ``reasons`` applies.
    """

    n_rounds: int
    ess: float
    ess_ratio: float
    max_weight: float
    mean_weight: float
    zero_support_share: float
    trustworthy: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        return out
