"""The ten off-policy estimators, each a sum of ratios of per-round column sums.

Writing every estimator as Σ_parts (Σ_i num_i) / (Σ_i den_i) gives, from one description, the point
estimate, the analytic standard error (delta method on each ratio) and a bootstrap that needs only the
column sums of each resample (so all estimators share one set of resampling weights).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from battleground.ope._validation import LoggedFeedback, check_lambda, validate_feedback

__all__ = [
    "DM",
    "DR",
    "IPS",
    "SNDR",
    "SNIPS",
    "CappedDR",
    "CappedIPS",
    "CappedSNIPS",
    "DRos",
    "Estimator",
    "SwitchDR",
    "all_estimators",
]

# A column is (name, λ or None); a part is (numerator column, denominator column).
Column = tuple[str, float | None]
Part = tuple[Column, Column]
_ONE: Column = ("one", None)


@dataclass(frozen=True)
class Estimator(ABC):
    """Base class: subclasses define ``name`` and ``parts()``; everything else is shared."""

    name: ClassVar[str] = "estimator"
    requires_q_hat: ClassVar[bool] = False
    # λ = 0 is meaningful (the direct method) only where λ switches or shrinks a DR correction.
    zero_lambda_ok: ClassVar[bool] = False

    @abstractmethod
    def parts(self) -> tuple[Part, ...]:
        """The (numerator column, denominator column) pairs whose ratios add up to the estimate."""

    @property
    def label(self) -> str:
        lam = getattr(self, "lambda_", None)
        return self.name if lam is None else f"{self.name}(λ={lam:g})"

    def columns(self) -> list[Column]:
        cols: list[Column] = []
        for num, den in self.parts():
            for c in (num, den):
                if c not in cols:
                    cols.append(c)
        return cols

    def combine(self, sums: Mapping[Column, Any]) -> Any:
        """Estimate from column sums (scalars, or arrays over bootstrap resamples)."""
        total: Any = 0.0
        for num, den in self.parts():
            total = total + sums[num] / sums[den]
        return total

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        lam = getattr(self, "lambda_", None)
        if lam is not None:
            check_lambda(lam, allow_zero=self.zero_lambda_ok)

    def round_values(self, data: LoggedFeedback) -> np.ndarray:
        """Linearised per-round terms: their mean is the estimate, their spread gives the analytic SE."""
        self._check()
        out = np.zeros(data.n)
        for num, den in self.parts():
            a = data.column(*num)
            if den == _ONE:
                out += a
            else:
                b = data.column(*den)
                mean_b = b.mean()
                ratio = a.sum() / b.sum()
                out += ratio + (a - ratio * b) / mean_b
        return out

    def estimate_from(self, data: LoggedFeedback) -> float:
        self._check()
        sums = {c: data.column(*c).sum() if c != _ONE else float(data.n) for c in self.columns()}
        return float(self.combine(sums))

    def estimate(
        self,
        action: Any,
        reward: Any,
        pscore: Any,
        action_dist: Any,
        q_hat: Any = None,
        position: Any = None,
    ) -> float:
        """Policy value of ``action_dist`` from logged (action, reward, pscore) [and q_hat]."""
        self._check()
        data = validate_feedback(action, reward, pscore, action_dist, q_hat, position)
        return self.estimate_from(data)


def _lam(value: float) -> float:
    return check_lambda(value)


@dataclass(frozen=True)
class IPS(Estimator):
    """Inverse propensity scoring: mean(w·r)."""

    name: ClassVar[str] = "ips"

    def parts(self) -> tuple[Part, ...]:
        return ((("wr", None), _ONE),)


@dataclass(frozen=True)
class CappedIPS(Estimator):
    """Capped IPS: mean(min(w, λ)·r)."""

    lambda_: float = 5.0
    name: ClassVar[str] = "capped_ips"

    def parts(self) -> tuple[Part, ...]:
        return ((("wcr", _lam(self.lambda_)), _ONE),)


@dataclass(frozen=True)
class SNIPS(Estimator):
    """Self-normalised IPS: Σ w·r / Σ w."""

    name: ClassVar[str] = "snips"

    def parts(self) -> tuple[Part, ...]:
        return ((("wr", None), ("w", None)),)


@dataclass(frozen=True)
class CappedSNIPS(Estimator):
    """Capped self-normalised IPS: Σ min(w,λ)·r / Σ min(w,λ) (not in obp)."""

    lambda_: float = 5.0
    name: ClassVar[str] = "capped_snips"

    def parts(self) -> tuple[Part, ...]:
        lam = _lam(self.lambda_)
        return ((("wcr", lam), ("wc", lam)),)


@dataclass(frozen=True)
class DM(Estimator):
    """Direct method: mean over rounds of Σ_a π_e(a|x)·q̂(x,a)."""

    name: ClassVar[str] = "dm"
    requires_q_hat: ClassVar[bool] = True

    def parts(self) -> tuple[Part, ...]:
        return ((("dm", None), _ONE),)


@dataclass(frozen=True)
class DR(Estimator):
    """Doubly robust: DM + mean(w·(r − q̂(x,a)))."""

    name: ClassVar[str] = "dr"
    requires_q_hat: ClassVar[bool] = True

    def parts(self) -> tuple[Part, ...]:
        return ((("dm", None), _ONE), (("wres", None), _ONE))


@dataclass(frozen=True)
class CappedDR(Estimator):
    """Capped DR: DM + mean(min(w,λ)·(r − q̂(x,a)))."""

    lambda_: float = 5.0
    name: ClassVar[str] = "capped_dr"
    requires_q_hat: ClassVar[bool] = True

    def parts(self) -> tuple[Part, ...]:
        return ((("dm", None), _ONE), (("wcres", _lam(self.lambda_)), _ONE))


@dataclass(frozen=True)
class SNDR(Estimator):
    """Self-normalised DR: DM + Σ w·(r − q̂) / Σ w."""

    name: ClassVar[str] = "sndr"
    requires_q_hat: ClassVar[bool] = True

    def parts(self) -> tuple[Part, ...]:
        return ((("dm", None), _ONE), (("wres", None), ("w", None)))


@dataclass(frozen=True)
class SwitchDR(Estimator):
    """Switch DR: DM + mean(1[w ≤ λ]·w·(r − q̂))."""

    lambda_: float = 5.0
    name: ClassVar[str] = "switch_dr"
    requires_q_hat: ClassVar[bool] = True

    zero_lambda_ok: ClassVar[bool] = True

    def parts(self) -> tuple[Part, ...]:
        return ((("dm", None), _ONE), (("swres", check_lambda(self.lambda_, allow_zero=True)), _ONE))


@dataclass(frozen=True)
class DRos(Estimator):
    """DR with optimistic shrinkage: DM + mean(λw/(w²+λ)·(r − q̂))."""

    lambda_: float = 5.0
    name: ClassVar[str] = "dr_os"
    requires_q_hat: ClassVar[bool] = True

    zero_lambda_ok: ClassVar[bool] = True

    def parts(self) -> tuple[Part, ...]:
        return ((("dm", None), _ONE), (("osres", check_lambda(self.lambda_, allow_zero=True)), _ONE))


def all_estimators(lambda_: float = 5.0, *, with_q_hat: bool = True) -> list[Estimator]:
    """The ten estimators (the six that need q̂ only when ``with_q_hat``), capped ones at ``lambda_``."""
    lam = check_lambda(lambda_)
    ests: list[Estimator] = [IPS(), CappedIPS(lam), SNIPS(), CappedSNIPS(lam)]
    if with_q_hat:
        ests += [DM(), DR(), CappedDR(lam), SNDR(), SwitchDR(lam), DRos(lam)]
    return ests
