"""The sequential designs beside mSPRT, applied to a whole experiment's looks.

:func:`design_path` turns the per-look sums of every metric into rows per look (the
:class:`VariantMetricRow` of :func:`analyze_metrics`) whose p-value and intervals are those of the
chosen design:

* ``"one_sided"`` — gbstats' one-sided confidence sequence on the absolute difference, in each metric's
  good direction (:func:`one_sided_confidence_sequence`); the interval is open on the harmful side, so
  this design can ship or not ship, never report a significant deterioration.
* ``"obrien_fleming"`` / ``"pocock"`` — Lan–DeMets group-sequential tests over the information
  fractions given per look (:func:`group_sequential_test`): z on the absolute difference, repeated
  confidence intervals on both scales, the p-value rescaled to the look's nominal level.

Values, lifts and users come from the fixed-horizon analysis of each look; p-values adjusted across
metrics × variants with ``correction`` as everywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from battleground.stats._analysis import MetricSpec, VariantMetricRow, _arm_stats, analyze_metrics
from battleground.stats._base import Result, StatsInputError, check_choice
from battleground.stats._corrections import adjust_pvalues
from battleground.stats._group_sequential import group_sequential_bounds
from battleground.stats._one_sided import one_sided_confidence_sequence

__all__ = ["DESIGN_METHODS", "Moments", "comparison_moments", "design_path"]

DESIGN_METHODS = ("one_sided", "obrien_fleming", "pocock")


@dataclass(frozen=True)
class Moments(Result):
    """One comparison's estimates and standard errors (NaN where not estimable)."""

    diff: float
    se_abs: float
    rel: float
    se_rel: float
    users: float  # both arms


def comparison_moments(spec: MetricSpec, control: Any, treatment: Any) -> Moments:
    """Difference and relative lift with their (delta-method) standard errors, from two arms' sums."""
    mc, vc, nc, _ = _arm_stats(control, spec.kind, spec.name)
    mt, vt, nt, _ = _arm_stats(treatment, spec.kind, spec.name)
    if not (nc >= 2 and nt >= 2 and math.isfinite(mc) and math.isfinite(mt)):
        return Moments(math.nan, math.nan, math.nan, math.nan, float(nc + nt))
    a, b = vc / nc, vt / nt
    se = math.sqrt(a + b)
    rel = se_rel = math.nan
    if mc != 0:
        rel = (mt - mc) / abs(mc)
        se_rel = math.sqrt(b / mc**2 + a * mt**2 / mc**4)
    return Moments(mt - mc, se, rel, se_rel, float(nc + nt))


def design_path(
    metrics: Sequence[MetricSpec],
    looks: Sequence[Mapping[str, Sequence[Any]]],
    *,
    control: str,
    design: str,
    information_fractions: Sequence[float] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    n_star: float = 5000.0,
) -> list[list[VariantMetricRow]]:
    """Rows per look under ``design`` (see the module docstring); ``looks`` are cumulative sums per look,
    ``information_fractions`` (group-sequential designs) the users per arm / planned users per look."""
    check_choice("design", design, DESIGN_METHODS)
    gst = design != "one_sided"
    bounds: np.ndarray | None = None
    if gst:
        if information_fractions is None or len(information_fractions) != len(looks):
            raise StatsInputError("a group-sequential design needs one information fraction per look")
        frac = np.maximum.accumulate(np.maximum(np.asarray(information_fractions, dtype=float), 1e-9))
        bounds = np.asarray(group_sequential_bounds(frac, alpha=alpha, spending=design).z_bounds)
    specs = {m.name: m for m in metrics}
    state: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[list[VariantMetricRow]] = []
    for k, sums in enumerate(looks):
        rows = analyze_metrics(metrics, sums, control=control, alpha=alpha, correction=correction)
        new: list[VariantMetricRow] = []
        for r in rows:
            if r.is_control:
                new.append(r)
                continue
            spec = specs[r.metric]
            arms = {s.variant: s for s in sums.get(r.metric, ())}
            mom = comparison_moments(spec, arms[control], arms[r.variant])
            st = state.setdefault((r.metric, r.variant), {"p": 1.0, "lo": -math.inf, "hi": math.inf,
                                                          "rlo": -math.inf, "rhi": math.inf, "prev": None})
            ok = math.isfinite(mom.diff) and math.isfinite(mom.se_abs) and mom.se_abs > 0
            if ok and not gst:
                alt = "greater" if spec.higher_is_better else "less"
                res = one_sided_confidence_sequence(mom.diff, mom.se_abs, mom.users, n_star=n_star, alpha=alpha,
                                                    alternative=alt, previous=st["prev"])
                st["prev"] = res
                st["p"], st["lo"], st["hi"] = res.p_value, res.ci_lower, res.ci_upper
                if math.isfinite(mom.se_rel) and mom.se_rel > 0:
                    rr = one_sided_confidence_sequence(mom.rel, mom.se_rel, mom.users, n_star=n_star, alpha=alpha,
                                                       alternative=alt)
                    st["rlo"], st["rhi"] = max(st["rlo"], rr.ci_lower), min(st["rhi"], rr.ci_upper)
            elif ok and bounds is not None:
                c = float(bounds[k])
                z = mom.diff / mom.se_abs
                nominal = 2.0 * _norm_sf(c) if math.isfinite(c) else 0.0
                p_nom = 2.0 * _norm_sf(abs(z))
                scaled = min(1.0, p_nom * alpha / nominal) if nominal > 0 else 1.0
                st["p"] = min(st["p"], scaled)
                if math.isfinite(c):
                    st["lo"], st["hi"] = max(st["lo"], mom.diff - c * mom.se_abs), min(st["hi"], mom.diff + c * mom.se_abs)
                    if math.isfinite(mom.se_rel) and mom.se_rel > 0:
                        st["rlo"] = max(st["rlo"], mom.rel - c * mom.se_rel)
                        st["rhi"] = min(st["rhi"], mom.rel + c * mom.se_rel)
            seen = st["prev"] is not None or math.isfinite(st["lo"]) or math.isfinite(st["hi"])
            new.append(replace(
                r, p_value=float(st["p"]) if seen else math.nan,
                abs_ci_lower=float(st["lo"]) if seen else math.nan, abs_ci_upper=float(st["hi"]) if seen else math.nan,
                rel_ci_lower=float(st["rlo"]) if math.isfinite(r.rel_lift) else math.nan,
                rel_ci_upper=float(st["rhi"]) if math.isfinite(r.rel_lift) else math.nan,
                method=design if not gst else f"gst_{design}",
            ))
        out.append(_finish(new, alpha, correction))
    return out


def _norm_sf(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def _finish(rows: list[VariantMetricRow], alpha: float, correction: str) -> list[VariantMetricRow]:
    """Adjusted p-values across metrics × variants, and the flags that follow from the p-value."""
    idx = [i for i, r in enumerate(rows) if not r.is_control and math.isfinite(r.p_value)]
    adj = dict.fromkeys(range(len(rows)), math.nan)
    if idx:
        got = adjust_pvalues([rows[i].p_value for i in idx], method=correction, alpha=alpha).adjusted
        adj.update(zip(idx, (float(a) for a in got), strict=True))
    out = []
    for i, r in enumerate(rows):
        if r.is_control:
            out.append(r)
            continue
        basis = adj[i] if r.significant_by == "p_value_adjusted" else r.p_value
        sig = math.isfinite(basis) and basis < alpha
        harmful = (r.abs_lift < 0) if r.higher_is_better else (r.abs_lift > 0)
        out.append(replace(r, p_value_adjusted=adj[i], significant=sig,
                           guardrail_breach=bool(r.guardrail and sig and harmful)))
    return out
