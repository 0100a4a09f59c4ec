"""Dimension breakdowns: the treatment effect within each slice of a user attribute (country, platform,
new vs returning, …), corrected for multiplicity, with a heterogeneous-effect flag per slice (the slice's
effect against the effect in the rest of the users, as Statsig's "heterogeneous effect detection").

Per slice s and treatment variant v the effect is the ordinary two-arm test on the slice's users:
estimate Δ̂ₛ (a difference of means or ratios, or the relative lift), its standard error seₛ, Welch df
νₛ (or normal). The rest r = every other user of the metric (the slices' sums added up) gives Δ̂ᵣ, seᵣ,
νᵣ the same way. Slice and rest hold disjoint users, so the two estimates are independent and

    z = (Δ̂ₛ − Δ̂ᵣ) / √(seₛ² + seᵣ²),    ν = (seₛ² + seᵣ²)² / (seₛ⁴/νₛ + seᵣ⁴/νᵣ)   (Welch–Satterthwaite)

is referred to t(ν) (normal with ``distribution="normal"``), two-sided. Two families are corrected
separately with :func:`battleground.stats.adjust_pvalues` (Holm by default, or BH): the slices' effect
p-values and the slices' heterogeneity p-values, each over every (slice, variant) that can be tested.
A slice that cannot be tested (an arm with < 2 users, no variance, a zero control for a relative lift)
keeps its users in the others' rest, shows its sizes and a ``note``, and takes no part in either family.
With two testable slices "A vs rest" and "B vs rest" are the same comparison, tested twice (Holm is
then conservative by a factor of 2 at most).

References: Cochran (1954), "The combination of estimates from different experiments", Biometrics
10(1) (the z test of a difference of independent estimates); Holm (1979), Scand. J. Statist. 6;
Benjamini & Hochberg (1995), JRSS-B 57(1); Statsig, "Heterogeneous effect detection" (docs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from battleground.stats._base import (
    MeanSummary,
    RatioSummary,
    Result,
    StatsInputError,
    check_alpha,
    check_choice,
)
from battleground.stats._corrections import METHODS, adjust_pvalues
from battleground.stats._tests import Distribution, EffectResult, compare_means, infer, ratio_test

__all__ = ["BreakdownResult", "SliceEffect", "breakdown_test"]

Summary = MeanSummary | RatioSummary


@dataclass(frozen=True)
class SliceEffect(Result):
    """One (slice, treatment variant) of a breakdown.

    Attributes:
        slice, variant: the slice's label and the variant compared with the control there.
        n_control, n_treatment: the slice's users in each arm.
        estimate, se, ci_lower, ci_upper, p_value: the slice's effect (``None`` when it cannot be tested).
        adjusted_p_value, significant: the effect's p-value corrected over the breakdown's slices × variants,
            and whether it is ≤ alpha.
        rest_estimate, rest_se: the same effect over every other user.
        heterogeneity_statistic, heterogeneity_p_value, heterogeneity_adjusted_p_value: the test of the
            slice's effect against the rest's (module docstring), raw and corrected.
        heterogeneous: the corrected heterogeneity p-value is ≤ alpha (the slice's effect differs).
        note: why the slice, or its rest, could not be tested ("" when it could).
    """

    slice: str
    variant: str
    n_control: float
    n_treatment: float
    estimate: float | None = None
    se: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    significant: bool = False
    rest_estimate: float | None = None
    rest_se: float | None = None
    heterogeneity_statistic: float | None = None
    heterogeneity_p_value: float | None = None
    heterogeneity_adjusted_p_value: float | None = None
    heterogeneous: bool = False
    note: str = ""


@dataclass(frozen=True)
class BreakdownResult(Result):
    """Every (slice, variant) of a breakdown, in the slices' order then the variants'.

    ``flagged`` are the slices whose effect differs from the rest's after correction; ``significant``
    those whose own effect is significant after correction."""

    control: str
    relative: bool
    correction: str
    alpha: float
    slices: tuple[SliceEffect, ...]

    @property
    def flagged(self) -> tuple[SliceEffect, ...]:
        return tuple(s for s in self.slices if s.heterogeneous)

    @property
    def significant(self) -> tuple[SliceEffect, ...]:
        return tuple(s for s in self.slices if s.significant)


# --------------------------------------------------------------------------- adding up slices' sums
def _merge_mean(parts: list[MeanSummary], proportion: bool) -> MeanSummary:
    parts = [p for p in parts if p.n > 0]
    n = sum(p.n for p in parts)
    if n == 0:
        return MeanSummary(0.0, math.nan, math.nan)
    mean = sum(p.n * p.mean for p in parts) / n
    if proportion:
        return MeanSummary.from_proportion(min(max(mean * n, 0.0), n), n)
    ss = sum((p.n - 1) * (p.var if math.isfinite(p.var) else 0.0) + p.n * (p.mean - mean) ** 2 for p in parts)
    return MeanSummary(n, mean, max(ss, 0.0) / (n - 1) if n > 1 else math.nan)


def _merge_ratio(parts: list[RatioSummary]) -> RatioSummary:
    parts = [p for p in parts if p.n > 0]
    if not parts:
        return RatioSummary(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    km, kd = parts[0].shift_m, parts[0].shift_d
    n = sm = sd = sm2 = sd2 = smd = 0.0
    for p in parts:  # Σ(x − k) = Σ(x − s) + n(s − k), Σ(x − k)² = Σ(x − s)² + 2(s − k)Σ(x − s) + n(s − k)²
        a, b = p.shift_m - km, p.shift_d - kd
        n += p.n
        sm += p.sum_m + p.n * a
        sd += p.sum_d + p.n * b
        sm2 += p.sum_m2 + 2 * a * p.sum_m + p.n * a * a
        sd2 += p.sum_d2 + 2 * b * p.sum_d + p.n * b * b
        smd += p.sum_md + a * p.sum_d + b * p.sum_m + p.n * a * b
    return RatioSummary(n, sm, sd, sm2, sd2, smd, km, kd)


def _merge(parts: list[Summary], proportion: bool) -> Summary:
    if all(isinstance(p, RatioSummary) for p in parts):
        return _merge_ratio(parts)  # type: ignore[arg-type]
    return _merge_mean(parts, proportion)  # type: ignore[arg-type]


def _effect(c: Summary | None, t: Summary | None, *, relative: bool, proportion: bool,
            distribution: Distribution, alpha: float) -> EffectResult | str:
    """The two-arm test, or why it cannot be made (a note)."""
    if c is None or t is None or c.n == 0 or t.n == 0:
        return "no users in an arm"
    try:
        if isinstance(c, RatioSummary):
            return ratio_test(c, t, relative=relative, distribution=distribution, alpha=alpha)
        return compare_means(c, t, relative=relative, proportion=proportion, distribution=distribution, alpha=alpha)
    except StatsInputError as exc:
        return str(exc)


def _usable(r: EffectResult | str) -> EffectResult | None:
    if isinstance(r, str) or not (math.isfinite(r.estimate) and math.isfinite(r.se) and r.se > 0):
        return None
    return r


# --------------------------------------------------------------------------- the public function
def breakdown_test(
    slices: Mapping[str, Mapping[str, Summary]],
    *,
    control: str,
    relative: bool = False,
    proportion: bool = False,
    correction: str = "holm",
    distribution: Distribution = "t",
    alpha: float = 0.05,
) -> BreakdownResult:
    """Per-slice effects with multiplicity correction and heterogeneous-effect flags (module docstring).

    Args:
        slices: slice label → variant → that slice's sums for the variant (:class:`MeanSummary` for mean
            and proportion metrics, :class:`RatioSummary` for ratio metrics; every arm the same kind).
            A variant missing from a slice has no users there.
        control: the control variant's name; every other variant is compared with it.
        relative: the relative lift (Δ/|control|) instead of the difference.
        proportion: the summaries are proportions (per-user variance p(1 − p), also for the rest).
        correction: a method of :func:`adjust_pvalues` (``"holm"``, ``"bh"``, …), applied to the
            effects' and, separately, the heterogeneity tests' p-values.
        distribution: ``"t"`` (Welch, default) or ``"normal"``.

    Raises:
        StatsInputError: no slices, a control missing everywhere, mixed summary kinds, a bad option.

    Example (the slice "b" has the opposite effect of the other three):
        >>> arm = MeanSummary
        >>> up, down = {"c": arm(1000, 1.0, 1.0), "t": arm(1000, 1.1, 1.0)}, {"c": arm(1000, 1.0, 1.0), "t": arm(1000, 0.8, 1.0)}
        >>> r = breakdown_test({"a": up, "b": down, "d": up, "e": up}, control="c")
        >>> [(s.slice, s.significant, s.heterogeneous) for s in r.slices]
        [('a', False, False), ('b', True, True), ('d', False, False), ('e', False, False)]
        >>> round(r.slices[1].heterogeneity_statistic, 2)  # (−0.2 − 0.1) / √(2/1000 + 2/3000)
        -5.81
    """
    alpha = check_alpha(alpha)
    check_choice("correction", correction, METHODS)
    check_choice("distribution", distribution, ("t", "normal"))
    if not slices:
        raise StatsInputError("breakdown_test needs at least one slice, got none")
    kinds = {type(s) for arms in slices.values() for s in arms.values()}
    if not kinds <= {MeanSummary, RatioSummary} or len(kinds) > 1:
        raise StatsInputError(
            "every slice's arms must be the same kind (all MeanSummary or all RatioSummary), got "
            f"{sorted(k.__name__ for k in kinds)}"
        )
    variants = list(dict.fromkeys(v for arms in slices.values() for v in arms))
    if control not in variants:
        raise StatsInputError(f"control {control!r} has no sums in any slice; the variants are {variants!r}")
    labels = list(slices)
    rows: list[dict[str, object]] = []
    for label in labels:
        for v in variants:
            if v == control:
                continue
            arms = slices[label]
            c, t = arms.get(control), arms.get(v)
            row: dict[str, object] = {"slice": label, "variant": v, "n_control": float(c.n) if c else 0.0,
                                      "n_treatment": float(t.n) if t else 0.0}
            got = _effect(c, t, relative=relative, proportion=proportion, distribution=distribution, alpha=alpha)
            eff = _usable(got)
            if eff is None:
                row["note"] = got if isinstance(got, str) else "the effect or its standard error is not finite"
                rows.append(row)
                continue
            row.update(estimate=eff.estimate, se=eff.se, ci_lower=eff.ci_lower, ci_upper=eff.ci_upper,
                       p_value=eff.p_value)
            others = [lab for lab in labels if lab != label]
            rest_c = [slices[lab][control] for lab in others if control in slices[lab]]
            rest_t = [slices[lab][v] for lab in others if v in slices[lab]]
            rest = _usable(_effect(_merge(rest_c, proportion) if rest_c else None,
                                   _merge(rest_t, proportion) if rest_t else None,
                                   relative=relative, proportion=proportion, distribution=distribution, alpha=alpha))
            if rest is None:
                row["note"] = "the rest of the users cannot be tested, so no heterogeneity test"
                rows.append(row)
                continue
            a, b = eff.se**2, rest.se**2
            df = math.inf if distribution == "normal" else (a + b) ** 2 / (a * a / eff.df + b * b / rest.df)
            stat, p, _, _ = infer(eff.estimate - rest.estimate, math.sqrt(a + b), df, alpha, "two-sided")
            row.update(rest_estimate=rest.estimate, rest_se=rest.se, heterogeneity_statistic=float(stat),
                       heterogeneity_p_value=float(p))
            rows.append(row)
    for key, flag in (("p_value", "significant"), ("heterogeneity_p_value", "heterogeneous")):
        family = [r for r in rows if r.get(key) is not None]
        adj = adjust_pvalues([r[key] for r in family], method=correction, alpha=alpha)
        for r, q, rej in zip(family, adj.adjusted, adj.rejected, strict=True):
            r[key.replace("p_value", "adjusted_p_value")] = q
            r[flag] = rej
    return BreakdownResult(control=control, relative=relative, correction=correction, alpha=alpha,
                           slices=tuple(SliceEffect(**r) for r in rows))  # type: ignore[arg-type]
