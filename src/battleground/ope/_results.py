"""Frozen result dataclasses of off-policy evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "Diagnostics", "OPEEstimate", "PolicyEvaluation"]

# the seed's evaluation table, column by column
COLUMNS = ["estimator", "value", "se", "ci_low", "ci_high", "alpha", "ci_method", "n_rounds"]


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


@dataclass(frozen=True)
class PolicyEvaluation:
    """What :func:`~battleground.ope.evaluate_policy` returns: every estimator's estimate and the
    importance-weight diagnostics, with ``to_frame()`` for the seed's table.

    Attributes:
        estimates: one :class:`OPEEstimate` per estimator, in the order they were asked for.
        diagnostics: the :class:`Diagnostics` of the evaluation policy against the logs.
    """

    estimates: tuple[OPEEstimate, ...]
    diagnostics: Diagnostics

    @property
    def trustworthy(self) -> bool:
        return self.diagnostics.trustworthy

    def __getitem__(self, estimator: str) -> OPEEstimate:
        """The estimate of the estimator labelled ``estimator`` (e.g. ``"dr"``)."""
        for e in self.estimates:
            if e.estimator == estimator:
                return e
        raise KeyError(f"no estimator {estimator!r}; the estimators are {[e.estimator for e in self.estimates]}")

    def to_frame(self) -> pd.DataFrame:
        """The seed's table: one row per estimator with the columns of :data:`COLUMNS` (nothing in ``attrs``)."""
        import pandas as pd

        return pd.DataFrame([e.to_dict() for e in self.estimates], columns=COLUMNS)
