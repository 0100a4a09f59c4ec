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
_ALIASES = {"larger": "greater", "smaller": "less"}  # statsmodels' names


class _LazyModule:
    """A module imported on first attribute access: ``import battleground.stats`` stays cheap (scipy
    takes seconds to import; a CLI that never computes a p-value should not pay for it)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            import importlib

            self._module = importlib.import_module(self._name)
        value = getattr(self._module, attr)
        setattr(self, attr, value)  # later look-ups are plain attribute reads
        return value


def lazy_module(name: str) -> Any:
    """``lazy_module("scipy.stats")``: the module, imported when first used."""
    return _LazyModule(name)


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


class IntervalResult(Result):
    """Mixin for a test's result with ``ci_lower``/``ci_upper``, ``p_value`` and ``alpha`` fields."""

    ci_lower: float
    ci_upper: float
    p_value: float
    alpha: float

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_lower, self.ci_upper)

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


# ---------------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------------


def check_alpha(alpha: float, name: str = "alpha") -> float:
    if not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise StatsInputError(f"{name} must be in (0, 1), got {alpha!r}; use e.g. {name}=0.05")
    return float(alpha)


def check_alternative(alternative: str) -> Alternative:
    """"two-sided", "greater" or "less" (statsmodels' "larger" and "smaller" are read as the latter two)."""
    alternative = _ALIASES.get(alternative, alternative)
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


# Sums computed in floating point can put Σx² a hair below (Σx)²/n for constant data; below this
# relative margin that is rounding (clamped to 0), beyond it the sums are impossible (an error).
ROUNDING_RTOL = 1e-10


def centered_ss(n: float, s: float, s2: float, field: str, where: str = "") -> float:
    """Σ(x − x̄)² = Σx² − (Σx)²/n, from sums that may be taken around any shift (the result is the same).

    Raises when ``s2`` is negative or clearly below (Σx)²/n (impossible for real data); clamps the
    rounding noise in between to 0.
    """
    pre = f"{where}: " if where else ""
    if not (math.isfinite(s) and math.isfinite(s2)):
        raise StatsInputError(f"{pre}the sums must be finite, got sum {s!r} and {field}={s2!r}")
    if s2 < 0:
        raise StatsInputError(
            f"{pre}{field} must be >= 0, got {s2!r}; it is a sum of squares (check how the sums are computed)"
        )
    sq = s * s / n
    ss = s2 - sq
    if ss < 0:
        if -ss > ROUNDING_RTOL * max(s2, sq):
            base = field[:-1] if field.endswith("2") else field
            raise StatsInputError(
                f"{pre}{field}={s2!r} is below {base}**2/n = {sq!r}, which no data can give "
                f"(Σx² >= (Σx)²/n); check that {field} is the sum of the squared per-user values"
            )
        ss = 0.0
    return ss


def centered_sp(
    n: float, sa: float, sb: float, sab: float, ss_a: float, ss_b: float, field: str, where: str = ""
) -> float:
    """Σ(a − ā)(b − b̄) = Σab − ΣaΣb/n, checked against Cauchy–Schwarz |Σ(a−ā)(b−b̄)|² <= ss_a·ss_b."""
    pre = f"{where}: " if where else ""
    if not math.isfinite(sab):
        raise StatsInputError(f"{pre}{field} must be finite, got {sab!r}")
    prod = sa * sb / n
    sp = sab - prod
    bound = math.sqrt(ss_a * ss_b)
    if abs(sp) > bound:
        if abs(sp) - bound > ROUNDING_RTOL * max(abs(sab), abs(prod), bound):
            raise StatsInputError(
                f"{pre}{field}={sab!r} is impossible with these sums: the centred cross-product "
                f"{sp!r} exceeds sqrt(centred squares) = {bound!r} (Cauchy-Schwarz); check that {field} "
                "is the sum of the per-user products"
            )
        sp = math.copysign(bound, sp)
    return sp


def _mean_var(n: float, s: float, s2: float, shift: float, names: tuple[str, str], where: str) -> tuple[float, float]:
    if not (isinstance(shift, int | float) and math.isfinite(shift)):
        raise StatsInputError(f"{where + ': ' if where else ''}shift must be a finite number, got {shift!r}")
    if not n > 0:
        return math.nan, math.nan
    mean = shift + s / n
    if not n > 1:
        return float(mean), math.nan
    return float(mean), centered_ss(n, s, s2, names[1], where) / (n - 1)


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

    def __post_init__(self) -> None:
        if self.n < 0:
            raise StatsInputError(f"n must be >= 0 users, got n={self.n!r}")
        if self.var < 0:
            raise StatsInputError(
                f"var must be >= 0, got {self.var!r}; a variance cannot be negative (check how it was "
                "computed: the per-user variance, ddof=1)"
            )

    @classmethod
    def from_sums(cls, n: float, sum_x: float, sum_x2: float, *, shift: float = 0.0) -> MeanSummary:
        """From n users, Σ(x − shift) and Σ(x − shift)² (plain Σx, Σx² with the default shift 0).

        Take the sums around a shift close to the mean (a pilot mean, yesterday's mean) when the mean
        is large next to the spread: the variance then stays exact (to 1e-9 at mean/sd = 1e8) where
        raw sums lose every digit. Raises when Σ(x − shift)² < (Σ(x − shift))²/n beyond rounding.

        Example (x = 1e8 + [−1, 0, 1], sums taken around 1e8):
            >>> MeanSummary.from_sums(3, 0.0, 2.0, shift=1e8)
            MeanSummary(n=3.0, mean=100000000.0, var=1.0)
        """
        mean, var = _mean_var(n, sum_x, sum_x2, shift, ("sum_x", "sum_x2"), "")
        return cls(n=float(n), mean=mean, var=float(var))

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

    The sums may be taken around shifts (``sum_m`` = Σ(m − shift_m), ``sum_md`` = Σ(m − shift_m)(d −
    shift_d), …) to keep the variance exact when the values are large next to their spread.

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
    shift_m: float = 0.0
    shift_d: float = 0.0

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
        return (self.sum_m + self.n * self.shift_m) / (self.sum_d + self.n * self.shift_d)

    def moments(
        self, where: str = "", names: tuple[str, ...] = ("sum_m2", "sum_d2", "sum_md")
    ) -> tuple[float, float, float, float, float]:
        """(mean_m, mean_d, var_m, var_d, cov_md), ddof=1; raises on impossible sums."""
        n = self.n
        ss_m = centered_ss(n, self.sum_m, self.sum_m2, names[0], where)
        ss_d = centered_ss(n, self.sum_d, self.sum_d2, names[1], where)
        sp = centered_sp(n, self.sum_m, self.sum_d, self.sum_md, ss_m, ss_d, names[2], where)
        mm, md = self.shift_m + self.sum_m / n, self.shift_d + self.sum_d / n
        return mm, md, ss_m / (n - 1), ss_d / (n - 1), sp / (n - 1)

    def var_ratio(self) -> float:
        """Delta-method Var(R) = (s_M² − 2R s_MD + R² s_D²) / (n μ_D²)."""
        _, md, var_m, var_d, cov = self.moments()
        r = self.ratio
        # Var(M − R·D) >= 0 for any valid sums (Cauchy–Schwarz is checked): only rounding goes below.
        return max((var_m - 2 * r * cov + r * r * var_d) / (self.n * md * md), 0.0)


@dataclass(frozen=True)
class CupedSummary(Result):
    """One arm of a metric ``y`` with a pre-period covariate ``x`` (CUPED).

    The sums may be taken around shifts (``sum_y`` = Σ(y − shift_y), ``sum_xy`` = Σ(x − shift_x)(y −
    shift_y), …), which keeps the moments exact when the values are large next to their spread.
    """

    n: float
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float
    shift_y: float = 0.0
    shift_x: float = 0.0

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

    def moments(
        self, where: str = "", names: tuple[str, ...] = ("sum_y2", "sum_x2", "sum_xy")
    ) -> tuple[float, float, float, float, float]:
        """(mean_y, mean_x, var_y, var_x, cov_xy), ddof=1; raises on impossible sums."""
        n = self.n
        ss_y = centered_ss(n, self.sum_y, self.sum_y2, names[0], where)
        ss_x = centered_ss(n, self.sum_x, self.sum_x2, names[1], where)
        sp = centered_sp(n, self.sum_x, self.sum_y, self.sum_xy, ss_x, ss_y, names[2], where)
        my, mx = self.shift_y + self.sum_y / n, self.shift_x + self.sum_x / n
        return my, mx, ss_y / (n - 1), ss_x / (n - 1), sp / (n - 1)


def _is_metric_sums(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("users", "sum_x", "sum_x2", "sum_y", "sum_c"))


def _shift(obj: Any, name: str) -> float:
    """A ``MetricSums`` shift (``shift_x``, ``shift_y``, ``shift_c``): the sums are around it; 0 if absent."""
    return float(getattr(obj, name, 0.0) or 0.0)


def as_mean_summary(obj: Any, name: str, *, proportion: bool = False) -> MeanSummary:
    """Coerce ``obj`` to a validated :class:`MeanSummary` (n ≥ 2, finite)."""
    if isinstance(obj, MeanSummary):
        s = obj
    elif _is_metric_sums(obj):
        if proportion:
            if not (0 <= obj.sum_x + obj.users * _shift(obj, "shift_x") <= obj.users):
                raise StatsInputError(
                    f"{name}: a proportion needs 0 <= successes <= users, got sum_x={obj.sum_x!r}, "
                    f"users={obj.users!r}"
                )
            s = MeanSummary.from_proportion(obj.sum_x + obj.users * _shift(obj, "shift_x"), obj.users)
        else:
            mean, var = _mean_var(
                obj.users, obj.sum_x, obj.sum_x2, _shift(obj, "shift_x"), ("sum_x", "sum_x2"), name
            )
            s = MeanSummary(n=float(obj.users), mean=mean, var=float(var))
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
    names: tuple[str, ...] = ("sum_m2", "sum_d2", "sum_md")
    if isinstance(obj, RatioSummary):
        s = obj
    elif _is_metric_sums(obj):
        s = RatioSummary(
            n=float(obj.users), sum_m=obj.sum_x, sum_d=obj.sum_y, sum_m2=obj.sum_x2,
            sum_d2=obj.sum_y2, sum_md=obj.sum_xy, shift_m=_shift(obj, "shift_x"),
            shift_d=_shift(obj, "shift_y"),
        )
        names = ("sum_x2", "sum_y2", "sum_xy")
    elif isinstance(obj, tuple) and len(obj) == 2:
        s = RatioSummary.from_arrays(obj[0], obj[1])
    else:
        raise StatsInputError(
            f"{name}: expected RatioSummary, MetricSums or (numerator, denominator) arrays, "
            f"got {type(obj).__name__}"
        )
    _check_n(name, s.n)
    total_d = s.sum_d + s.n * s.shift_d
    if not total_d > 0:
        raise StatsInputError(
            f"{name}: the denominator total must be > 0, got {total_d!r}; "
            "a ratio metric needs a denominator (e.g. impressions)"
        )
    s.moments(name, names)  # impossible sums fail here, naming the arm and the field
    return s


def as_cuped_summary(obj: Any, name: str) -> CupedSummary:
    names: tuple[str, ...] = ("sum_y2", "sum_x2", "sum_xy")
    if isinstance(obj, CupedSummary):
        s = obj
    elif _is_metric_sums(obj):
        s = CupedSummary(
            n=float(obj.users), sum_y=obj.sum_x, sum_y2=obj.sum_x2, sum_x=obj.sum_c,
            sum_x2=obj.sum_c2, sum_xy=obj.sum_xc, shift_y=_shift(obj, "shift_x"),
            shift_x=_shift(obj, "shift_c"),
        )
        names = ("sum_x2", "sum_c2", "sum_xc")
    elif isinstance(obj, tuple) and len(obj) == 2:
        s = CupedSummary.from_arrays(obj[0], obj[1])
    else:
        raise StatsInputError(
            f"{name}: expected CupedSummary, MetricSums or (y, covariate) arrays, "
            f"got {type(obj).__name__}"
        )
    _check_n(name, s.n)
    s.moments(name, names)  # impossible sums fail here, naming the arm and the field
    return s
