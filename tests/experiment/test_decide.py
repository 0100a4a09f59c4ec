"""The one decision rule (experiment/_decide.py) on hand-made rows and on analysed sums: the design gate,
one verdict per variant, Holm over success metrics × variants, guardrail non-inferiority against the
declared margin, deterioration, data quality; adversarial inputs (zeros, ties, one user, 3+ arms)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from battleground.errors import ExperimentError
from battleground.experiment._decide import (
    RULE,
    GuardrailMargin,
    MarginError,
    decide,
    guardrail_power,
    multiple_exposure_check,
    plan_progress,
    srm_check,
)
from battleground.experiment.monitoring import ExperimentInfo, VariantInfo
from battleground.stats import MetricSpec, VariantMetricRow, analyze_metrics, srm_test
from battleground.storage.sums import MetricSums

START = dt.datetime(2022, 3, 1)
NOW = dt.datetime(2022, 4, 1)
NAN = math.nan


def info(arms: tuple[str, ...] = ("a",), *, margins: dict[str, GuardrailMargin] | None = None,
         guardrails: tuple[str, ...] = ("latency",), **kw: Any) -> ExperimentInfo:
    metrics = [MetricSpec("conversion", "proportion", primary=True)]
    metrics += [MetricSpec(g, "mean", higher_is_better=False, guardrail=True) for g in guardrails]
    base: dict[str, Any] = dict(
        id=1, name="e", status="running", description=None, hypothesis=None, owner=None, start_at=START,
        end_at=None, started_at=START,
        variants=(VariantInfo("control", 1 / (len(arms) + 1), True),
                  *(VariantInfo(a, 1 / (len(arms) + 1), False) for a in arms)),
        metrics=tuple(metrics), target_sample_size=1000, guardrail_margins=margins or {},
    )
    base.update(kw)
    return ExperimentInfo(**base)


def row(metric: str, variant: str, rel: float = NAN, p: float = NAN, *, half: float = 0.01, users: int = 1000,
        higher: bool = True, guardrail: bool = False, control: bool = False, events: int = 100,
        method: str = "welch") -> VariantMetricRow:
    """A comparison with relative lift ``rel`` ± ``half`` (control value 1, so absolute = relative)."""
    lo, hi = rel - half, rel + half
    if control:
        rel = lo = hi = p = NAN
    return VariantMetricRow(
        metric=metric, kind="mean", variant=variant, is_control=control, users=users, events=events,
        value=1.0 if control else 1.0 + rel, abs_lift=rel, abs_ci_lower=lo, abs_ci_upper=hi, rel_lift=rel,
        rel_ci_lower=lo, rel_ci_upper=hi, p_value=p, p_value_adjusted=p, method="" if control else method,
        significant=bool(p < 0.05), guardrail=guardrail, guardrail_breach=False, primary=metric == "conversion",
        higher_is_better=higher,
    )


def rows(*treated: VariantMetricRow) -> list[VariantMetricRow]:
    metrics = sorted({(r.metric, r.higher_is_better, r.guardrail) for r in treated})
    out = []
    for m, higher, g in metrics:
        out.append(row(m, "control", control=True, higher=higher, guardrail=g))
        out.extend(r for r in treated if r.metric == m)
    return out


def lat(variant: str, rel: float, p: float, **kw: Any) -> VariantMetricRow:
    return row("latency", variant, rel, p, higher=False, guardrail=True, **kw)


# ------------------------------------------------------------------ the design gate


def test_fixed_horizon_at_75_percent_of_plan_collects_data() -> None:
    r = rows(row("conversion", "a", 0.10, 1e-6, users=750), lat("a", 0.0, 0.9, users=750))
    d = decide(info(), r, now=NOW)
    assert d.verdict == "collecting" and d.headline == "collecting data (75 % of plan)"
    assert d.clause == "design" and d.best is None and d.progress is not None and d.progress.share == 0.75
    # the same numbers at the plan: ship
    full = rows(row("conversion", "a", 0.10, 1e-6), lat("a", 0.0, 0.9))
    assert decide(info(), full, now=NOW).verdict == "ship"


def test_sequential_decides_before_its_plan_and_dates_count() -> None:
    r = rows(row("conversion", "a", 0.10, 1e-6, users=100, method="msprt"), lat("a", 0.0, 0.9, users=100))
    assert decide(info(sequential=True), r, now=NOW).verdict == "ship"
    # no sample target, an end date: progress by time
    mid = info(target_sample_size=None, end_at=START + dt.timedelta(days=10))
    p = plan_progress(mid, {"control": 5, "a": 5}, START + dt.timedelta(days=4))
    assert not p.reached and p.share == pytest.approx(0.4) and p.text == "40 % of plan"
    assert decide(mid, r, now=START + dt.timedelta(days=10)).verdict == "ship"
    # no plan at all: a running fixed-horizon test never decides; stopped, it does
    none = info(target_sample_size=None)
    assert decide(none, r, now=NOW).verdict == "collecting"
    assert "no plan" in decide(none, r, now=NOW).headline
    assert decide(info(target_sample_size=None, status="stopped"), r, now=NOW).verdict == "ship"
    # stopped before its plan: no ship, says why
    early = decide(info(status="stopped", stopped_at=START + dt.timedelta(days=1)), r, now=NOW)
    assert early.verdict == "inconclusive" and "stopped before its plan (10 % of plan)" in early.headline


# ------------------------------------------------------------------ one verdict per variant


def test_three_arms_breach_in_b_does_not_sink_a() -> None:
    r = rows(row("conversion", "a", 0.08, 1e-6), row("conversion", "b", 0.12, 1e-6),
             lat("a", 0.0, 0.9), lat("b", 0.20, 1e-5))
    d = decide(info(("a", "b")), r, now=NOW)
    assert d.verdict == "ship" and d.best == "a" and d.headline == "ship a"
    by = {v.variant: v for v in d.variants}
    assert by["a"].verdict == "ship" and by["b"].verdict == "dont_ship" and by["b"].clause == "deterioration"
    assert any("b: dont ship" in x for x in d.reasons)


def test_best_shippable_variant_by_primary_lift_ties_by_name() -> None:
    r = rows(row("conversion", "a", 0.05, 1e-6), row("conversion", "b", 0.09, 1e-6),
             row("conversion", "c", 0.09, 1e-6), lat("a", 0, 0.9), lat("b", 0, 0.9), lat("c", 0, 0.9))
    assert decide(info(("a", "b", "c")), r, now=NOW).best == "b"


def test_all_variants_harmed_is_dont_ship_and_mixed_is_inconclusive() -> None:
    bad = rows(row("conversion", "a", 0.1, 1e-6), row("conversion", "b", 0.1, 1e-6),
               lat("a", 0.2, 1e-6), lat("b", 0.3, 1e-6))
    d = decide(info(("a", "b")), bad, now=NOW)
    assert d.verdict == "dont_ship" and d.clause == "deterioration" and len(d.reasons) == 2
    mixed = rows(row("conversion", "a", 0.01, 0.5), row("conversion", "b", 0.1, 1e-6),
                 lat("a", 0.0, 0.9), lat("b", 0.3, 1e-6))
    m = decide(info(("a", "b")), mixed, now=NOW)
    assert m.verdict == "inconclusive" and m.best is None and m.clause == "success"


# ------------------------------------------------------------------ the clauses


def test_holm_over_success_metrics_times_variants() -> None:
    # raw p = 0.03 passes α alone but not after Holm over 2 variants × 2 success metrics
    spec = info(("a", "b"), guardrails=())
    spec = ExperimentInfo(**{**spec.__dict__, "metrics": (*spec.metrics, MetricSpec("revenue", "mean"))})
    r = rows(row("conversion", "a", 0.05, 0.03), row("conversion", "b", 0.0, 0.9),
             row("revenue", "a", 0.0, 0.8), row("revenue", "b", 0.0, 0.7))
    d = decide(spec, r, now=NOW)
    v = d.for_row("conversion", "a")
    assert v is not None and v.p_value == 0.03 and v.p_value_adjusted == pytest.approx(0.12)
    assert v.outcome == "not_significant" and not v.significant and d.verdict == "inconclusive"
    assert "p (Holm) = 0.12" in v.text
    # the same p without a correction ships
    assert decide(spec, r, correction="none", now=NOW).verdict == "ship"


def test_guardrail_margin_non_inferiority() -> None:
    margins = {"latency": GuardrailMargin(0.02)}
    # latency (lower is better) +0.5 % ± 1 %: one-sided 95 % bound 0.5 % + 1 %·1.645/1.96 ≈ +1.34 % < 2 %
    ok = decide(info(margins=margins), rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.005, 0.4)), now=NOW)
    v = ok.for_row("latency", "a")
    assert ok.verdict == "ship" and v is not None and v.outcome == "non_inferior"
    assert v.bound == pytest.approx(0.005 + 0.01 * 1.6448536269514722 / 1.959963984540054)
    # +1.5 % ± 1 %: the bound 2.34 % crosses the margin: not shown non-inferior, no ship (underpowered)
    wide = decide(info(margins=margins), rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.015, 0.01)),
                  now=NOW)
    # p = 0.01 with a harmful estimate is a deterioration first
    assert wide.verdict == "dont_ship"
    unsure = decide(info(margins=margins),
                    rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.015, 0.2, half=0.03)), now=NOW)
    u = unsure.for_row("latency", "a")
    assert unsure.verdict == "inconclusive" and unsure.clause == "guardrail"
    assert u is not None and u.outcome == "not_shown_non_inferior" and "more users" in u.text
    # an absolute margin reads the absolute interval
    absm = decide(info(margins={"latency": GuardrailMargin(0.05, relative=False)}),
                  rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.015, 0.2, half=0.03)), now=NOW)
    assert absm.verdict == "ship"


def test_guardrail_without_margin_checks_deterioration_only() -> None:
    d = decide(info(), rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.015, 0.2, half=0.03)), now=NOW)
    v = d.for_row("latency", "a")
    assert d.verdict == "ship" and v is not None and v.outcome == "no_margin_ok"
    assert "no margin, so only deterioration was checked" in " ".join(d.reasons)


def test_all_guardrails_breached() -> None:
    spec = info(guardrails=("latency", "errors"))
    r = rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.2, 1e-6),
             row("errors", "a", 0.3, 1e-6, higher=False, guardrail=True))
    d = decide(spec, r, now=NOW)
    assert d.verdict == "dont_ship" and len(d.variants[0].reasons) == 2


def test_success_metric_worse_is_dont_ship() -> None:
    d = decide(info(), rows(row("conversion", "a", -0.1, 1e-6), lat("a", 0.0, 0.9)), now=NOW)
    assert d.verdict == "dont_ship" and "got significantly worse" in d.reasons[0]


def test_data_quality_overrides_everything() -> None:
    r = rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.0, 0.9))
    srm = srm_test([1000, 800], [0.5, 0.5])
    d = decide(info(), r, data_quality=[srm_check(srm)], now=NOW)
    assert d.verdict == "data_quality" and d.clause == "data_quality" and "srm:" in d.reasons[0]
    multi = multiple_exposure_check(30, 2000)
    assert multi.status == "fail" and multi.value == 0.015
    assert decide(info(), r, data_quality=[multi], now=NOW).verdict == "data_quality"
    few = multiple_exposure_check(1, 2000)
    assert few.status == "warn" and decide(info(), r, data_quality=[few, None], now=NOW).verdict == "ship"
    assert multiple_exposure_check(0, 0).status == "ok"


# ------------------------------------------------------------------ adversarial inputs through the analysis


def _sums(arms: dict[str, tuple[int, float, float]]) -> dict[str, list[MetricSums]]:
    return {"conversion": [MetricSums(v, n, int(s), s, s2) for v, (n, s, s2) in arms.items()]}


def _decide_sums(arms: dict[str, tuple[int, float, float]], **kw: Any) -> Any:
    spec = info(tuple(a for a in arms if a != "control"), guardrails=(), target_sample_size=1, **kw)
    analysed = analyze_metrics(spec.metrics, _sums(arms), control="control")
    return decide(spec, analysed, now=NOW)


def test_zeros_ties_and_one_user_never_ship_and_never_print_nan() -> None:
    for arms in (
        {"control": (400, 0.0, 0.0), "a": (400, 0.0, 0.0)},          # no events at all
        {"control": (400, 40.0, 40.0), "a": (400, 40.0, 40.0)},      # a tie
        {"control": (1, 1.0, 1.0), "a": (1, 0.0, 0.0)},              # one user per arm
        {"control": (400, 0.0, 0.0), "a": (400, 0.0, 0.0), "b": (400, 0.0, 0.0)},
    ):
        d = _decide_sums(arms)
        assert d.verdict == "inconclusive", arms
        text = " ".join([d.headline, *d.reasons, *(m.text for v in d.variants for m in v.metrics)])
        assert "nan" not in text.lower(), text
    empty = _decide_sums({"control": (400, 0.0, 0.0), "a": (400, 0.0, 0.0)})
    assert "conversion in a: no events yet in either arm, not estimable" in empty.reasons
    one = _decide_sums({"control": (1, 1.0, 1.0), "a": (1, 0.0, 0.0)})
    assert any("fewer than 2 users" in r for r in one.reasons)


def test_rule_is_one_sentence_and_power_helper() -> None:
    assert RULE.count(". ") == 0 and RULE.endswith(".")
    assert guardrail_power(0.8, 3) == pytest.approx(0.95)
    d = decide(info(), rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.0, 0.9)), now=NOW)
    assert d.rule == RULE and d.to_dict()["variants"][0]["verdict"] == "ship"


@pytest.mark.parametrize(("margin", "relative", "fix"), [
    (0, True, "> 0"), (-0.01, True, "> 0"), (math.inf, True, "> 0"), ("1%", True, "a number"),
    (1.5, True, "< 1"), (True, True, "a number"), (0.01, "yes", "True or False"),
])
def test_margin_validation_names_the_metric_value_and_fix(margin: Any, relative: Any, fix: str) -> None:
    with pytest.raises(MarginError, match=fix) as err:
        GuardrailMargin.checked("latency", margin, relative)
    assert "latency" in str(err.value) and isinstance(err.value, ExperimentError)
    assert isinstance(err.value, ValueError)


def test_users_needed_for_an_underpowered_guardrail() -> None:
    from statistics import NormalDist

    from battleground.experiment._decide import guardrail_users_needed
    from battleground.experiment.report import needed_text

    margins = {"latency": GuardrailMargin(0.02)}
    spec = info(margins=margins)
    r = rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.015, 0.2, half=0.03))
    d = decide(spec, r, now=NOW)
    assert d.clause == "guardrail"
    nd = NormalDist()
    se = 0.03 / nd.inv_cdf(0.975)
    want = 1000 * ((nd.inv_cdf(0.95) + nd.inv_cdf(0.9)) * se / 0.005) ** 2  # power 1 − 0.2/2 per test
    assert guardrail_users_needed(r[-1], margins["latency"], n_guardrails=1) == pytest.approx(want)
    text = needed_text(spec, r, d, 0.05)
    assert f"about {math.ceil(want):,} users per variant" in text and "90% power each" in text
    beyond = rows(row("conversion", "a", 0.1, 1e-6), lat("a", 0.025, 0.2, half=0.06))
    assert math.isinf(guardrail_users_needed(beyond[-1], margins["latency"]))
    assert "beyond the margin" in needed_text(spec, beyond, decide(spec, beyond, now=NOW), 0.05)


def test_a_holdout_reads_as_the_impact_of_what_shipped_never_as_ship_shipped() -> None:
    def holdout(**kw: Any) -> ExperimentInfo:
        return info(variants=(VariantInfo("holdout", 0.05, True), VariantInfo("shipped", 0.95, False)),
                    kind="holdout", target_sample_size=None, status="stopped", **kw)

    def arm(rel: float, p: float) -> list[VariantMetricRow]:
        return rows(row("conversion", "shipped", rel, p), lat("shipped", 0.0, 0.9))

    better = decide(holdout(), arm(0.10, 1e-6), now=NOW)
    assert better.verdict == "ship" and better.best == "shipped"
    assert better.headline == "what shipped helps: shipped beats the holdout"
    worse = decide(holdout(), arm(-0.10, 1e-6), now=NOW)
    assert worse.verdict == "dont_ship" and worse.headline == "what shipped hurts: shipped is worse than the holdout"
    flat = decide(holdout(), arm(0.0, 0.7), now=NOW)
    assert flat.verdict == "inconclusive" and flat.headline == "no measurable impact of what shipped yet"
    # an ordinary experiment keeps its wording
    assert decide(info(), rows(row("conversion", "a", 0.10, 1e-6), lat("a", 0.0, 0.9)), now=NOW).headline == "ship a"
