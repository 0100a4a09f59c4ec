"""Shared pieces of the statistics engine: input summaries, validation, result base class.

Statistics work from *summary statistics* only (n, Σx, Σx², …). Every public function accepts one of:

* a :class:`MeanSummary` / :class:`RatioSummary` / :class:`CupedSummary` built explicitly,
* a :class:`battleground.storage.sums.MetricSums` (what the event stores return), or
* a 1-D array of per-user values (converted to its sums once).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from battleground.errors import StatsError

__all__ = [
    "Alternative",
    "CupedSummary",
    "MeanSummary",
    "RatioSummary",
    "Result",
    "StatsInputError",
]

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")


class StatsInputError(StatsError, ValueError):
    """Bad input to a statistics function; the message names the argument, the value and the fix."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Result):
        return value.to_dict()
    return value


class Result:
    """Mixin for the frozen result dataclasses: ``to_dict()`` with plain Python values (JSON-ready)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------------


def check_alpha(alpha: float, name: str = "alpha") -> float:
    if not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise StatsInputError(f"{name} must be in (0, 1), got {alpha!r}; use e.g. {name}=0.05")
    return float(alpha)


def check_alternative(alternative: str) -> Alternative:
    if alternative not in _ALTERNATIVES:
        raise StatsInputError(
            f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}"
        )
    return alternative  # type: ignore[return-value]


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise StatsInputError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise StatsInputError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_finite(name: str, value: float) -> float:
    """A real number: not inf, not NaN (an undefined estimate must never reach a test)."""
    if isinstance(value, bool) or not (isinstance(value, int | float | np.floating) and math.isfinite(value)):
        raise StatsInputError(
            f"{name} must be a finite number, got {value!r}; an infinite or undefined estimate (e.g. a "
            "relative lift over a zero baseline) cannot be tested: use the absolute difference"
        )
    return float(value)


def _check_n(name: str, n: float) -> None:
    if not (math.isfinite(n) and n >= 2):
        raise StatsInputError(f"{name}: n must be >= 2 users, got n={n!r}; wait for more data")


# ---------------------------------------------------------------------------------------------------
# input summaries
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeanSummary(Result):
    """One arm of a mean (or proportion) metric: ``n`` users, sample ``mean`` and ``var``.

    ``var`` is the per-user variance: the ddof=1 sample variance for continuous metrics
    (:meth:`from_sums`, :meth:`from_array`) and p(1−p) for proportions (:meth:`from_proportion`,
    the convention of gbstats and spotify-confidence).

    Example:
        >>> round(MeanSummary.from_proportion(successes=1000, n=10000).var, 12)
        0.09
    """

    n: float
    mean: float
    var: float

    @classmethod
    def from_sums(cls, n: float, sum_x: float, sum_x2: float) -> MeanSummary:
        mean = sum_x / n if n > 0 else math.nan
        var = (sum_x2 - n * mean * mean) / (n - 1) if n > 1 else math.nan
        return cls(n=float(n), mean=float(mean), var=float(max(var, 0.0)))

    @classmethod
    def from_array(cls, values: Any) -> MeanSummary:
        a = np.asarray(values, dtype=float).ravel()
        if a.size < 2:
            return cls(n=float(a.size), mean=float(a.mean()) if a.size else math.nan, var=math.nan)
        return cls(n=float(a.size), mean=float(a.mean()), var=float(a.var(ddof=1)))

    @classmethod
    def from_proportion(cls, successes: float, n: float) -> MeanSummary:
        if not (n > 0 and 0 <= successes <= n):
            raise StatsInputError(
                f"successes must lie in [0, n], got successes={successes!r}, n={n!r}"
            )
        p = successes / n
        return cls(n=float(n), mean=float(p), var=float(p * (1.0 - p)))


@dataclass(frozen=True)
class RatioSummary(Result):
    """One arm of a ratio metric ΣM/ΣD with the user as the unit (e.g. clicks / impressions).

    Example:
        >>> s = RatioSummary.from_arrays([1, 0, 2], [10, 5, 10])
        >>> round(s.ratio, 6)
        0.12
    """

    n: float
    sum_m: float
    sum_d: float
    sum_m2: float
    sum_d2: float
    sum_md: float

    @classmethod
    def from_arrays(cls, numerator: Any, denominator: Any) -> RatioSummary:
        m = np.asarray(numerator, dtype=float).ravel()
        d = np.asarray(denominator, dtype=float).ravel()
        if m.shape != d.shape:
            raise StatsInputError(
                f"numerator and denominator must have the same length, got {m.size} and {d.size}"
            )
        return cls(
            n=float(m.size), sum_m=float(m.sum()), sum_d=float(d.sum()), sum_m2=float(m @ m),
            sum_d2=float(d @ d), sum_md=float(m @ d),
        )

    @property
    def ratio(self) -> float:
        return self.sum_m / self.sum_d

    def moments(self) -> tuple[float, float, float, float, float]:
        """(mean_m, mean_d, var_m, var_d, cov_md), ddof=1."""
        n = self.n
        mm, md = self.sum_m / n, self.sum_d / n
        var_m = (self.sum_m2 - n * mm * mm) / (n - 1)
        var_d = (self.sum_d2 - n * md * md) / (n - 1)
        cov = (self.sum_md - n * mm * md) / (n - 1)
        return mm, md, var_m, var_d, cov

    def var_ratio(self) -> float:
        """Delta-method Var(R) = (s_M² − 2R s_MD + R² s_D²) / (n μ_D²)."""
        _, md, var_m, var_d, cov = self.moments()
        r = self.ratio
        return max((var_m - 2 * r * cov + r * r * var_d) / (self.n * md * md), 0.0)


@dataclass(frozen=True)
class CupedSummary(Result):
    """One arm of a metric ``y`` with a pre-period covariate ``x`` (CUPED)."""

    n: float
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    @classmethod
    def from_arrays(cls, y: Any, x: Any) -> CupedSummary:
        ya = np.asarray(y, dtype=float).ravel()
        xa = np.asarray(x, dtype=float).ravel()
        if ya.shape != xa.shape:
            raise StatsInputError(
                f"y and covariate x must have the same length, got {ya.size} and {xa.size}"
            )
        return cls(
            n=float(ya.size), sum_y=float(ya.sum()), sum_y2=float(ya @ ya), sum_x=float(xa.sum()),
            sum_x2=float(xa @ xa), sum_xy=float(xa @ ya),
        )

    def moments(self) -> tuple[float, float, float, float, float]:
        """(mean_y, mean_x, var_y, var_x, cov_xy), ddof=1."""
        n = self.n
        my, mx = self.sum_y / n, self.sum_x / n
        var_y = (self.sum_y2 - n * my * my) / (n - 1)
        var_x = (self.sum_x2 - n * mx * mx) / (n - 1)
        cov = (self.sum_xy - n * mx * my) / (n - 1)
        return my, mx, var_y, var_x, cov


def _is_metric_sums(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("users", "sum_x", "sum_x2", "sum_y", "sum_c"))


def as_mean_summary(obj: Any, name: str, *, proportion: bool = False) -> MeanSummary:
    """Coerce ``obj`` to a validated :class:`MeanSummary` (n ≥ 2, finite)."""
    if isinstance(obj, MeanSummary):
        s = obj
    elif _is_metric_sums(obj):
        if proportion:
            if not (0 <= obj.sum_x <= obj.users):
                raise StatsInputError(
                    f"{name}: a proportion needs 0 <= successes <= users, got sum_x={obj.sum_x!r}, "
                    f"users={obj.users!r}"
                )
            s = MeanSummary.from_proportion(obj.sum_x, obj.users)
        else:
            s = MeanSummary.from_sums(obj.users, obj.sum_x, obj.sum_x2)
    elif isinstance(obj, RatioSummary | CupedSummary):
        raise StatsInputError(f"{name}: expected a mean summary, got {type(obj).__name__}")
    else:
        a = np.asarray(obj, dtype=float).ravel()
        if proportion and a.size and ((a < 0) | (a > 1)).any():
            raise StatsInputError(
                f"{name}: proportions must lie in [0, 1], got values from {a.min()} to {a.max()}"
            )
        s = MeanSummary.from_array(a)
    _check_n(name, s.n)
    if not (math.isfinite(s.mean) and math.isfinite(s.var)):
        raise StatsInputError(f"{name}: mean and variance must be finite, got {s!r}")
    if proportion and not (0.0 <= s.mean <= 1.0):
        raise StatsInputError(f"{name}: a proportion must lie in [0, 1], got {s.mean!r}")
    return s


def as_ratio_summary(obj: Any, name: str) -> RatioSummary:
    if isinstance(obj, RatioSummary):
        s = obj
    elif _is_metric_sums(obj):
        s = RatioSummary(
            n=float(obj.users), sum_m=obj.sum_x, sum_d=obj.sum_y, sum_m2=obj.sum_x2,
            sum_d2=obj.sum_y2, sum_md=obj.sum_xy,
        )
    elif isinstance(obj, tuple) and len(obj) == 2:
        s = RatioSummary.from_arrays(obj[0], obj[1])
    else:
        raise StatsInputError(
            f"{name}: expected RatioSummary, MetricSums or (numerator, denominator) arrays, "
            f"got {type(obj).__name__}"
        )
    _check_n(name, s.n)
    if not s.sum_d > 0:
        raise StatsInputError(
            f"{name}: the denominator total must be > 0, got sum_d={s.sum_d!r}; "
            "a ratio metric needs a denominator (e.g. impressions)"
        )
    return s


def as_cuped_summary(obj: Any, name: str) -> CupedSummary:
    if isinstance(obj, CupedSummary):
        s = obj
    elif _is_metric_sums(obj):
        s = CupedSummary(
            n=float(obj.users), sum_y=obj.sum_x, sum_y2=obj.sum_x2, sum_x=obj.sum_c,
            sum_x2=obj.sum_c2, sum_xy=obj.sum_xc,
        )
    elif isinstance(obj, tuple) and len(obj) == 2:
        s = CupedSummary.from_arrays(obj[0], obj[1])
    else:
        raise StatsInputError(
            f"{name}: expected CupedSummary, MetricSums or (y, covariate) arrays, "
            f"got {type(obj).__name__}"
        )
    _check_n(name, s.n)
    return s
