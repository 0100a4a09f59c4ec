"""Issue 12: statistics that never declare a winner on undefined numbers, never hang, never clamp
impossible inputs, and stay exact far from zero. Each test failed on the code before the fix."""

from __future__ import annotations

import math

import pytest

from battleground import stats
from battleground.stats import MetricSpec, StatsInputError, analyze_metrics
from battleground.storage.sums import MetricSums


def _binary(variant: str, n: int, k: int) -> MetricSums:
    return MetricSums(variant, n, k, float(k), float(k))


# ------------------------------------------------------------------ 1. sequential stop on noise


def test_sequential_zero_baseline_is_not_significant() -> None:
    sums = {"conv": [_binary("control", 400, 0), _binary("treatment", 400, 1)]}
    (_, trt) = analyze_metrics([MetricSpec("conv", "proportion")], sums, control="control", sequential=True)
    assert trt.method == "msprt" and math.isnan(trt.rel_lift)  # (0.0025 − 0) / 0: undefined
    assert trt.p_value > 0.5 and not trt.significant and not trt.guardrail_breach
    assert math.isfinite(trt.abs_ci_lower) and trt.abs_ci_lower < 0 < trt.abs_ci_upper


def test_sequential_zero_baseline_falls_back_to_the_absolute_scale() -> None:
    # A real effect from a zero baseline is still detected, on the absolute scale with
    # τ = mixing_sd × |pooled mean|.
    sums = {"conv": [_binary("control", 400, 0), _binary("treatment", 400, 120)]}
    (_, trt) = analyze_metrics([MetricSpec("conv", "proportion")], sums, control="control", sequential=True)
    est, se = 0.3, math.sqrt(0.3 * 0.7 / 400)
    ref = stats.msprt(est, se, tau2=(0.1 * 0.15) ** 2)
    assert trt.p_value == pytest.approx(ref.p_value, rel=1e-9) and trt.significant
    assert (trt.abs_ci_lower, trt.abs_ci_upper) == pytest.approx(ref.ci, rel=1e-9)


def test_sequential_three_arms_only_the_undefined_arm_falls_back() -> None:
    sums = {"conv": [_binary("a", 400, 0), _binary("b", 400, 1), _binary("c", 400, 0)]}
    rows = analyze_metrics([MetricSpec("conv", "proportion")], sums, control="a", sequential=True)
    b, c = rows[1], rows[2]
    assert not b.significant and b.p_value > 0.5
    assert math.isnan(c.p_value) and not c.significant  # 0 vs 0: nothing to test
    # previous looks never make an undefined look significant
    again = analyze_metrics([MetricSpec("conv", "proportion")], sums, control="a", sequential=True,
                            previous_p={("conv", "b"): 0.3})
    assert again[1].p_value == 0.3 and not again[1].significant


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_sequential_and_bayes_reject_non_finite_estimates(bad: float) -> None:
    with pytest.raises(StatsInputError, match=r"estimate must be a finite number"):
        stats.msprt(bad, 0.1, tau2=0.01)
    with pytest.raises(StatsInputError, match=r"se must be > 0"):
        stats.msprt(0.1, bad, tau2=0.01)
    with pytest.raises(StatsInputError, match=r"estimates must all be finite"):
        stats.msprt_path([0.1, bad], [0.1, 0.1], tau2=0.01)
    with pytest.raises(StatsInputError, match=r"ses must all be finite and > 0"):
        stats.msprt_path([0.1, 0.1], [0.1, bad], tau2=0.01)
    with pytest.raises(StatsInputError, match=r"estimate must be a finite number"):
        stats.confidence_sequence(bad, 0.1, 1000)
    with pytest.raises(StatsInputError, match=r"se must be > 0"):
        stats.confidence_sequence(0.1, bad, 1000)
    with pytest.raises(StatsInputError, match=r"estimate must be a finite number"):
        stats.bayes_from_estimate(bad, 0.1)
    with pytest.raises(StatsInputError, match=r"se must be > 0"):
        stats.bayes_from_estimate(0.1, bad)
    with pytest.raises(StatsInputError, match=r"prior_mean must be a finite number"):
        stats.bayes_from_estimate(0.1, 0.1, prior_mean=bad, prior_sd=0.3)


def test_msprt_is_never_certain_on_finite_inputs() -> None:
    r = stats.msprt(1e-3, 1e-3, tau2=1e-2)
    assert 0 < r.p_value <= 1 and not r.boundary_crossed
