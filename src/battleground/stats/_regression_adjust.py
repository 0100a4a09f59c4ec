"""Regression adjustment with several covariates (CUPED++, Eppo; CURE, Statsig), from per-arm sums.

Per arm v (n_v users) the sums of y (the metric) and of p covariates x_1 … x_p (pre-period values of
the experiment's metrics, numeric user attributes, a model's prediction) and of all their products
give the arm's means and (ddof 1) covariance matrix. One coefficient vector θ for every arm comes from
a single ridge regression of y on x over the users of all arms pooled (no treatment indicator, as
Eppo's CUPED++ and gbstats' one-covariate CUPED):

    S = Σ_v (n_v − 1)·C_v + Σ_v n_v (m_v − m)(m_v − m)ᵀ           (pooled centred scatter of (y, x))
    θ = D⁻¹ (R + λI)⁺ D⁻¹ S_xy,   R = D⁻¹ S_xx D⁻¹,   D = diag(S_xx)^½

(λ = ``ridge``, scale-free: the penalty is λ times each covariate's own sum of squares; ⁺ the
Moore–Penrose inverse, so collinear covariates are fitted once). Each arm's adjusted mean and the
variance of that mean are

    ỹ_v = ȳ_v − θᵀ(x̄_v − x̄),    V_v = (s²_y,v − 2θᵀs_xy,v + θᵀC_xx,v θ) / n_v,

the treatment effect ỹ_T − ỹ_C with Welch degrees of freedom, and the relative lift divides it by the
*unadjusted* control mean (the delta method through the control's mean and covariates, as
:func:`~battleground.stats.cuped_test`; with one covariate the two agree exactly). With λ = 0 the
estimate is the difference of the arms' mean residuals of the pooled OLS fit ``y ~ 1 + x``.

Never worse than unadjusted in expectation: covariates without variance are dropped; with fewer than
``min_users_per_covariate`` users per fitted coefficient, or when the adjusted variance of the arms'
means would exceed the plain one, θ = 0 and the result is the plain Welch comparison (``fallback`` says
why). ``variance_reduction`` = 1 − Var(adjusted effect)/Var(plain effect).

References: Deng, Xu, Kohavi & Walker (2013), "Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data" (WSDM), §3.3 on several covariates; Lin (2013),
"Agnostic notes on regression adjustments to experimental data", Ann. Appl. Stat. 7(1); Eppo's CUPED++
and Statsig's CURE documentation; Hoerl & Kennard (1970) for ridge regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import (
    Alternative,
    Result,
    StatsInputError,
    check_alpha,
    check_alternative,
    check_choice,
)
from battleground.stats._tests import Distribution, EffectResult, _effect, welch_df

__all__ = ["CovariateSummary", "RegressionAdjustedResult", "regression_adjusted_test"]


@dataclass(frozen=True)
class CovariateSummary(Result):
    """One arm: Σy, Σy², Σx_j, Σx_j·y and Σx_j·x_k around shifts (``shift_y``, ``shift_x``; all 0 for raw
    sums). Build one from per-user arrays with :meth:`from_arrays`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(500, 2))
        >>> s = CovariateSummary.from_arrays(x @ [1.0, 2.0] + 3.0, x, name="control")
        >>> s.p, round(float(s.moments()[0][0]), 2)
        (2, 2.9)
    """

    n: float
    sum_y: float
    sum_y2: float
    sum_x: tuple[float, ...]
    sum_xy: tuple[float, ...]
    sum_xx: tuple[tuple[float, ...], ...]
    shift_y: float = 0.0
    shift_x: tuple[float, ...] = ()
    name: str = ""

    @classmethod
    def from_arrays(cls, y: Any, x: Any, *, name: str = "") -> CovariateSummary:
        """From the arm's per-user metric values ``y`` (n,) and covariates ``x`` (n, p)."""
        yy = np.asarray(y, dtype=float).ravel()
        xx = np.asarray(x, dtype=float)
        xx = xx.reshape(len(yy), -1) if xx.size or len(yy) == 0 else np.empty((len(yy), 0))
        if xx.ndim != 2 or xx.shape[0] != len(yy):
            raise StatsInputError(f"x must have one row of covariates per user: {len(yy)} values of y, x of shape "
                                  f"{np.shape(x)}")
        return cls(float(len(yy)), float(yy.sum()), float(yy @ yy), tuple(float(v) for v in xx.sum(axis=0)),
                   tuple(float(v) for v in xx.T @ yy), tuple(tuple(float(v) for v in row) for row in xx.T @ xx),
                   name=name)

    @property
    def p(self) -> int:
        """Number of covariates."""
        return len(self.sum_x)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(means of (y, x_1 … x_p), their (1+p)×(1+p) covariance matrix, ddof 1)."""
        p = self.p
        if len(self.sum_xy) != p or np.shape(self.sum_xx) not in ((p, p), (0,)) or len(self.shift_x) not in (0, p):
            raise StatsInputError(f"arm {self.name or '?'}: sum_x, sum_xy, sum_xx and shift_x must all be for the same "
                                  f"{p} covariates, got {len(self.sum_xy)}, {np.shape(self.sum_xx)}, {len(self.shift_x)}")
        if not self.n >= 2:
            raise StatsInputError(f"arm {self.name or '?'} has n={self.n!r} users; regression adjustment needs at "
                                  "least 2 users per arm")
        s = np.concatenate([[self.sum_y], np.asarray(self.sum_x, dtype=float)])
        prod = np.empty((p + 1, p + 1))
        prod[0, 0] = self.sum_y2
        prod[0, 1:] = prod[1:, 0] = self.sum_xy
        if p:
            prod[1:, 1:] = np.asarray(self.sum_xx, dtype=float)
        cov = (prod - np.outer(s, s) / self.n) / (self.n - 1)
        shifts = np.concatenate([[self.shift_y], np.asarray(self.shift_x or (0.0,) * p, dtype=float)])
        return shifts + s / self.n, cov


@dataclass(frozen=True)
class RegressionAdjustedResult(Result):
    """The regression-adjusted comparison of every treatment with the control.

    Attributes:
        control: the control arm's name.
        variants: the treatments, in the order of ``comparisons``.
        comparisons: one :class:`EffectResult` per treatment (``metric="cuped++"``, with
            ``variance_reduction``; ``theta`` is ``None``, the coefficients are below).
        covariates: the covariates' names, as given.
        theta: the fitted coefficient of each covariate (0 for one dropped or after a fallback).
        used: the covariates kept (those with variance).
        ridge: the penalty λ.
        r2: the pooled regression's in-sample R² (the share of the pooled variance of y explained).
        fallback: "" when adjusted, else why θ = 0 (the plain comparison).
    """

    control: str
    variants: tuple[str, ...]
    comparisons: tuple[EffectResult, ...]
    covariates: tuple[str, ...]
    theta: tuple[float, ...]
    used: tuple[str, ...]
    ridge: float
    r2: float
    fallback: str = ""

    def comparison(self, variant: str) -> EffectResult:
        """The comparison of one treatment."""
        try:
            return self.comparisons[self.variants.index(variant)]
        except ValueError:
            raise StatsInputError(f"no comparison for variant {variant!r}; treatments are {list(self.variants)}") from None


def _resolve_control(names: list[str], control: int | str) -> int:
    if isinstance(control, int) and not isinstance(control, bool):
        if not 0 <= control < len(names):
            raise StatsInputError(f"control index must be in [0, {len(names) - 1}], got {control}")
        return control
    if control not in names:
        raise StatsInputError(f"control {control!r} is not an arm; arms are {names}")
    return names.index(str(control))


def _fit(means: list[np.ndarray], covs: list[np.ndarray], ns: np.ndarray, ridge: float,
         min_users: float) -> tuple[np.ndarray, np.ndarray, float, str]:
    """(θ over all covariates, mask of those used, R², fallback reason) of the pooled ridge regression."""
    p = len(means[0]) - 1
    total = float(ns.sum())
    m = sum(n * mu for n, mu in zip(ns, means, strict=True)) / total
    scatter = sum((n - 1) * c + n * np.outer(mu - m, mu - m) for n, mu, c in zip(ns, means, covs, strict=True))
    sxx, sxy, syy = scatter[1:, 1:], scatter[1:, 0], float(scatter[0, 0])
    theta = np.zeros(p)
    var = np.diag(sxx) if p else np.zeros(0)
    used = (var > 0) & (var > 1e-12 * total * m[1:] ** 2)
    k = int(used.sum())
    if k == 0:
        return theta, used, 0.0, "no covariate varies" if p else "no covariates"
    if total < min_users * (k + 1):
        return theta, used, 0.0, (f"{total:g} users are too few for {k} covariate(s): need at least "
                                  f"{min_users:g} per coefficient ({min_users * (k + 1):g})")
    d = np.sqrt(var[used])
    corr = sxx[np.ix_(used, used)] / np.outer(d, d)
    theta[used] = np.linalg.pinv(corr + ridge * np.eye(k), rcond=1e-10, hermitian=True) @ (sxy[used] / d) / d
    rss = syy - 2 * theta @ sxy + theta @ sxx @ theta
    r2 = float(min(max(1.0 - rss / syy, 0.0), 1.0)) if syy > 0 else 0.0
    return theta, used, r2, ""


def regression_adjusted_test(
    arms: Sequence[CovariateSummary],
    *,
    control: int | str = 0,
    covariates: Sequence[str] = (),
    ridge: float = 0.01,
    relative: bool = False,
    distribution: Distribution = "t",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    min_users_per_covariate: float = 10.0,
) -> RegressionAdjustedResult:
    """Compare each treatment with the control, adjusted by one pooled ridge regression (module docstring).

    Args:
        arms: one :class:`CovariateSummary` per arm (2 or more, the same covariates in the same order).
        control: the control's index in ``arms`` or its ``name``.
        covariates: the covariates' names (default ``x1 … xp``), for the result.
        ridge: the penalty λ ≥ 0 on the standardised coefficients (0: OLS).
        relative: the lift (ỹ_T − ỹ_C)/|ȳ_C| instead of the difference.
        min_users_per_covariate: fall back to the plain test below this many users (all arms) per
            fitted coefficient (intercept included).

    Example (the effect is 0.5; the covariates explain most of y, so the interval is much narrower):
        >>> rng = np.random.default_rng(1)
        >>> def arm(name, lift):
        ...     x = rng.normal(size=(2000, 3))
        ...     return CovariateSummary.from_arrays(x @ [2.0, 1.0, 0.0] + rng.normal(size=2000) + lift, x, name=name)
        >>> r = regression_adjusted_test([arm("control", 0.0), arm("treatment", 0.5)], ridge=0.0)
        >>> c = r.comparison("treatment")
        >>> round(c.estimate, 2), round(c.variance_reduction, 2), r.fallback
        (0.5, 0.84, '')
    """
    alpha = check_alpha(alpha)
    alternative = check_alternative(alternative)
    check_choice("distribution", distribution, ("t", "normal"))
    if not (isinstance(ridge, int | float) and not isinstance(ridge, bool) and 0 <= ridge < math.inf):
        raise StatsInputError(f"ridge must be a finite number >= 0 (0: OLS), got {ridge!r}")
    if not (isinstance(min_users_per_covariate, int | float) and min_users_per_covariate >= 0):
        raise StatsInputError(f"min_users_per_covariate must be >= 0, got {min_users_per_covariate!r}")
    if len(arms) < 2:
        raise StatsInputError(f"regression adjustment compares arms: give at least 2, got {len(arms)}")
    p = arms[0].p
    if any(a.p != p for a in arms):
        raise StatsInputError(f"every arm needs the same covariates; got {[a.p for a in arms]} covariates per arm")
    names = [a.name or str(i) for i, a in enumerate(arms)]
    if len(set(names)) != len(names):
        raise StatsInputError(f"arm names must be distinct, got {names}")
    cov_names = tuple(str(c) for c in covariates) or tuple(f"x{j + 1}" for j in range(p))
    if len(cov_names) != p:
        raise StatsInputError(f"covariates names {len(cov_names)} covariates, the sums have {p}")
    ci = _resolve_control(names, control)
    moments = [a.moments() for a in arms]
    means, covs = [mu for mu, _ in moments], [c for _, c in moments]
    ns = np.array([a.n for a in arms], dtype=float)
    theta, used, r2, fallback = _fit(means, covs, ns, float(ridge), float(min_users_per_covariate))

    def adjusted_var(c: np.ndarray, a: float = 1.0) -> float:
        # Var(a·y − θᵀx) of one arm's users; >= 0 for valid sums (only rounding goes below)
        return max(a * a * c[0, 0] - 2 * a * theta @ c[1:, 0] + theta @ c[1:, 1:] @ theta, 0.0)

    plain = [max(float(c[0, 0]), 0.0) for c in covs]
    if not fallback and sum(adjusted_var(c) / n for c, n in zip(covs, ns, strict=True)) > \
            sum(v / n for v, n in zip(plain, ns, strict=True)):
        theta, r2, fallback = np.zeros(p), 0.0, "the adjustment would not reduce the variance of the arms' means"
    m_x = sum(n * mu[1:] for n, mu in zip(ns, means, strict=True)) / ns.sum()
    adj = [float(mu[0] - theta @ (mu[1:] - m_x)) for mu in means]
    va = [adjusted_var(c) for c in covs]
    my_c, n_c, cov_c = float(means[ci][0]), float(ns[ci]), covs[ci]
    out = []
    for i in range(len(arms)):
        if i == ci:
            continue
        my_t, n_t = float(means[i][0]), float(ns[i])
        rel_var = None
        if relative and my_c != 0:
            rel_var = (va[i] / n_t + adjusted_var(cov_c, my_t / my_c) / n_c) / my_c**2
        before = plain[ci] / n_c + plain[i] / n_t
        reduction = 1.0 - (va[ci] / n_c + va[i] / n_t) / before if before > 0 else 0.0
        out.append(_effect(
            metric="cuped++", mean_c=adj[ci], vm_c=va[ci] / n_c, n_c=n_c, mean_t=adj[i], vm_t=va[i] / n_t, n_t=n_t,
            df=welch_df(va[ci], n_c, va[i], n_t), relative=relative, relative_ci="delta", distribution=distribution,
            alpha=alpha, alternative=alternative, method="welch", control_mean=my_c, treatment_mean=my_t,
            rel_var=rel_var, rel_den=my_c, variance_reduction=float(reduction),
        ))
    return RegressionAdjustedResult(
        control=names[ci], variants=tuple(n for i, n in enumerate(names) if i != ci), comparisons=tuple(out),
        covariates=cov_names, theta=tuple(float(t) for t in theta),
        used=tuple(c for c, u in zip(cov_names, used, strict=True) if u), ridge=float(ridge), r2=r2,
        fallback=fallback,
    )
