"""Post-stratification: the effect estimated within strata of a pre-assignment attribute, then averaged
with the strata's shares of the pooled sample (gbstats' post-stratified effect moments).

Within stratum k (nₖ users of both arms, νₖ = nₖ/N of the pooled sample) the parameters are
αₖ = (μ_C, μ_T − μ_C) for a mean or proportion metric and αₖ = (M_C, M_T − M_C, D_C, D_T − D_C) (the
numerator's and denominator's per-user means) for a ratio metric, with their covariance Σₖ from the
arms' per-user (co)variances (ddof 1) over the arms' sizes. The post-stratified parameters and their
covariance, the weights ν̂ being multinomial,

    ᾱ = Σₖ νₖ αₖ,    Var(ᾱ) = Σₖ νₖ² Σₖ + (1/N) Σₖ νₖ (αₖ − ᾱ)(αₖ − ᾱ)ᵀ,

and the effect by the delta method: absolute ᾱ₁ (mean) or R_T − R_C with R_T = (ᾱ₀ + ᾱ₁)/(ᾱ₂ + ᾱ₃),
R_C = ᾱ₀/ᾱ₂ (ratio); relative (effect)/|control|. Strata in which an arm has fewer than 2 users or no
variance cannot estimate their αₖ and are merged into the largest stratum first (gbstats does the same);
with one stratum left the result is the unstratified test's. Welch t with the pooled arms' degrees of
freedom (gbstats).

With :class:`CupedSummary` arms (a pre-period covariate x) each stratum is adjusted by regression,
y ~ 1 + treated + x over its users: αₖ = (γ₀ + γ₂x̄, γ₁) with Σₖ from σ²(XᵀX)⁻¹ and the variance of x̄
(gbstats' regression version of its Algorithm 1); a stratum without pre-period variance in an arm is
taken unadjusted, and one stratum is plain CUPED. :class:`RatioCupedSummary` arms do the same for a
ratio metric: numerator and denominator each regressed on (1, treated, m⁻, d⁻) with a joint 2×2
residual covariance (gbstats' ``CreateStrataResultRegressionAdjustedRatio``).

References: Miratrix, Sekhon & Yu (2013), "Adjusting treatment effect estimates by post-stratification
in randomized experiments", JRSS-B 75(2); Xie & Aurisset (2016), "Improving the sensitivity of online
controlled experiments: case studies at Netflix", KDD; GrowthBook gbstats ``EffectMomentsPostStratification``
(``models/tests.py``), whose test cases tests/stats/test_poststrat.py reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from battleground.stats._base import (
    Alternative,
    CupedSummary,
    MeanSummary,
    RatioSummary,
    Result,
    StatsInputError,
    check_alpha,
    check_alternative,
    check_choice,
)
from battleground.stats._cuped_ratio import RatioCupedSummary, ratio_cuped_test
from battleground.stats._tests import (
    Distribution,
    EffectResult,
    cuped_test,
    cuped_theta,
    infer,
    welch_df,
)

__all__ = ["PostStratifiedResult", "Stratum", "post_stratified_test", "post_stratify_moments"]


@dataclass(frozen=True)
class Stratum(Result):
    """One stratum (one value of the declared attribute): the control's and the treatment's sums there.

    ``control``/``treatment`` are :class:`MeanSummary` (mean and proportion metrics),
    :class:`RatioSummary` (ratio metrics) or :class:`CupedSummary` (a mean metric with its pre-period
    covariate: CUPED within each stratum) or :class:`RatioCupedSummary` (a ratio metric with its
    pre-period numerator and denominator), both arms the same kind, every stratum the same kind.

    Example:
        >>> s = Stratum("US", MeanSummary(100, 1.0, 4.0), MeanSummary(110, 1.2, 4.0))
        >>> s.users
        210.0
    """

    label: str
    control: MeanSummary | RatioSummary | CupedSummary | RatioCupedSummary
    treatment: MeanSummary | RatioSummary | CupedSummary | RatioCupedSummary

    @property
    def users(self) -> float:
        return float(self.control.n + self.treatment.n)


@dataclass(frozen=True)
class PostStratifiedResult(EffectResult):
    """An :class:`EffectResult` (``metric`` "post_stratified_mean", "post_stratified_ratio" or
    "post_stratified_cuped") with the
    strata it used: ``strata`` their labels after merging (a merged stratum's label joins its parts with
    "+"), ``weights`` their shares ν of the pooled sample, and ``variance_reduction`` = 1 − Var(post-
    stratified effect)/Var(unstratified effect) on the same data."""

    strata: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()


# --------------------------------------------------------------------------- one arm of one stratum
@dataclass(frozen=True)
class _Arm:
    n: float
    mean: np.ndarray  # (p,): μ (mean) or (M̄, D̄) (ratio)
    cov: np.ndarray  # (p, p) per-user covariance, ddof 1

    def merge(self, other: _Arm) -> _Arm:
        n = self.n + other.n
        if self.n == 0 or other.n == 0:
            return self if other.n == 0 else other
        mean = (self.n * self.mean + other.n * other.mean) / n
        d = self.mean - other.mean
        ss = ((self.n - 1) * _nan0(self.cov) + (other.n - 1) * _nan0(other.cov)
              + self.n * other.n / n * np.outer(d, d))
        return _Arm(n, mean, ss / (n - 1) if n > 1 else np.full_like(ss, np.nan))

    @property
    def viable(self) -> bool:
        v = np.diag(self.cov)
        return bool(self.n >= 2 and np.all(np.isfinite(v)) and v[0] > 0)


def _nan0(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a), a, 0.0)


def _arm(s: Any, where: str) -> _Arm:
    if isinstance(s, MeanSummary):
        return _Arm(float(s.n), np.array([s.mean], dtype=float), np.array([[s.var]], dtype=float))
    if isinstance(s, RatioSummary):
        if s.n < 2:
            mm = s.shift_m + s.sum_m / s.n if s.n else math.nan
            md = s.shift_d + s.sum_d / s.n if s.n else math.nan
            return _Arm(float(s.n), np.array([mm, md]), np.full((2, 2), np.nan))
        mm, md, vm, vd, c = s.moments(where)
        return _Arm(float(s.n), np.array([mm, md]), np.array([[vm, c], [c, vd]]))
    raise StatsInputError(f"{where} must be a MeanSummary or a RatioSummary, got {type(s).__name__}")


# --------------------------------------------------------------------------- the combination, vectorised
def post_stratify_moments(
    n_c: Any, mean_c: Any, cov_c: Any, n_t: Any, mean_t: Any, cov_t: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(ᾱ, Var(ᾱ)) from per-stratum arm moments, over any leading batch axes (module docstring).

    Args:
        n_c, n_t: users per stratum, shape (..., K).
        mean_c, mean_t: per-user means, shape (..., K, p) (p = 1: mean metric, p = 2: (M, D) of a ratio).
        cov_c, cov_t: per-user covariances (ddof 1), shape (..., K, p, p).

    Returns:
        ᾱ of shape (..., 2p) and its covariance (..., 2p, 2p), parameters ordered (control, treatment −
        control) per component: (μ_C, Δμ) or (M_C, ΔM, D_C, ΔD).
    """
    n_c, n_t = np.asarray(n_c, float), np.asarray(n_t, float)
    mean_c, mean_t = np.asarray(mean_c, float), np.asarray(mean_t, float)
    cov_c, cov_t = np.asarray(cov_c, float), np.asarray(cov_t, float)
    p = mean_c.shape[-1]
    n = n_c + n_t
    # αₖ interleaves (control, difference) per component; Σₖ of (control, difference) for component pair
    # (i, j) is [[Vc, −Vc], [−Vc, Vc + Vt]] with V the covariances of the arms' means
    alpha = np.empty((*mean_c.shape[:-1], 2 * p))
    alpha[..., 0::2], alpha[..., 1::2] = mean_c, mean_t - mean_c
    vc = cov_c / n_c[..., None, None]
    vt = cov_t / n_t[..., None, None]
    sig = np.empty((*cov_c.shape[:-2], 2 * p, 2 * p))
    sig[..., 0::2, 0::2] = vc
    sig[..., 0::2, 1::2] = -vc
    sig[..., 1::2, 0::2] = -vc
    sig[..., 1::2, 1::2] = vc + vt
    return _combine(n, alpha, sig)


def _combine(n: np.ndarray, alpha: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ᾱ = Σ νₖαₖ and Var(ᾱ) = Σ νₖ²Σₖ + Σ νₖ(αₖ − ᾱ)(αₖ − ᾱ)ᵀ/N from the strata's users n (..., K),
    parameters α (..., K, q) and their covariances Σ (..., K, q, q)."""
    nu = n / n.sum(axis=-1, keepdims=True)
    bar = np.einsum("...k,...ki->...i", nu, alpha)
    dev = alpha - bar[..., None, :]
    within = np.einsum("...k,...kij->...ij", nu * nu, sig)
    between = np.einsum("...k,...ki,...kj->...ij", nu, dev, dev) / n.sum(axis=-1)[..., None, None]
    return bar, within + between


def _effect_grad(bar: np.ndarray, relative: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(effect, its gradient in ᾱ, control value, treatment value), batched over leading axes."""
    if bar.shape[-1] == 2:  # mean: (μ_C, Δ)
        c, d = bar[..., 0], bar[..., 1]
        if not relative:
            g = np.zeros_like(bar)
            g[..., 1] = 1.0
            return d, g, c, c + d
        a = np.abs(c)
        g = np.stack([-d * np.sign(c) / (c * c), 1.0 / a], axis=-1)
        return d / a, g, c, c + d
    m0, dm, d0, dd = (bar[..., i] for i in range(4))
    dt = d0 + dd
    rt, rc = (m0 + dm) / dt, m0 / d0
    grad_rt = np.stack([1 / dt, 1 / dt, -rt / dt, -rt / dt], axis=-1)
    grad_rc = np.stack([1 / d0, np.zeros_like(d0), -rc / d0, np.zeros_like(d0)], axis=-1)
    if not relative:
        return rt - rc, grad_rt - grad_rc, rc, rt
    a = np.abs(rc)
    g = grad_rt / a[..., None] - (rt * np.sign(rc) / (rc * rc))[..., None] * grad_rc
    return (rt - rc) / a, g, rc, rt


def _effect_se(bar: np.ndarray, cov: np.ndarray, relative: bool, what: str) -> tuple[float, float, float, float]:
    """(effect, its delta-method se, control value, treatment value) of the combined means ``bar``;
    refuses a relative lift over a zero control and an effect or se that is not finite and positive."""
    if relative and bar[0] == 0:
        raise StatsInputError("control mean is 0, so the relative lift is undefined; use relative=False")
    est, g, cm, tm = _effect_grad(bar, relative)
    se = math.sqrt(max(float(g @ cov @ g), 0.0))
    if not (math.isfinite(float(est)) and math.isfinite(se) and se > 0):
        fix = "use relative=False (the absolute difference)" if relative and what == "post-stratified" else "check the inputs"
        raise StatsInputError(
            f"the {what} {'relative lift' if relative else 'difference'} or its standard error is not finite "
            f"and positive (estimate {float(est)!r}, se {se!r}); {fix}"
        )
    return float(est), se, float(cm), float(tm)


# --------------------------------------------------------------------------- the public test
def post_stratified_test(
    strata: Sequence[Stratum],
    *,
    relative: bool = True,
    distribution: Distribution = "t",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> PostStratifiedResult:
    """The post-stratified treatment effect of a mean, proportion or ratio metric (module docstring).

    Args:
        strata: one :class:`Stratum` per value of the attribute (users without a value are a stratum of
            their own, labelled as the caller likes).
        relative: the lift over the control (default), else the absolute difference.

    Raises:
        StatsInputError: no strata, mixed kinds, an arm with fewer than 2 users or no variance overall,
            a zero control (relative) or denominator.

    Example (the first two of gbstats' five strata in ``test_post_strat_count_effect_moments``):
        >>> def arm(n, s, s2):
        ...     return MeanSummary.from_sums(n, s, s2)
        >>> cells = [Stratum("a", arm(21, 330.0696, 5377.8113), arm(42, 708.1220, 12249.2555)),
        ...          Stratum("b", arm(65, 1391.9663, 30546.6340), arm(75, 1807.4703, 45000.2877))]
        >>> r = post_stratified_test(cells, relative=False)
        >>> round(r.estimate, 3), r.strata
        (2.206, ('b', 'a'))
    """
    alpha = check_alpha(alpha)
    alternative = check_alternative(alternative)
    check_choice("distribution", distribution, ("t", "normal"))
    strata = list(strata)
    if not strata:
        raise StatsInputError("post_stratified_test needs at least one stratum, got none")
    kinds = {type(x) for s in strata for x in (s.control, s.treatment)}
    if len(kinds) != 1 or not kinds <= {MeanSummary, RatioSummary, CupedSummary, RatioCupedSummary}:
        raise StatsInputError(
            "every stratum's control and treatment must be the same kind (all MeanSummary, RatioSummary, "
            "CupedSummary or RatioCupedSummary), "
            f"got {sorted(k.__name__ for k in kinds)}"
        )
    if kinds == {CupedSummary}:
        return _post_stratified_cuped(strata, relative=relative, distribution=distribution, alpha=alpha,
                                      alternative=alternative)
    if kinds == {RatioCupedSummary}:
        return _post_stratified_ratio_cuped(strata, relative=relative, distribution=distribution, alpha=alpha,
                                            alternative=alternative)
    ratio = kinds == {RatioSummary}
    cells = [(s.label, _arm(s.control, f"stratum {s.label!r} control"), _arm(s.treatment, f"stratum {s.label!r} treatment"))
             for s in strata]
    cells = [c for c in cells if c[1].n + c[2].n > 0]
    if not cells:
        raise StatsInputError("every stratum is empty (0 users in both arms); wait for data")
    pooled_c, pooled_t = cells[0][1], cells[0][2]
    for _, c, t in cells[1:]:
        pooled_c, pooled_t = pooled_c.merge(c), pooled_t.merge(t)
    for name, arm in (("control", pooled_c), ("treatment", pooled_t)):
        if not arm.n >= 2:
            raise StatsInputError(f"{name} has n={arm.n!r} users over all strata; a test needs >= 2 per arm")
    if not (pooled_c.viable or pooled_t.viable):
        raise StatsInputError(
            "control and treatment both have zero variance; no test is possible; check that the metric is recorded"
        )
    merged = _merge_cells(cells)
    labels = tuple(lab for lab, _, _ in merged)
    bar, cov = post_stratify_moments(
        [c.n for _, c, _ in merged], [c.mean for _, c, _ in merged], [_nan0(c.cov) for _, c, _ in merged],
        [t.n for _, _, t in merged], [t.mean for _, _, t in merged], [_nan0(t.cov) for _, _, t in merged],
    )
    plain_bar, plain_cov = post_stratify_moments([pooled_c.n], [pooled_c.mean], [_nan0(pooled_c.cov)],
                                                 [pooled_t.n], [pooled_t.mean], [_nan0(pooled_t.cov)])
    if ratio and not (bar[2] > 0 and bar[2] + bar[3] > 0):
        raise StatsInputError(
            f"the ratio's mean denominator is {float(bar[2])!r} (control) and {float(bar[2] + bar[3])!r} "
            "(treatment); a ratio needs denominator events (> 0) in each arm"
        )
    est, se, cm, tm = _effect_se(bar, cov, relative, "post-stratified")
    _, g0, _, _ = _effect_grad(plain_bar, relative)
    plain_var = float(g0 @ plain_cov @ g0)
    if ratio:  # Welch df on the pooled arms' per-user variances of M − R·D (the delta method's unit)
        vc, vt = _ratio_unit_var(pooled_c), _ratio_unit_var(pooled_t)
    else:
        vc, vt = float(_nan0(pooled_c.cov)[0, 0]), float(_nan0(pooled_t.cov)[0, 0])
    df = math.inf if distribution == "normal" else welch_df(vc, pooled_c.n, vt, pooled_t.n)
    stat, p, lo, hi = infer(float(est), se, df, alpha, alternative)
    n_tot = sum(c.n + t.n for _, c, t in merged)
    return PostStratifiedResult(
        metric="post_stratified_ratio" if ratio else "post_stratified_mean",
        method="z" if math.isinf(df) else "welch", relative=relative,
        control_mean=float(cm), treatment_mean=float(tm), n_control=float(pooled_c.n),
        n_treatment=float(pooled_t.n), estimate=float(est), se=se, statistic=float(stat), df=float(df),
        p_value=float(p), ci_lower=float(lo), ci_upper=float(hi), alpha=alpha, alternative=alternative,
        variance_reduction=float(1.0 - se**2 / plain_var) if plain_var > 0 else 0.0,
        strata=labels, weights=tuple(float((c.n + t.n) / n_tot) for _, c, t in merged),
    )


def _ratio_unit_var(arm: _Arm) -> float:
    m, d = arm.mean
    r = m / d
    c = _nan0(arm.cov)
    return float(c[0, 0] - 2 * r * c[0, 1] + r * r * c[1, 1]) / (d * d)


def _merge_cells(cells: list[tuple[str, _Arm, _Arm]]) -> list[tuple[str, _Arm, _Arm]]:
    """Largest stratum first; a stratum where an arm cannot estimate its mean's variance (under 2 users,
    no variance) joins the largest one (gbstats' ``combine_cells_for_analysis``). Ties in size keep the
    label order, so the result does not depend on the order the strata came in."""
    order = sorted(cells, key=lambda c: (-(c[1].n + c[2].n), c[0]))
    out = [order[0]]
    for cell in order[1:]:
        if cell[1].viable and cell[2].viable:
            out.append(cell)
        else:
            lab, c, t = out[0]
            out[0] = (f"{lab}+{cell[0]}", c.merge(cell[1]), t.merge(cell[2]))
    if not (out[0][1].viable and out[0][2].viable) and len(out) > 1:
        # the largest stratum itself cannot stand alone: fold it into the next one and look again
        lab, c, t = out.pop(0)
        nlab, nc, nt = out[0]
        out[0] = (f"{nlab}+{lab}", nc.merge(c), nt.merge(t))
        return _merge_cells(out)
    return out


# --------------------------------------------------------------------------- with CUPED in each stratum
def _reshift(s: CupedSummary, ky: float, kx: float) -> CupedSummary:
    """The same sums around the shifts (ky, kx)."""
    dy, dx, n = s.shift_y - ky, s.shift_x - kx, s.n
    return CupedSummary(
        n=n, sum_y=s.sum_y + n * dy, sum_y2=s.sum_y2 + 2 * dy * s.sum_y + n * dy * dy,
        sum_x=s.sum_x + n * dx, sum_x2=s.sum_x2 + 2 * dx * s.sum_x + n * dx * dx,
        sum_xy=s.sum_xy + dx * s.sum_y + dy * s.sum_x + n * dx * dy, shift_y=ky, shift_x=kx,
    )


def _add(a: CupedSummary, b: CupedSummary) -> CupedSummary:
    b = _reshift(b, a.shift_y, a.shift_x)
    return CupedSummary(a.n + b.n, a.sum_y + b.sum_y, a.sum_y2 + b.sum_y2, a.sum_x + b.sum_x,
                        a.sum_x2 + b.sum_x2, a.sum_xy + b.sum_xy, a.shift_y, a.shift_x)


def _var(n: float, s: float, s2: float) -> float:
    return (s2 - s * s / n) / (n - 1) if n > 1 else math.nan


def _cuped_viable(c: CupedSummary, t: CupedSummary) -> bool:
    return all(a.n >= 2 and _var(a.n, a.sum_y, a.sum_y2) > 0 for a in (c, t))


def _as_mean(s: CupedSummary) -> MeanSummary:
    return MeanSummary(s.n, s.shift_y + s.sum_y / s.n if s.n else math.nan, max(_var(s.n, s.sum_y, s.sum_y2), 0.0)
                       if s.n > 1 else math.nan)


def _cuped_cell(c: CupedSummary, t: CupedSummary) -> tuple[np.ndarray, np.ndarray]:
    """(α, Σ) of one stratum by the regression y ~ 1 + treated + x over its users (gbstats' regression
    version of its Algorithm 1): α = (γ₀ + γ₂x̄, γ₁), Σ from σ²(XᵀX)⁻¹ and the variance of x̄. Without
    pre-period variance in an arm the stratum is the unadjusted one."""
    if not all(a.n >= 2 and _var(a.n, a.sum_x, a.sum_x2) > 0 for a in (c, t)):
        ac, at = _arm(_as_mean(c), ""), _arm(_as_mean(t), "")
        vc, vt = ac.cov[0, 0] / ac.n, at.cov[0, 0] / at.n
        return (np.array([ac.mean[0], at.mean[0] - ac.mean[0]]),
                np.array([[vc, -vc], [-vc, vc + vt]]))
    t = _reshift(t, c.shift_y, c.shift_x)
    n = c.n + t.n
    sx, sxx = c.sum_x + t.sum_x, c.sum_x2 + t.sum_x2
    xtx = np.array([[n, t.n, sx], [t.n, t.n, t.sum_x], [sx, t.sum_x, sxx]])
    xty = np.array([c.sum_y + t.sum_y, t.sum_y, c.sum_xy + t.sum_xy])
    try:
        inv = np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        raise StatsInputError("a stratum's covariate is collinear with the arm (XᵀX is singular); merge it") from None
    g = inv @ xty
    s2 = max((c.sum_y2 + t.sum_y2 - float(xty @ inv @ xty)) / (n - 3), 0.0) if n > 3 else math.nan
    cov_g = s2 * inv
    xbar, vx = sx / n, _var(n, sx, sxx)
    m = np.array([[1.0, 0.0, xbar], [0.0, 1.0, 0.0]])
    alpha = m @ g
    alpha[0] += c.shift_y
    sig = m @ cov_g @ m.T
    sig[0, 0] += (cov_g[2, 2] + g[2] ** 2) * vx / n  # x̄ is estimated too
    return alpha, sig


def _post_stratified_cuped(
    strata: list[Stratum], *, relative: bool, distribution: Distribution, alpha: float, alternative: Alternative,
) -> PostStratifiedResult:
    """Post-stratification with CUPED within each stratum (module docstring; gbstats' regression-
    adjusted post-stratification)."""
    cells = [(s.label, s.control, s.treatment) for s in strata if s.control.n + s.treatment.n > 0]
    if not cells:
        raise StatsInputError("every stratum is empty (0 users in both arms); wait for data")
    pc, pt = cells[0][1], cells[0][2]
    for _, c, t in cells[1:]:
        pc, pt = _add(pc, c), _add(pt, t)  # type: ignore[arg-type]
    assert isinstance(pc, CupedSummary) and isinstance(pt, CupedSummary)
    for name, arm in (("control", pc), ("treatment", pt)):
        if not arm.n >= 2:
            raise StatsInputError(f"{name} has n={arm.n!r} users over all strata; a test needs >= 2 per arm")
    if relative and pc.shift_y + pc.sum_y / pc.n == 0:
        raise StatsInputError("control mean is 0, so the relative lift is undefined; use relative=False")
    if not all(_var(a.n, a.sum_x, a.sum_x2) > 0 for a in (pc, pt)):
        # no pre-period variance overall: the unadjusted post-stratification (gbstats does the same)
        plain = [Stratum(lab, _as_mean(c), _as_mean(t)) for lab, c, t in cells]  # type: ignore[arg-type]
        return post_stratified_test(plain, relative=relative, distribution=distribution, alpha=alpha,
                                    alternative=alternative)
    order = sorted(cells, key=lambda c: (-(c[1].n + c[2].n), c[0]))
    merged: list[tuple[str, CupedSummary, CupedSummary]] = [order[0]]  # type: ignore[list-item]
    for lab, c, t in order[1:]:
        if _cuped_viable(c, t):  # type: ignore[arg-type]
            merged.append((lab, c, t))  # type: ignore[arg-type]
        else:
            l0, c0, t0 = merged[0]
            merged[0] = (f"{l0}+{lab}", _add(c0, c), _add(t0, t))  # type: ignore[arg-type]
    plain_var = _plain_var(pc, pt, relative)
    weights = tuple(float((c.n + t.n) / (pc.n + pt.n)) for _, c, t in merged)
    labels = tuple(lab for lab, _, _ in merged)
    if len(merged) == 1:  # one stratum: CUPED itself (gbstats)
        r = cuped_test(pc, pt, relative=relative, distribution=distribution, alpha=alpha, alternative=alternative)
        fields = {k: getattr(r, k) for k in EffectResult.__dataclass_fields__}
        fields.update(metric="post_stratified_cuped",
                      variance_reduction=float(1 - r.se**2 / plain_var) if plain_var > 0 else 0.0)
        return PostStratifiedResult(**fields, strata=labels, weights=weights)
    parts = [_cuped_cell(c, t) for _, c, t in merged]
    n = np.array([c.n + t.n for _, c, t in merged], dtype=float)
    bar, cov = _combine(n, np.array([a for a, _ in parts]), np.array([v for _, v in parts]))
    est, se, cm, tm = _effect_se(bar, cov, relative, "post-stratified CUPED")
    theta = cuped_theta(pc, pt)
    va = [max(my_v + theta**2 * vx - 2 * theta * cxy, 0.0)
          for _, _, my_v, vx, cxy in (pc.moments(), pt.moments())]
    df = math.inf if distribution == "normal" else welch_df(va[0], pc.n, va[1], pt.n)
    stat, p, lo, hi = infer(float(est), se, df, alpha, alternative)
    return PostStratifiedResult(
        metric="post_stratified_cuped", method="z" if math.isinf(df) else "welch", relative=relative,
        control_mean=float(cm), treatment_mean=float(tm), n_control=float(pc.n), n_treatment=float(pt.n),
        estimate=float(est), se=se, statistic=float(stat), df=float(df), p_value=float(p), ci_lower=float(lo),
        ci_upper=float(hi), alpha=alpha, alternative=alternative, theta=float(theta),
        variance_reduction=float(1.0 - se**2 / plain_var) if plain_var > 0 else 0.0, strata=labels, weights=weights,
    )


def _plain_var(c: CupedSummary, t: CupedSummary, relative: bool) -> float:
    """The unstratified, unadjusted effect's variance on the same data (for ``variance_reduction``)."""
    ac, at = _arm(_as_mean(c), ""), _arm(_as_mean(t), "")
    bar, cov = post_stratify_moments([ac.n], [ac.mean], [_nan0(ac.cov)], [at.n], [at.mean], [_nan0(at.cov)])
    _, g, _, _ = _effect_grad(bar, relative)
    return float(g @ cov @ g)


# --------------------------------------------------------------------------- ratio metrics with CUPED
def _r_reshift(s: RatioCupedSummary, k: np.ndarray) -> RatioCupedSummary:
    """The same sums around the shifts ``k`` (Σ(x − k) and Σ(x − k)(x − k)ᵀ)."""
    d = np.asarray(s.shifts, dtype=float) - k
    sums = np.asarray(s.sums, dtype=float)
    p = np.asarray(s.products, dtype=float) + np.outer(d, sums) + np.outer(sums, d) + s.n * np.outer(d, d)
    return RatioCupedSummary(s.n, tuple(float(v) for v in sums + s.n * d),  # type: ignore[arg-type]
                             tuple(tuple(float(v) for v in row) for row in p), tuple(float(v) for v in k))  # type: ignore[arg-type]


def _r_add(a: RatioCupedSummary, b: RatioCupedSummary) -> RatioCupedSummary:
    b = _r_reshift(b, np.asarray(a.shifts, dtype=float))
    return RatioCupedSummary(a.n + b.n, tuple(x + y for x, y in zip(a.sums, b.sums, strict=True)),  # type: ignore[arg-type]
                             tuple(tuple(x + y for x, y in zip(r, q, strict=True)) for r, q in zip(a.products, b.products, strict=True)),
                             a.shifts)


def _r_var(s: RatioCupedSummary, i: int) -> float:
    return _var(s.n, s.sums[i], s.products[i][i])


def _r_plain(s: RatioCupedSummary) -> RatioSummary:
    return RatioSummary(n=s.n, sum_m=s.sums[0], sum_d=s.sums[1], sum_m2=s.products[0][0], sum_d2=s.products[1][1],
                        sum_md=s.products[0][1], shift_m=s.shifts[0], shift_d=s.shifts[1])


def _ratio_cuped_cell(c: RatioCupedSummary, t: RatioCupedSummary) -> tuple[np.ndarray, np.ndarray]:
    """(α, Σ) of one stratum of a ratio metric: m and d each regressed on (1, treated, m⁻, d⁻), α =
    (M_C, ΔM, D_C, ΔD) at the pooled pre-period means, Σ from the joint residual covariance, the
    coefficients' covariance and the pre-period means' variance. Unadjusted without pre-period variance."""
    if not all(a.n >= 2 and _r_var(a, 2) > 0 and _r_var(a, 3) > 0 for a in (c, t)):
        ac, at = _arm(_r_plain(c), ""), _arm(_r_plain(t), "")
        return post_stratify_moments([ac.n], [ac.mean], [_nan0(ac.cov)], [at.n], [at.mean], [_nan0(at.cov)])
    t = _r_reshift(t, np.asarray(c.shifts, dtype=float))
    n = c.n + t.n
    s = np.asarray(c.sums) + np.asarray(t.sums)
    p = np.asarray(c.products) + np.asarray(t.products)
    sb = np.asarray(t.sums)
    xtx = np.array([[n, t.n, s[2], s[3]], [t.n, t.n, sb[2], sb[3]],
                    [s[2], sb[2], p[2, 2], p[2, 3]], [s[3], sb[3], p[3, 2], p[3, 3]]])
    yn = np.array([s[0], sb[0], p[0, 2], p[0, 3]])
    yd = np.array([s[1], sb[1], p[1, 2], p[1, 3]])
    try:
        inv = np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        raise StatsInputError("a stratum's pre-period ratio terms are collinear (XᵀX is singular); merge it") from None
    gn, gd = inv @ yn, inv @ yd
    dof = n - 6
    s11 = (p[0, 0] - yn @ inv @ yn) / dof
    s22 = (p[1, 1] - yd @ inv @ yd) / dof
    s12 = (p[0, 1] - yn @ gd - yd @ gn + gn @ xtx @ gd) / dof
    cov_g = np.kron(np.array([[s11, s12], [s12, s22]]), inv)
    g = np.concatenate([gn, gd])
    mp, dp = s[2] / n, s[3] / n
    cov_pre = (p[2:, 2:] - np.outer(s[2:], s[2:]) / n) / (n - 1)
    m = np.zeros((4, 8))
    m[0, [0, 2, 3]] = [1.0, mp, dp]
    m[1, 1] = 1.0
    m[2, [4, 6, 7]] = [1.0, mp, dp]
    m[3, 5] = 1.0
    alpha = m @ g
    alpha[0] += c.shifts[0]
    alpha[2] += c.shifts[1]
    sig = m @ cov_g @ m.T
    slopes = {0: [2, 3], 2: [6, 7]}  # the pre-period means enter the control rows: their variance too
    for i in (0, 2):
        for j in (0, 2):
            block = cov_g[np.ix_(slopes[i], slopes[j])]
            sig[i, j] += (np.trace(block @ cov_pre) + g[slopes[i]] @ cov_pre @ g[slopes[j]]) / n
    return alpha, sig


def _post_stratified_ratio_cuped(
    strata: list[Stratum], *, relative: bool, distribution: Distribution, alpha: float, alternative: Alternative,
) -> PostStratifiedResult:
    """Post-stratification of a ratio metric with CUPED within each stratum (gbstats' regression-
    adjusted ratio post-stratification)."""
    cells: list[tuple[str, RatioCupedSummary, RatioCupedSummary]] = [
        (s.label, s.control, s.treatment) for s in strata if s.control.n + s.treatment.n > 0]  # type: ignore[misc]
    if not cells:
        raise StatsInputError("every stratum is empty (0 users in both arms); wait for data")
    pc, pt = cells[0][1], cells[0][2]
    for _, c, t in cells[1:]:
        pc, pt = _r_add(pc, c), _r_add(pt, t)
    for name, arm in (("control", pc), ("treatment", pt)):
        if not arm.n >= 2:
            raise StatsInputError(f"{name} has n={arm.n!r} users over all strata; a test needs >= 2 per arm")
    if not all(_r_var(a, 2) > 0 and _r_var(a, 3) > 0 for a in (pc, pt)):
        # no pre-period variance overall: the unadjusted post-stratification (gbstats does the same)
        plain = [Stratum(lab, _r_plain(c), _r_plain(t)) for lab, c, t in cells]
        return post_stratified_test(plain, relative=relative, distribution=distribution, alpha=alpha,
                                    alternative=alternative)
    order = sorted(cells, key=lambda c: (-(c[1].n + c[2].n), c[0]))
    merged = [order[0]]
    for lab, c, t in order[1:]:
        if all(a.n >= 2 and _r_var(a, 0) > 0 for a in (c, t)) and c.n + t.n > 6:
            merged.append((lab, c, t))
        else:
            l0, c0, t0 = merged[0]
            merged[0] = (f"{l0}+{lab}", _r_add(c0, c), _r_add(t0, t))
    plain_c, plain_t = _arm(_r_plain(pc), ""), _arm(_r_plain(pt), "")
    pb, pcov = post_stratify_moments([plain_c.n], [plain_c.mean], [_nan0(plain_c.cov)], [plain_t.n],
                                     [plain_t.mean], [_nan0(plain_t.cov)])
    _, g0, _, _ = _effect_grad(pb, relative)
    plain_var = float(g0 @ pcov @ g0)
    weights = tuple(float((c.n + t.n) / (pc.n + pt.n)) for _, c, t in merged)
    labels = tuple(lab for lab, _, _ in merged)
    whole = ratio_cuped_test(pc, pt, relative=relative, distribution=distribution, alpha=alpha, alternative=alternative)
    if len(merged) == 1:  # one stratum: ratio CUPED itself (gbstats)
        fields = {k: getattr(whole, k) for k in EffectResult.__dataclass_fields__}
        fields.update(metric="post_stratified_ratio_cuped",
                      variance_reduction=float(1 - whole.se**2 / plain_var) if plain_var > 0 else 0.0)
        return PostStratifiedResult(**fields, strata=labels, weights=weights)
    parts = [_ratio_cuped_cell(c, t) for _, c, t in merged]
    n = np.array([c.n + t.n for _, c, t in merged], dtype=float)
    bar, cov = _combine(n, np.array([a.reshape(-1) for a, _ in parts]),
                        np.array([v.reshape(4, 4) for _, v in parts]))
    if not (bar[2] > 0 and bar[2] + bar[3] > 0):
        raise StatsInputError(
            f"the ratio's mean denominator is {float(bar[2])!r} (control) and {float(bar[2] + bar[3])!r} "
            "(treatment); a ratio needs denominator events (> 0) in each arm"
        )
    est, se, cm, tm = _effect_se(bar, cov, relative, "post-stratified ratio CUPED")
    df = whole.df  # Welch on the pooled arms' CUPED-adjusted per-user variances (gbstats)
    stat, pv, lo, hi = infer(float(est), se, df, alpha, alternative)
    return PostStratifiedResult(
        metric="post_stratified_ratio_cuped", method=whole.method, relative=relative, control_mean=float(cm),
        treatment_mean=float(tm), n_control=float(pc.n), n_treatment=float(pt.n), estimate=float(est), se=se,
        statistic=float(stat), df=float(df), p_value=float(pv), ci_lower=float(lo), ci_upper=float(hi), alpha=alpha,
        alternative=alternative, theta=whole.theta,
        variance_reduction=float(1.0 - se**2 / plain_var) if plain_var > 0 else 0.0, strata=labels, weights=weights,
    )
