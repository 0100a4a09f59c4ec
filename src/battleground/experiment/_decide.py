"""The one decision rule: what every surface (page, API, CLI, report) and the end conditions say.

Spotify's risk-aware rule (Schultzberg, Ankargren & Frånberg 2024), per variant against control:

    ship a variant iff at least one success metric improves significantly, every guardrail is shown
    non-inferior within its declared margin, no metric deteriorates significantly, and no data-quality
    check fails; a fixed-horizon test decides nothing before its planned sample or end date.

What is implemented, exactly:

* **success metrics** (every metric that is not a guardrail): two-sided p-values of the analysis,
  Holm-corrected over success metrics × variants (``correction=``); "improved" = adjusted p < α and the
  (1 − α) interval entirely on the metric's good side. Significance always needs the p-value *and* the
  interval to agree, so a p-value inconsistent with its own interval never decides.
* **guardrails with a margin**: a one-sided non-inferiority test at level α, *not* divided by the number of
  guardrails (the variant ships only if all pass, an intersection–union test, so the false-positive rate
  needs no correction). The one-sided bound is taken from the analysis' two-sided (1 − α) interval,
  rescaled by z(1 − α)/z(1 − α/2) for fixed-horizon tests (conservative for Welch's t) and used as is
  for always-valid intervals. Power is the other half of Spotify's point: a guardrail that is not shown
  non-inferior blocks shipping as "not shown non-inferior", never as "fine", so an underpowered guardrail
  cannot let a variant through; plan each guardrail at power 1 − β/(G + 1) (:func:`guardrail_power`).
* **guardrails without a margin**: checked for deterioration only (Spotify's lower-rigor guardrail); the
  reasons say so.
* **deterioration** (every metric): a two-sided p < α (uncorrected: it can only stop a ship) with the
  interval entirely on the harmful side → don't ship.
* **data quality**: any :class:`DataQualityCheck` with status ``fail`` (SRM alert, multiple exposure)
  overrides everything.

The best shippable variant is the one with the largest improvement of the primary metric.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from battleground.experiment._quality import (
    DataQualityCheck,
    multiple_exposure_check,
    pre_period_check,
    sequential_srm_check,
    srm_check,
)
from battleground.experiment._records import GuardrailMargin, MarginError
from battleground.stats import Result, VariantMetricRow, adjust_pvalues

if TYPE_CHECKING:
    from battleground.experiment._source import ExperimentInfo

__all__ = [
    "RULE",
    "DataQualityCheck",
    "Decision",
    "GuardrailMargin",
    "MarginError",
    "MetricVerdict",
    "PlanProgress",
    "VariantDecision",
    "decide",
    "guardrail_power",
    "guardrail_users_needed",
    "multiple_exposure_check",
    "p_label",
    "plan_progress",
    "pre_period_check",
    "sequential_srm_check",
    "srm_check",
]

# methods whose interval is valid at every look (read as is for non-inferiority)
ALWAYS_VALID = ("msprt", "one_sided", "gst_obrien_fleming", "gst_pocock")

RULE = (
    "Ship a variant only if at least one success metric improves significantly (Holm-corrected over "
    "success metrics × variants), every guardrail is shown non-inferior within its margin (one-sided, "
    "α not divided), no metric gets significantly worse and no data-quality check fails; a fixed-horizon "
    "test decides only once its planned sample or end date is reached."
)

VERDICTS = ("ship", "dont_ship", "inconclusive", "collecting", "data_quality")


def guardrail_power(power: float, n_guardrails: int) -> float:
    """The power each test needs so the whole rule keeps ``power``: 1 − β/(G + 1) (Spotify)."""
    if not 0 < power < 1:
        raise MarginError(f"power must be in (0, 1), got {power!r}")
    return 1 - (1 - power) / (max(int(n_guardrails), 0) + 1)


def guardrail_users_needed(
    r: VariantMetricRow, margin: GuardrailMargin, *, alpha: float = 0.05, power: float = 0.8,
    n_guardrails: int = 1,
) -> float:
    """Users per arm for this guardrail's non-inferiority test to pass with power 1 − β/(G + 1), if the
    true effect is the observed one (the interval shrinks as 1/√n); ``inf`` when the observed harm is
    already beyond the margin, NaN when not estimable."""
    est, lo, hi = (r.rel_lift, r.rel_ci_lower, r.rel_ci_upper) if margin.relative else (
        r.abs_lift, r.abs_ci_lower, r.abs_ci_upper)
    if not all(math.isfinite(x) for x in (est, lo, hi)) or r.users < 2:
        return math.nan
    nd = NormalDist()
    se = (hi - lo) / 2 / nd.inv_cdf(1 - alpha / 2)
    harm = -est if r.higher_is_better else est
    room = margin.margin - harm
    if room <= 0:
        return math.inf
    z = nd.inv_cdf(1 - alpha) + nd.inv_cdf(guardrail_power(power, n_guardrails))
    return r.users * (z * se / room) ** 2


# ---------------------------------------------------------------------------------------------------
# the design: has the plan been reached?
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanProgress(Result):
    """How far a fixed-horizon test is through its plan (the largest of sample, end date, duration)."""

    reached: bool
    share: float  # NaN when there is no plan
    text: str


def plan_progress(info: ExperimentInfo, users: Mapping[str, int], now: dt.datetime | None = None) -> PlanProgress:
    """Whether the planned sample size, end date or maximum duration is reached (any one is enough)."""
    ended = info.status in ("stopped", "archived")
    ref = getattr(info, "stopped_at", None) if ended else None
    ref = ref or now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    shares: list[float] = []
    if info.target_sample_size:
        shares.append(min(users.values(), default=0) / info.target_sample_size)
    began = info.start_at or info.started_at
    if info.end_at is not None:
        if began is not None and info.end_at > began:
            shares.append((ref - began) / (info.end_at - began))
        else:
            shares.append(1.0 if ref >= info.end_at else 0.0)
    if info.max_duration_days and began is not None:
        shares.append((ref - began) / dt.timedelta(days=info.max_duration_days))
    if not shares:
        text = "no plan: set a target sample size or an end date" + ("" if ended else ", or stop the test")
        return PlanProgress(ended, math.nan, text)
    share = max(0.0, max(shares))
    return PlanProgress(share >= 1.0, share, f"{min(share, 9.99) * 100:.0f} % of plan")


# ---------------------------------------------------------------------------------------------------
# the verdicts
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricVerdict(Result):
    """What the rule read from one (metric, variant) comparison.

    ``outcome``: success metrics ``improved``, ``not_significant``, ``deteriorated`` or ``not_estimable``;
    guardrails ``non_inferior``, ``not_shown_non_inferior``, ``deteriorated``, ``no_margin_ok`` (no margin:
    deterioration checked only) or ``not_estimable``. ``p_value_adjusted`` is the Holm p-value over the
    success family (NaN for guardrails); ``bound`` the one-sided non-inferiority bound on the margin's scale.
    """

    metric: str
    variant: str
    role: str
    outcome: str
    significant: bool
    p_value: float
    p_value_adjusted: float
    bound: float
    margin: GuardrailMargin | None
    text: str


@dataclass(frozen=True)
class VariantDecision(Result):
    """One variant's verdict (``ship``, ``dont_ship``, ``inconclusive``) and the clause that decided it."""

    variant: str
    verdict: str
    clause: str
    reasons: tuple[str, ...]
    metrics: tuple[MetricVerdict, ...]


@dataclass(frozen=True)
class Decision(Result):
    """The experiment's verdict: ``ship`` (the best shippable variant named), ``dont_ship``,
    ``inconclusive``, ``collecting`` (fixed horizon before its plan) or ``data_quality``.

    ``clause`` names the clause of :data:`RULE` that decided: ``data_quality``, ``design``, ``success``,
    ``guardrail`` or ``deterioration``.
    """

    verdict: str
    headline: str
    reasons: tuple[str, ...]
    clause: str
    best: str | None
    variants: tuple[VariantDecision, ...]
    progress: PlanProgress | None
    alpha: float
    correction: str
    rule: str = RULE

    def for_row(self, metric: str, variant: str) -> MetricVerdict | None:
        for v in self.variants:
            for m in v.metrics:
                if m.metric == metric and m.variant == variant:
                    return m
        return None


_CLAUSE_TEXT = {
    "data_quality": "a data-quality check failed",
    "design": "the design does not allow a decision yet",
    "success": "the success-metric clause",
    "guardrail": "the guardrail clause",
    "deterioration": "the deterioration clause",
}


_CORRECTIONS = {"holm": "Holm", "bh": "Benjamini–Hochberg", "bonferroni": "Bonferroni",
                "by": "Benjamini–Yekutieli", "none": "uncorrected"}


def p_label(correction: str) -> str:
    """How the decision's p-value is labelled: ``p (Holm)``, ``p (uncorrected)``, ..."""
    return f"p ({_CORRECTIONS.get(correction, correction)})"


def clause_text(clause: str) -> str:
    return _CLAUSE_TEXT.get(clause, clause)


def _pct(x: float) -> str:
    return f"{x:+.2%}" if math.isfinite(x) else "not estimable"


def _lift_text(r: VariantMetricRow) -> str:
    if math.isfinite(r.rel_lift):
        return f"relative lift {r.rel_lift:+.2%} [{r.rel_ci_lower:+.2%}, {r.rel_ci_upper:+.2%}]"
    if math.isfinite(r.abs_lift) and math.isfinite(r.abs_ci_lower):
        return f"absolute lift {r.abs_lift:+.4g} [{r.abs_ci_lower:+.4g}, {r.abs_ci_upper:+.4g}]"
    return "lift not estimable"


def _estimable(r: VariantMetricRow) -> bool:
    """A lift, a p-value and an interval; a one-sided design's interval is open (infinite) on one side."""
    lo, hi = r.abs_ci_lower, r.abs_ci_upper
    return (math.isfinite(r.abs_lift) and math.isfinite(r.p_value) and not (math.isnan(lo) or math.isnan(hi))
            and (math.isfinite(lo) or math.isfinite(hi)))


def _good(r: VariantMetricRow) -> bool:
    """The estimate and its whole interval lie on the good side of 0."""
    return (r.abs_ci_lower > 0) if r.higher_is_better else (r.abs_ci_upper < 0)


def _bad(r: VariantMetricRow) -> bool:
    """The estimate and its whole interval lie on the harmful side of 0.

    Requiring the interval as well as the p-value keeps a p-value that disagrees with its own interval
    (e.g. an always-valid p of 0 from a non-finite early estimate) from deciding anything."""
    return (r.abs_ci_upper < 0) if r.higher_is_better else (r.abs_ci_lower > 0)


def _empty_reason(r: VariantMetricRow, control: VariantMetricRow | None) -> str:
    """Why a comparison is not estimable, by name (never "nan")."""
    if (control is not None and control.users < 2) or r.users < 2:
        return f"{r.metric} in {r.variant}: not estimable yet (fewer than 2 users in an arm)"
    if r.events == 0 and (control is None or control.events == 0):
        return f"{r.metric} in {r.variant}: no events yet in either arm, not estimable"
    return f"{r.metric} in {r.variant}: not estimable (no variation in the data yet)"


def _ni_bound(r: VariantMetricRow, margin: GuardrailMargin, alpha: float) -> float:
    """The one-sided (level α) bound on the harmful side, on the margin's scale (NaN if not estimable)."""
    est, lo, hi = (r.rel_lift, r.rel_ci_lower, r.rel_ci_upper) if margin.relative else (
        r.abs_lift, r.abs_ci_lower, r.abs_ci_upper)
    if r.method in ALWAYS_VALID:  # always-valid interval (possibly intersected): use its own bound
        bound = lo if r.higher_is_better else hi
        return bound if math.isfinite(est) and math.isfinite(bound) else math.nan
    if not all(math.isfinite(x) for x in (est, lo, hi)):
        return math.nan
    nd = NormalDist()
    k = nd.inv_cdf(1 - alpha) / nd.inv_cdf(1 - alpha / 2)
    return est - k * (est - lo) if r.higher_is_better else est + k * (hi - est)


def decide(
    info: ExperimentInfo,
    rows: Sequence[VariantMetricRow],
    *,
    data_quality: Sequence[DataQualityCheck | None] = (),
    alpha: float = 0.05,
    correction: str = "holm",
    now: dt.datetime | None = None,
) -> Decision:
    """Apply :data:`RULE` to one experiment's rows (see the module docstring for the exact tests).

    Args:
        info: the design (variants, metrics and their roles, guardrail margins, plan, sequential or not).
        rows: the analysis, one row per (metric, variant), control rows included.
        data_quality: checks beside the metrics (:func:`srm_check`, :func:`multiple_exposure_check`).
        alpha: significance level of every test.
        correction: the multiple-testing correction over success metrics × variants.
        now: the current time (naive UTC), for the plan's end date and duration.
    """
    margins: Mapping[str, GuardrailMargin] = getattr(info, "guardrail_margins", {}) or {}
    checks = [c for c in data_quality if c is not None]
    users: dict[str, int] = {v.name: 0 for v in info.variants}
    for r in rows:
        if r.variant in users:
            users[r.variant] = max(users[r.variant], int(r.users))
    progress = None if info.sequential else plan_progress(info, users, now)
    common: dict[str, Any] = {"progress": progress, "alpha": alpha, "correction": correction}
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        return Decision(
            "data_quality", "data quality problem: do not trust these results",
            (*(f"{c.name}: {c.detail}" for c in failed),
             "look for assignment or logging bugs before reading any metric"),
            "data_quality", None, (), **common,
        )
    verdicts = _metric_verdicts(info, rows, margins, alpha, correction)
    variants = tuple(_variant(v.name, [m for m in verdicts if m.variant == v.name])
                     for v in info.variants if not v.is_control)
    if progress is not None and not progress.reached:
        if info.status in ("stopped", "archived"):
            return Decision(
                "inconclusive", f"inconclusive: stopped before its plan ({progress.text})",
                (f"the test stopped at {progress.text}; a fixed-horizon test cannot decide before its "
                 "planned sample size or end date",), "design", None, variants, **common,
            )
        return Decision(
            "collecting", f"collecting data ({progress.text})",
            ("a fixed-horizon test decides only once its planned sample size or end date is reached; "
             "until then no ship or don't-ship (use a sequential design to decide early)",),
            "design", None, variants, **common,
        )
    return _combine(info, rows, variants, common)


def _metric_verdicts(
    info: ExperimentInfo,
    rows: Sequence[VariantMetricRow],
    margins: Mapping[str, GuardrailMargin],
    alpha: float,
    correction: str,
) -> list[MetricVerdict]:
    roles = {m.name: ("guardrail" if m.guardrail else "success") for m in info.metrics}
    controls = {r.metric: r for r in rows if r.is_control}
    treated = [r for r in rows if not r.is_control and r.metric in roles]
    family = [i for i, r in enumerate(treated) if roles[r.metric] == "success" and _estimable(r)]
    adjusted = dict.fromkeys(range(len(treated)), math.nan)
    if family:
        adj = adjust_pvalues([treated[i].p_value for i in family], method=correction, alpha=alpha).adjusted
        adjusted.update(zip(family, adj, strict=True))
    out = []
    for i, r in enumerate(treated):
        role = roles[r.metric]
        margin = margins.get(r.metric) if role == "guardrail" else None
        base: dict[str, Any] = {"metric": r.metric, "variant": r.variant, "role": role, "p_value": r.p_value,
                "p_value_adjusted": adjusted[i], "margin": margin}
        if not _estimable(r):
            out.append(MetricVerdict(**base, outcome="not_estimable", significant=False, bound=math.nan,
                                     text=_empty_reason(r, controls.get(r.metric))))
            continue
        if _bad(r) and r.p_value < alpha:
            out.append(MetricVerdict(
                **base, outcome="deteriorated", significant=True, bound=math.nan,
                text=f"{'success metric' if role == 'success' else role} {r.metric} got significantly worse "
                     f"in {r.variant}: {_lift_text(r)}, "
                     f"{'always-valid ' if r.method in ALWAYS_VALID else ''}p = {r.p_value:.3g} < {alpha}"))
            continue
        if role == "success":
            sig = adjusted[i] < alpha and (_good(r) or _bad(r))
            improved = sig and _good(r)
            out.append(MetricVerdict(
                **base, outcome="improved" if improved else "not_significant", significant=sig,
                bound=math.nan,
                text=f"success metric {r.metric} {'improved' if improved else 'did not improve significantly'} "
                     f"in {r.variant}: {_lift_text(r)}, "
                     f"{'always-valid ' if r.method in ALWAYS_VALID else ''}{p_label(correction)} = {adjusted[i]:.3g}"))
            continue
        if margin is None:
            out.append(MetricVerdict(
                **base, outcome="no_margin_ok", significant=False, bound=math.nan,
                text=f"guardrail {r.metric} not significantly worse in {r.variant} ({_lift_text(r)}); "
                     "it has no margin, so only deterioration was checked"))
            continue
        bound = _ni_bound(r, margin, alpha)
        limit = -margin.margin if r.higher_is_better else margin.margin
        ok = math.isfinite(bound) and (bound > limit if r.higher_is_better else bound < limit)
        scale = (lambda x: f"{x:+.2%}") if margin.relative else (lambda x: f"{x:+.4g}")
        shown = scale(bound) if math.isfinite(bound) else "not estimable"
        out.append(MetricVerdict(
            **base, outcome="non_inferior" if ok else "not_shown_non_inferior", significant=ok, bound=bound,
            text=f"guardrail {r.metric} {'is' if ok else 'is not shown'} non-inferior in {r.variant}: "
                 f"one-sided {1 - alpha:.0%} bound {shown} vs margin {scale(limit)}"
                 + ("" if ok else " (more users would narrow the interval)")))
    return out


def _variant(name: str, metrics: list[MetricVerdict]) -> VariantDecision:
    worse = [m for m in metrics if m.outcome == "deteriorated"]
    if worse:
        return VariantDecision(name, "dont_ship", "deterioration", tuple(m.text for m in worse), tuple(metrics))
    # a guardrail with a margin must be shown non-inferior; "not estimable" is not "fine"
    guard = [m for m in metrics if m.role == "guardrail" and m.margin is not None
             and m.outcome in ("not_shown_non_inferior", "not_estimable")]
    wins = [m for m in metrics if m.outcome == "improved"]
    if guard:
        return VariantDecision(name, "inconclusive", "guardrail", tuple(m.text for m in guard), tuple(metrics))
    if not wins:
        succ = [m.text for m in metrics if m.role == "success"] or ["there is no success metric to improve"]
        return VariantDecision(name, "inconclusive", "success", ("no success metric improved significantly",
                                                                 *succ), tuple(metrics))
    kept = [m.text for m in metrics if m.role == "guardrail"] or ["there are no guardrails"]
    return VariantDecision(name, "ship", "success", (*(m.text for m in wins), *kept), tuple(metrics))


# a holdout decides nothing to ship: its verdict says what everything shipped did to the held-out units
_HOLDOUT_HEADLINES = {
    "ship": "what shipped helps: shipped beats the holdout",
    "dont_ship": "what shipped hurts: shipped is worse than the holdout",
    "inconclusive": "no measurable impact of what shipped yet",
}


def _combine(
    info: ExperimentInfo, rows: Sequence[VariantMetricRow], variants: tuple[VariantDecision, ...],
    common: dict[str, Any],
) -> Decision:
    d = _combine_variants(info, rows, variants, common)
    if info.kind == "holdout":
        return dataclasses.replace(d, headline=_HOLDOUT_HEADLINES[d.verdict])
    return d


def _combine_variants(
    info: ExperimentInfo, rows: Sequence[VariantMetricRow], variants: tuple[VariantDecision, ...],
    common: dict[str, Any],
) -> Decision:
    ship = [v for v in variants if v.verdict == "ship"]
    if ship:
        primary = {r.variant: r for r in rows if r.primary and not r.is_control}

        def gain(v: VariantDecision) -> float:
            r = primary.get(v.variant)
            if r is None:
                return -math.inf
            lift = r.rel_lift if math.isfinite(r.rel_lift) else r.abs_lift
            lift = lift if r.higher_is_better else -lift
            return lift if math.isfinite(lift) else -math.inf

        best = sorted(ship, key=lambda v: (-gain(v), v.variant))[0]  # ties: the first name
        reasons = list(best.reasons)
        for v in variants:
            if v is not best:
                reasons.append(f"{v.variant}: {v.verdict.replace('_', ' ')} ({clause_text(v.clause)})")
        return Decision("ship", f"ship {best.variant}", tuple(reasons), "success", best.variant, variants, **common)
    if not variants:
        return Decision("inconclusive", "inconclusive", ("no treatment variant to compare",), "success", None,
                        variants, **common)
    if all(v.verdict == "dont_ship" for v in variants):
        reasons = [r for v in variants for r in v.reasons]
        return Decision("dont_ship", "don't ship", tuple(reasons), "deterioration", None, variants, **common)
    open_ = [v for v in variants if v.verdict == "inconclusive"]
    clause = open_[0].clause
    reasons = []
    for v in variants:
        reasons.extend(v.reasons if len(variants) == 1 else
                       [f"{v.variant}: {v.verdict.replace('_', ' ')} ({clause_text(v.clause)})", *v.reasons])
    return Decision("inconclusive", "inconclusive", tuple(reasons), clause, None, variants, **common)
