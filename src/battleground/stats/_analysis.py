"""Whole-experiment analysis from sums, vectorised over metrics × variants.

One call turns the per-variant :class:`~battleground.storage.sums.MetricSums` of many metrics into one
row per (metric, variant): value, absolute and relative lift vs control with CIs and p-values
(fixed-horizon Welch or always-valid mSPRT), Holm-corrected p-values across metrics × variants, and
guardrail breaches. The arithmetic is done on numpy arrays, so 100 experiments × 10 metrics take
milliseconds; the formulas are those of :mod:`._tests` and :mod:`._sequential` (the tests check both
paths agree).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from battleground.stats._base import (
    RatioSummary,
    Result,
    StatsInputError,
    _mean_var,
    _shift,
    check_alpha,
    check_choice,
)
from battleground.stats._corrections import adjust_pvalues
from battleground.stats._quantile import quantile_arm
from battleground.stats._sequential import _msprt_arrays
from battleground.stats._tests import infer

__all__ = ["MetricSpec", "VariantMetricRow", "analyze_metrics"]

KINDS = ("proportion", "mean", "ratio", "quantile")
SIGNIFICANT_BY = ("p_value", "p_value_adjusted")


@dataclass(frozen=True)
class MetricSpec(Result):
    """What a metric is, for analysis: its name, kind, good direction and role.

    Attributes:
        name: metric name (the key into the sums mapping).
        kind: "proportion" (conversion rate), "mean" (per-user value), "ratio" (ΣM/ΣD per user,
            e.g. CTR = clicks / impressions) or "quantile" (the ν-quantile of the per-user value; its
            sums are :class:`~battleground.storage.sums.QuantileSums`, see :mod:`._quantile`).
        higher_is_better: direction in which the metric should move.
        guardrail: a guardrail must not be significantly harmed.
        primary: the metric that decides the experiment (the first one if none is marked).
        capping: how the per-user values were winsorised, in words ("" when they were not), for views.
        quantile: a quantile metric's level (e.g. 0.9 for p90), ``None`` for other kinds.
    """

    name: str
    kind: str = "mean"
    higher_is_better: bool = True
    guardrail: bool = False
    primary: bool = False
    capping: str = ""
    quantile: float | None = None


@dataclass(frozen=True)
class VariantMetricRow(Result):
    """One (metric, variant) line of an experiment's results (control rows carry no lift).

    ``significant`` is ``getattr(row, row.significant_by) < alpha``: ``significant_by`` names the
    p-value it is based on, ``"p_value"`` (raw) or ``"p_value_adjusted"`` (multiplicity-corrected),
    so a page can say which one it shows beside the flag.
    """

    metric: str
    kind: str
    variant: str
    is_control: bool
    users: int
    events: int
    value: float
    abs_lift: float
    abs_ci_lower: float
    abs_ci_upper: float
    rel_lift: float
    rel_ci_lower: float
    rel_ci_upper: float
    p_value: float
    p_value_adjusted: float
    method: str
    significant: bool
    guardrail: bool
    guardrail_breach: bool
    primary: bool
    higher_is_better: bool
    significant_by: str = "p_value"


def _arm_stats(s: Any, kind: str, metric: str) -> tuple[float, float, int, int]:
    """(value, per-user variance of the value's estimator × n, n, events) for one arm.

    The sums may be taken around the ``MetricSums`` shifts (``shift_x``, ``shift_y``); impossible sums
    raise a :class:`StatsInputError` naming the metric, the variant and the field.
    """
    n = float(s.users)
    if n < 2:
        return math.nan, math.nan, int(s.users), int(s.events)
    where = f"metric {metric!r}, variant {s.variant!r}"
    if kind == "quantile":
        if not hasattr(s, "nu"):  # a look without the quantile's order statistics (e.g. a daily series)
            return math.nan, math.nan, int(n), int(s.events)
        q, var = quantile_arm(s, where)
        return q, var * n, int(n), int(s.events)  # "per-user variance × n" = n·Var(q̂)
    if kind == "ratio":
        rs = RatioSummary(
            n=n, sum_m=s.sum_x, sum_d=s.sum_y, sum_m2=s.sum_x2, sum_d2=s.sum_y2, sum_md=s.sum_xy,
            shift_m=_shift(s, "shift_x"), shift_d=_shift(s, "shift_y"),
        )
        mm, md, vm, vd, cov = rs.moments(where, ("sum_x2", "sum_y2", "sum_xy"))
        if not md > 0:
            return math.nan, math.nan, int(n), int(s.events)
        r = mm / md
        # Var(M − R·D) >= 0 for valid sums (checked above): only rounding goes below.
        return r, max((vm - 2 * r * cov + r * r * vd) / (md * md), 0.0), int(n), int(s.events)
    shift = _shift(s, "shift_x")
    if kind == "proportion" and shift == 0.0 and 0.0 <= s.sum_x <= n and s.sum_x2 == s.sum_x:
        mean = s.sum_x / n
        return mean, mean * (1.0 - mean), int(n), int(s.events)
    mean, var = _mean_var(n, s.sum_x, s.sum_x2, shift, ("sum_x", "sum_x2"), where)
    return mean, var, int(n), int(s.events)


def analyze_metrics(
    metrics: Sequence[MetricSpec],
    sums: Mapping[str, Sequence[Any]],
    *,
    control: str,
    alpha: float = 0.05,
    sequential: bool = False,
    mixing_sd: float = 0.1,
    previous_p: Mapping[tuple[str, str], float] | None = None,
    correction: str = "holm",
    previous_ci: Mapping[tuple[str, str], tuple[float, float]] | None = None,
    significant_by: str = "p_value",
    adjusted: Mapping[tuple[str, str], tuple[Any, Any]] | None = None,
) -> list[VariantMetricRow]:
    """Analyse every metric of one experiment from its per-variant sums.

    Args:
        metrics: the metric specs (``name`` keys into ``sums``).
        sums: ``{metric name: [MetricSums per variant]}``.
        control: the control variant's name.
        sequential: use mSPRT (always-valid p-values and CIs on the relative lift) instead of Welch.
            Where the relative lift is undefined (control mean 0) the test runs on the absolute
            difference with τ = ``mixing_sd`` × |pooled mean of both arms|; when that is 0 too the row
            has no p-value. An undefined estimate is never significant.
        mixing_sd: mSPRT mixing standard deviation τ on the relative scale (τ² = mixing_sd²).
        previous_p: running always-valid p-values from earlier looks, ``{(metric, variant): p}``; the
            result's p is the minimum (monitoring passes the daily series' minimum).
        previous_ci: running always-valid intervals of the relative lift from earlier looks,
            ``{(metric, variant): (lower, upper)}``; the result's interval is the intersection (so the
            interval excludes 0 exactly when the running p-value is ≤ α, as in :func:`msprt_path`).
        correction: multiple-testing correction across metrics × variants ("holm", "bh", "none").
        significant_by: which p-value ``significant`` (and so ``guardrail_breach``) is based on:
            ``"p_value"`` (raw, default) or ``"p_value_adjusted"``; every row records it.
        adjusted: ``{(metric, variant): (absolute, relative)}``, two :class:`EffectResult` of a
            covariate-adjusted comparison (e.g. :func:`regression_adjusted_test`, CUPED++): that row's
            difference, relative lift, standard errors and degrees of freedom are theirs, and every test
            (Welch or mSPRT, the running p and interval, the correction) runs on them; the value shown is
            still the arm's plain mean.

    Returns:
        One row per (metric, variant), control first within each metric.
    """
    alpha = check_alpha(alpha)
    check_choice("correction", correction, ("holm", "bh", "bonferroni", "by", "none"))
    check_choice("significant_by", significant_by, SIGNIFICANT_BY)
    metas: list[tuple[MetricSpec, Any, Any, tuple[float, float, int, int], tuple[float, float, int, int]]] = []
    controls: list[VariantMetricRow] = []
    has_primary = any(m.primary for m in metrics)
    for i, spec in enumerate(metrics):
        check_choice(f"kind of metric {spec.name!r}", spec.kind, KINDS)
        arms = list(sums.get(spec.name, ()))
        ctrl = [s for s in arms if s.variant == control]
        if not ctrl:
            raise StatsInputError(
                f"metric {spec.name!r} has no sums for the control variant {control!r}; "
                f"got variants {[s.variant for s in arms]}"
            )
        primary = spec.primary or (not has_primary and i == 0)
        c = ctrl[0]
        cst = _arm_stats(c, spec.kind, spec.name)
        controls.append(
            VariantMetricRow(
                metric=spec.name, kind=spec.kind, variant=c.variant, is_control=True, users=cst[2],
                events=cst[3], value=cst[0], abs_lift=math.nan, abs_ci_lower=math.nan,
                abs_ci_upper=math.nan, rel_lift=math.nan, rel_ci_lower=math.nan, rel_ci_upper=math.nan,
                p_value=math.nan, p_value_adjusted=math.nan, method="", significant=False,
                guardrail=spec.guardrail, guardrail_breach=False, primary=primary,
                higher_is_better=spec.higher_is_better, significant_by=significant_by,
            )
        )
        for t in arms:
            if t.variant != control:
                metas.append((replace(spec, primary=primary), c, t, cst, _arm_stats(t, spec.kind, spec.name)))
    rows = _compare_vectorised(
        metas, alpha, sequential, mixing_sd, previous_p, correction, previous_ci, significant_by, adjusted
    )
    by_metric: dict[str, list[VariantMetricRow]] = {}
    for r in rows:  # grouped once: a scan per metric is quadratic in the number of metrics
        by_metric.setdefault(r.metric, []).append(r)
    out: list[VariantMetricRow] = []
    for crow in controls:
        out.append(crow)
        out.extend(by_metric.get(crow.metric, ()))
    return out


def _compare_vectorised(
    metas: list[Any],
    alpha: float,
    sequential: bool,
    mixing_sd: float,
    previous_p: Mapping[tuple[str, str], float] | None,
    correction: str,
    previous_ci: Mapping[tuple[str, str], tuple[float, float]] | None = None,
    significant_by: str = "p_value",
    adjusted: Mapping[tuple[str, str], tuple[Any, Any]] | None = None,
) -> list[VariantMetricRow]:
    if not metas:
        return []
    cst = np.array([m[3][:3] for m in metas], dtype=float)
    tst = np.array([m[4][:3] for m in metas], dtype=float)
    mc, vc, nc = cst[:, 0], cst[:, 1], cst[:, 2]
    mt, vt, nt = tst[:, 0], tst[:, 1], tst[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = vc / nc, vt / nt
        se_abs = np.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (nc - 1) + b * b / (nt - 1))
        # quantiles are asymptotically normal (no Welch df): a z-test, as Deng et al. and gbstats
        quantile = np.array([m[0].kind == "quantile" for m in metas])
        df = np.where(np.isfinite(df) & ~quantile, df, np.inf)
        diff = mt - mc
        den = np.abs(mc)
        rel = diff / den
        se_rel = np.sqrt(b / mc**2 + a * mt**2 / mc**4)
        for k, m in enumerate(metas):
            found = (adjusted or {}).get((m[0].name, m[2].variant))
            if found is not None:  # the covariate-adjusted comparison replaces the plain one
                ab, re = found
                diff[k], se_abs[k], df[k], rel[k], se_rel[k] = ab.estimate, ab.se, ab.df, re.estimate, re.se
        valid = (se_abs > 0) & np.isfinite(se_abs) & (nc >= 2) & (nt >= 2)
        # a quantile arm without variance (too few units, collapsed bounds) is unresolved, not exact:
        # no test (gbstats' zero-variance rule)
        valid &= ~quantile | ((vc > 0) & (vt > 0))
        valid_rel = valid & (den > 0) & (se_rel > 0) & np.isfinite(se_rel) & np.isfinite(rel)
        safe_se = np.where(valid, se_abs, 1.0)
        safe_se_rel = np.where(valid_rel, se_rel, 1.0)
        _, p_abs, lo_abs, hi_abs = infer(diff, safe_se, df, alpha, "two-sided")
        _, _, lo_rel, hi_rel = infer(np.where(valid_rel, rel, 0.0), safe_se_rel, df, alpha, "two-sided")
        if sequential:
            # mSPRT on the relative lift where it is defined; where it is not (control mean 0, or a
            # zero relative SE) on the absolute difference with τ = mixing_sd·|pooled mean|, so an
            # infinite relative estimate can never make a look significant. Neither: no p-value.
            pooled = np.abs(mc * nc + mt * nt) / (nc + nt)
            use_abs = valid & ~valid_rel & (pooled > 0)
            seq_ok = valid_rel | use_abs
            est_seq = np.where(valid_rel, rel, np.where(use_abs, diff, 0.0))
            se_seq = np.where(valid_rel, safe_se_rel, safe_se)
            tau2 = np.where(use_abs, (mixing_sd * pooled) ** 2, mixing_sd**2)
            tau2 = np.where(tau2 > 0, tau2, 1.0)
            _, p_seq, half = _msprt_arrays(est_seq, se_seq, tau2, alpha)
            lo_rel, hi_rel = rel - half, rel + half
            if previous_ci:
                keys = [(m[0].name, m[2].variant) for m in metas]
                lo_rel = np.fmax(lo_rel, np.array([previous_ci.get(k, (-np.inf, np.inf))[0] for k in keys]))
                hi_rel = np.fmin(hi_rel, np.array([previous_ci.get(k, (-np.inf, np.inf))[1] for k in keys]))
            # The absolute CI is the relative one scaled by |control mean| (same always-valid level),
            # or the absolute-scale sequence itself where the relative lift is undefined.
            lo_abs = np.where(valid_rel, lo_rel * den, np.where(use_abs, diff - half, np.nan))
            hi_abs = np.where(valid_rel, hi_rel * den, np.where(use_abs, diff + half, np.nan))
            p = np.where(seq_ok, p_seq, np.nan)
        else:
            p = p_abs
    p = np.where(valid, p, np.nan)
    if sequential and previous_p:
        prev = np.array([previous_p.get((m[0].name, m[2].variant), 1.0) for m in metas])
        p = np.fmin(p, prev)
    finite = np.isfinite(p)
    adj = np.full(p.shape, np.nan)
    if finite.any():
        method = "none" if correction == "none" else correction
        adj[finite] = adjust_pvalues(p[finite], method=method, alpha=alpha).adjusted
    rows = []
    for k, (spec, _c, t, _cs, ts) in enumerate(metas):
        ok = bool(valid[k])
        basis = adj[k] if significant_by == "p_value_adjusted" else p[k]
        # Exactly the p-value shown beside it (a running always-valid p carried from an earlier look
        # counts even when today's look has no estimate).
        sig = bool(np.isfinite(basis) and basis < alpha)
        harmful = (diff[k] < 0) if spec.higher_is_better else (diff[k] > 0)
        rows.append(
            VariantMetricRow(
                metric=spec.name, kind=spec.kind, variant=t.variant, is_control=False, users=ts[2],
                events=ts[3], value=float(mt[k]), abs_lift=float(diff[k]),
                abs_ci_lower=float(lo_abs[k]) if ok else math.nan,
                abs_ci_upper=float(hi_abs[k]) if ok else math.nan,
                rel_lift=float(rel[k]) if valid_rel[k] else math.nan,
                rel_ci_lower=float(lo_rel[k]) if valid_rel[k] else math.nan,
                rel_ci_upper=float(hi_rel[k]) if valid_rel[k] else math.nan,
                p_value=float(p[k]), p_value_adjusted=float(adj[k]),
                method="msprt" if sequential else ("z" if spec.kind == "quantile" else "welch"), significant=sig,
                guardrail=spec.guardrail, guardrail_breach=bool(spec.guardrail and sig and harmful),
                primary=spec.primary, higher_is_better=spec.higher_is_better,
                significant_by=significant_by,
            )
        )
    return rows
