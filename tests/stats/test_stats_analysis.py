"""Vectorised whole-experiment analysis agrees with the scalar tests; decisions follow the rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from battleground import stats
from battleground.stats import MetricSpec, analyze_metrics
from battleground.storage.sums import MetricSums


def _binary(variant: str, n: int, k: int) -> MetricSums:
    return MetricSums(variant, n, k, float(k), float(k))


def _values(variant: str, x: np.ndarray) -> MetricSums:
    return MetricSums(variant, x.size, x.size, float(x.sum()), float(x @ x))


def _ratio(variant: str, m: np.ndarray, d: np.ndarray) -> MetricSums:
    return MetricSums(
        variant, m.size, int(m.sum()), float(m.sum()), float(m @ m), float(d.sum()), float(d @ d),
        float(m @ d),
    )


@pytest.fixture
def experiment() -> tuple[list[MetricSpec], dict[str, list[MetricSums]]]:
    rng = np.random.default_rng(3)
    rev_c, rev_t = rng.gamma(2.0, 5.0, 4000), rng.gamma(2.0, 5.3, 4100)
    imp_c, imp_t = rng.poisson(20, 4000) + 1, rng.poisson(20, 4100) + 1
    clk_c, clk_t = rng.binomial(imp_c, 0.05), rng.binomial(imp_t, 0.05)
    specs = [
        MetricSpec("conversion", "proportion", primary=True),
        MetricSpec("revenue", "mean"),
        MetricSpec("ctr", "ratio"),
        MetricSpec("latency", "mean", higher_is_better=False, guardrail=True),
    ]
    lat_c, lat_t = rng.normal(100, 10, 4000), rng.normal(103, 10, 4100)
    sums = {
        "conversion": [_binary("control", 4000, 400), _binary("treatment", 4100, 480)],
        "revenue": [_values("control", rev_c), _values("treatment", rev_t)],
        "ctr": [_ratio("control", clk_c, imp_c), _ratio("treatment", clk_t, imp_t)],
        "latency": [_values("treatment", lat_t), _values("control", lat_c)],
    }
    return specs, sums


def test_rows_match_scalar_functions(experiment) -> None:  # type: ignore[no-untyped-def]
    specs, sums = experiment
    rows = analyze_metrics(specs, sums, control="control")
    assert [(r.metric, r.variant) for r in rows] == [
        (m, v) for m in ("conversion", "revenue", "ctr", "latency") for v in ("control", "treatment")
    ]
    by = {(r.metric, r.variant): r for r in rows}
    conv = by["conversion", "treatment"]
    ref = stats.compare_means((400, 4000), (480, 4100), proportion=True)
    ref_rel = stats.compare_means((400, 4000), (480, 4100), proportion=True, relative=True)
    assert conv.abs_lift == pytest.approx(ref.estimate, rel=1e-12)
    assert conv.p_value == pytest.approx(ref.p_value, rel=1e-9)
    assert (conv.abs_ci_lower, conv.abs_ci_upper) == pytest.approx(ref.ci, rel=1e-9)
    assert (conv.rel_ci_lower, conv.rel_ci_upper) == pytest.approx(ref_rel.ci, rel=1e-9)
    ctr = by["ctr", "treatment"]
    rref = stats.ratio_test(sums["ctr"][0], sums["ctr"][1])
    assert ctr.value == pytest.approx(rref.treatment_mean) and ctr.p_value == pytest.approx(rref.p_value, rel=1e-9)
    rev = by["revenue", "treatment"]
    mref = stats.welch_t_test(sums["revenue"][0], sums["revenue"][1])
    assert rev.p_value == pytest.approx(mref.p_value, rel=1e-9)
    # Holm across the four treatment comparisons.
    p = [by[m, "treatment"].p_value for m in ("conversion", "revenue", "ctr", "latency")]
    holm = stats.adjust_pvalues(p, method="holm").adjusted
    assert [by[m, "treatment"].p_value_adjusted for m in ("conversion", "revenue", "ctr", "latency")] == pytest.approx(holm)
    ctrl = by["conversion", "control"]
    assert ctrl.is_control and ctrl.value == 0.1 and math.isnan(ctrl.p_value)
    # Latency (lower is better) rose by ~3 %: a guardrail breach (the verdict: tests/experiment/test_decide.py).
    assert by["latency", "treatment"].guardrail_breach


def test_sequential_rows_match_msprt(experiment) -> None:  # type: ignore[no-untyped-def]
    specs, sums = experiment
    rows = analyze_metrics(specs, sums, control="control", sequential=True, mixing_sd=0.1)
    conv = next(r for r in rows if r.metric == "conversion" and not r.is_control)
    rel = stats.compare_means((400, 4000), (480, 4100), proportion=True, relative=True)
    m = stats.msprt(rel.estimate, rel.se, tau2=0.01)
    assert conv.method == "msprt" and conv.p_value == pytest.approx(m.p_value, rel=1e-9)
    assert (conv.rel_ci_lower, conv.rel_ci_upper) == pytest.approx(m.ci, rel=1e-9)
    again = analyze_metrics(
        specs, sums, control="control", sequential=True, previous_p={("conversion", "treatment"): 1e-4}
    )
    assert next(r for r in again if r.metric == "conversion" and not r.is_control).p_value == 1e-4


def test_missing_control_and_bad_kind() -> None:
    with pytest.raises(stats.StatsInputError, match="no sums for the control variant 'ctl'"):
        analyze_metrics([MetricSpec("m")], {"m": [_binary("a", 10, 1)]}, control="ctl")
    with pytest.raises(stats.StatsInputError, match="kind of metric 'm' must be one of"):
        analyze_metrics([MetricSpec("m", "median")], {"m": [_binary("a", 10, 1)]}, control="a")


def test_empty_arm_gives_nan_not_crash() -> None:
    rows = analyze_metrics(
        [MetricSpec("m", "proportion")], {"m": [_binary("a", 100, 10), _binary("b", 1, 0)]}, control="a"
    )
    assert math.isnan(rows[1].p_value) and not rows[1].significant


# ------------------------------------------------------------------ issue 12: significant agrees with its p


def _three_arms_four_metrics() -> tuple[list[MetricSpec], dict[str, list[MetricSums]]]:
    rng = np.random.default_rng(12)
    specs = [
        MetricSpec("conversion", "proportion", primary=True),
        MetricSpec("revenue", "mean"),
        MetricSpec("ctr", "ratio"),
        MetricSpec("latency", "mean", higher_is_better=False, guardrail=True),
    ]
    sums: dict[str, list[MetricSums]] = {m.name: [] for m in specs}
    for arm, (conv, rev, lat) in {"a": (400, 5.0, 100.0), "b": (445, 5.25, 100.6), "c": (470, 5.0, 101.5),
                                  "d": (400, 5.0, 100.0)}.items():
        sums["conversion"].append(_binary(arm, 4000, conv))
        sums["revenue"].append(_values(arm, rng.gamma(2.0, rev / 2.0, 4000)))
        imp = rng.poisson(20, 4000) + 1
        sums["ctr"].append(_ratio(arm, rng.binomial(imp, 0.05), imp))
        sums["latency"].append(_values(arm, rng.normal(lat, 10, 4000)))
    return specs, sums


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("significant_by", ["p_value", "p_value_adjusted"])
def test_significant_is_the_named_p_below_alpha(sequential: bool, significant_by: str) -> None:
    specs, sums = _three_arms_four_metrics()
    rows = analyze_metrics(specs, sums, control="a", sequential=sequential, significant_by=significant_by)
    treated = [r for r in rows if not r.is_control]
    assert len(treated) == 12 and all(r.significant_by == significant_by for r in rows)
    for r in treated:
        p = getattr(r, r.significant_by)
        assert r.significant == (math.isfinite(p) and p < 0.05), (r.metric, r.variant)
        harmful = (r.abs_lift < 0) if r.higher_is_better else (r.abs_lift > 0)
        assert r.guardrail_breach == (r.guardrail and r.significant and harmful)
    # The two choices disagree somewhere here (raw p < 0.05 < Holm-adjusted p), so the label matters.
    if not sequential:
        between = [r for r in treated if r.p_value < 0.05 <= r.p_value_adjusted]
        assert between, [(r.metric, r.variant, r.p_value, r.p_value_adjusted) for r in treated]


def test_significant_by_is_checked() -> None:
    specs, sums = _three_arms_four_metrics()
    with pytest.raises(stats.StatsInputError, match="significant_by must be one of"):
        analyze_metrics(specs, sums, control="a", significant_by="adjusted")
