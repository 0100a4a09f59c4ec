"""Issue 12: statistics that never declare a winner on undefined numbers, never hang, never clamp
impossible inputs, and stay exact far from zero. Each test failed on the code before the fix."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from battleground import stats
from battleground.stats import (
    CupedSummary,
    MeanSummary,
    MetricSpec,
    RatioSummary,
    StatsInputError,
    analyze_metrics,
)
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


@pytest.mark.parametrize("sequential", [False, True])
def test_a_relative_lift_that_overflows_is_treated_as_undefined(sequential: bool) -> None:
    # Control mean 1e-100: (μT − μC)/μC overflows its variance to inf. The row is judged on the
    # absolute scale, exactly like a zero baseline, never on an infinite or NaN statistic.
    rng = np.random.default_rng(5)
    c, t = rng.normal(0, 1, 500) * 1e-100 + 1e-100, rng.normal(0.01, 1, 500)
    sums = {"m": [MetricSums("c", 500, 500, float(c.sum()), float(c @ c)),
                  MetricSums("t", 500, 500, float(t.sum()), float(t @ t))]}
    (_, row) = analyze_metrics([MetricSpec("m")], sums, control="c", sequential=sequential)
    assert math.isnan(row.rel_lift) and math.isfinite(row.p_value) and 0 < row.p_value <= 1
    assert row.significant == (row.p_value < 0.05) and math.isfinite(row.abs_ci_lower)


def test_scalar_relative_lift_near_a_zero_baseline() -> None:
    # μC = 1e-100: μC⁴ underflows to 0 (a ZeroDivisionError before); the lift is huge, so is its SE.
    c, t = MeanSummary(500, 1e-100, 1e-200), MeanSummary(500, 0.01, 1.0)
    r = stats.relative_lift(c, t)
    assert r.estimate == pytest.approx(1e98) and math.isfinite(r.se) and not r.significant
    with pytest.raises(StatsInputError, match=r"relative lift or its standard error is not finite.*relative=False"):
        stats.relative_lift(MeanSummary(500, 1e-300, 1e-300), MeanSummary(500, 1e10, 1.0))


def test_msprt_is_never_certain_on_finite_inputs() -> None:
    r = stats.msprt(1e-3, 1e-3, tau2=1e-2)
    assert 0 < r.p_value <= 1 and not r.boundary_crossed


# ------------------------------------------------------------------ 3. impossible inputs raise


def test_impossible_sum_of_squares_raises_naming_the_field() -> None:
    with pytest.raises(StatsInputError, match=r"sum_x2=50.0 is below sum_x\*\*2/n = 100.0"):
        MeanSummary.from_sums(100, 100.0, 50.0)
    with pytest.raises(StatsInputError, match=r"sum_x2 must be >= 0, got -1.0"):
        MeanSummary.from_sums(100, 0.0, -1.0)
    with pytest.raises(StatsInputError, match=r"control: sum_x2=50.0 is below"):
        stats.t_test(MetricSums("c", 100, 100, 100.0, 50.0), MetricSums("t", 100, 100, 100.0, 150.0))
    with pytest.raises(StatsInputError, match=r"metric 'rev', variant 't': sum_x2=50.0 is below"):
        analyze_metrics([MetricSpec("rev")], {"rev": [MetricSums("c", 100, 100, 100.0, 150.0),
                                                      MetricSums("t", 100, 100, 100.0, 50.0)]}, control="c")


def test_rounding_below_zero_is_clamped_not_raised() -> None:
    # Every user has 0.1: Σx² − (Σx)²/n is 0 up to rounding (here −1.7e-18 relative).
    s = MeanSummary.from_sums(3, 0.1 + 0.1 + 0.1, 0.01 + 0.01 + 0.01 - 1e-17)
    assert s.var == 0.0 and s.mean == pytest.approx(0.1)


def test_negative_variance_is_called_negative() -> None:
    with pytest.raises(StatsInputError, match=r"var must be >= 0, got -1.0; a variance cannot be negative"):
        MeanSummary(n=100, mean=1.0, var=-1.0)
    with pytest.raises(StatsInputError, match=r"n must be >= 0"):
        MeanSummary(n=-5, mean=1.0, var=1.0)


def test_cuped_impossible_sums_raise() -> None:
    good = CupedSummary.from_arrays([1.0, 2.0, 4.0, 3.0], [1.0, 1.5, 3.0, 2.0])
    neg = CupedSummary(n=4, sum_y=10.0, sum_y2=-3.0, sum_x=7.5, sum_x2=16.25, sum_xy=21.5)
    with pytest.raises(StatsInputError, match=r"treatment: sum_y2 must be >= 0, got -3.0"):
        stats.cuped_test(good, neg)
    small = CupedSummary(n=4, sum_y=10.0, sum_y2=20.0, sum_x=7.5, sum_x2=16.25, sum_xy=21.5)
    with pytest.raises(StatsInputError, match=r"control: sum_y2=20.0 is below sum_y\*\*2/n = 25.0"):
        stats.cuped_test(small, good)
    cross = CupedSummary(n=4, sum_y=10.0, sum_y2=30.0, sum_x=7.5, sum_x2=16.25, sum_xy=100.0)
    with pytest.raises(StatsInputError, match=r"control: sum_xy=100.0 is impossible"):
        stats.cuped_test(cross, good)
    with pytest.raises(StatsInputError, match=r"control: sum_c2=1.0 is below sum_c\*\*2/n"):
        stats.cuped_test(MetricSums("c", 4, 4, 10.0, 30.0, sum_c=7.5, sum_c2=1.0, sum_xc=21.5), good)


def test_ratio_impossible_sums_raise() -> None:
    good = RatioSummary.from_arrays([1, 0, 2, 1], [10, 5, 10, 8])
    bad = RatioSummary(n=4, sum_m=4.0, sum_d=33.0, sum_m2=6.0, sum_d2=100.0, sum_md=37.0)
    with pytest.raises(StatsInputError, match=r"treatment: sum_d2=100.0 is below sum_d\*\*2/n"):
        stats.ratio_test(good, bad)
    cross = RatioSummary(n=4, sum_m=4.0, sum_d=33.0, sum_m2=6.0, sum_d2=289.0, sum_md=90.0)
    with pytest.raises(StatsInputError, match=r"control: sum_md=90.0 is impossible"):
        stats.ratio_test(cross, good)


# ------------------------------------------------------------------ 4. precision: sums around a shift


def _far_from_zero(n: int = 1000, mean: float = 1e8, seed: int = 0) -> np.ndarray:
    x = mean + np.random.default_rng(seed).normal(0.0, 1.0, n)
    return x  # x − mean is exact (Sterbenz), so np.var(x − mean) is the exact variance of x


def test_shifted_sums_give_the_variance_to_1e_9() -> None:
    x = _far_from_zero()
    exact = float(np.var(x - 1e8, ddof=1))
    raw = MeanSummary.from_sums(x.size, float(x.sum()), float(x @ x))
    assert abs(raw.var - exact) / exact > 1e-3  # raw sums at mean/sd = 1e8: the variance is lost
    for shift in (1e8, 1e8 + 3.0, float(x[0])):  # a pilot mean need not be the mean
        d = x - shift
        s = MeanSummary.from_sums(x.size, float(d.sum()), float(d @ d), shift=shift)
        assert s.var == pytest.approx(exact, rel=1e-9) and s.mean == pytest.approx(x.mean(), rel=1e-15)


def test_shifted_metric_sums_reach_the_tests_and_analyze_metrics() -> None:
    xc, xt = _far_from_zero(seed=1), _far_from_zero(seed=2) + 0.1
    dc, dt_ = xc - 1e8, xt - 1e8

    def ms(variant: str, d: np.ndarray) -> SimpleNamespace:
        return SimpleNamespace(variant=variant, users=d.size, events=d.size, sum_x=float(d.sum()),
                               sum_x2=float(d @ d), sum_y=0.0, sum_y2=0.0, sum_xy=0.0, sum_c=0.0,
                               sum_c2=0.0, sum_xc=0.0, shift_x=1e8)

    ref = stats.t_test(dc, dt_)  # the same test on the centred values
    got = stats.t_test(ms("c", dc), ms("t", dt_))
    assert got.se == pytest.approx(ref.se, rel=1e-9) and got.df == pytest.approx(ref.df, rel=1e-9)
    # The means themselves are only known to one ulp of 1e8 (1.5e-8), so is their difference.
    assert got.estimate == pytest.approx(ref.estimate, abs=3e-8)
    assert got.p_value == pytest.approx(ref.p_value, rel=1e-6)
    assert got.control_mean == pytest.approx(xc.mean(), rel=1e-15)
    rows = analyze_metrics([MetricSpec("m")], {"m": [ms("c", dc), ms("t", dt_)]}, control="c")
    assert rows[1].p_value == pytest.approx(ref.p_value, rel=1e-6)
    assert rows[1].abs_lift == pytest.approx(ref.estimate, abs=3e-8)
    assert rows[1].value == pytest.approx(xt.mean(), rel=1e-15)


def test_shifted_ratio_and_cuped_sums() -> None:
    rng = np.random.default_rng(7)
    n = 500
    m, d = 1e8 + rng.normal(0, 1, n), 2e8 + rng.normal(0, 1, n)
    mc, dc = m - 1e8, d - 2e8
    s = RatioSummary(n=n, sum_m=float(mc.sum()), sum_d=float(dc.sum()), sum_m2=float(mc @ mc),
                     sum_d2=float(dc @ dc), sum_md=float(mc @ dc), shift_m=1e8, shift_d=2e8)
    r = m.sum() / d.sum()
    cov = np.cov(mc, dc, ddof=1)
    exact = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * d.mean() ** 2)
    assert s.ratio == pytest.approx(r, rel=1e-15) and s.var_ratio() == pytest.approx(exact, rel=1e-9)
    y_c, y_t = 1e8 + rng.normal(0, 1, n), 1e8 + 0.2 + rng.normal(0, 1, n)
    x_c, x_t = 5e7 + 0.8 * (y_c - 1e8) + rng.normal(0, 0.5, n), 5e7 + 0.8 * (y_t - 1e8 - 0.2) + rng.normal(0, 0.5, n)

    def cs(y: np.ndarray, x: np.ndarray) -> CupedSummary:
        a, b = y - 1e8, x - 5e7
        return CupedSummary(n=n, sum_y=float(a.sum()), sum_y2=float(a @ a), sum_x=float(b.sum()),
                            sum_x2=float(b @ b), sum_xy=float(a @ b), shift_y=1e8, shift_x=5e7)

    got = stats.cuped_test(cs(y_c, x_c), cs(y_t, x_t))
    ref = stats.cuped_test((y_c - 1e8, x_c - 5e7), (y_t - 1e8, x_t - 5e7))
    for field in ("se", "theta", "variance_reduction", "df"):
        assert getattr(got, field) == pytest.approx(getattr(ref, field), rel=1e-9), field
    assert got.estimate == pytest.approx(ref.estimate, abs=3e-8)  # one ulp of 1e8, as above
    assert got.p_value == pytest.approx(ref.p_value, rel=1e-6)
    assert got.control_mean == pytest.approx(y_c.mean(), rel=1e-15)
