"""Quantile metrics (issue 17): gbstats' own quantile cases, the sample quantile and its bounds against
numpy, A/A calibration by simulation (fixed horizon and mSPRT under daily peeking) and the inputs that
break a verdict (ties, all-zero values, one user per arm, 3 arms)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from battleground.stats import (
    MetricSpec,
    StatsInputError,
    analyze_metrics,
    bayes_from_estimate,
    quantile_bound_levels,
    quantile_test,
    quantile_variance,
)
from battleground.storage.sums import QuantileSums

# gbstats tests/bayesian/test_tests.py::TestEffectBayesianABTest and tests/test_shared_models.py: p90
NU, N_C, N_T = 0.9, 11054, 10861
GB_C = QuantileSums("control", N_C, 0, NU, 7.157987489967789, 7.098780136176828, 7.217194843758751, N_C)
GB_T = QuantileSums("treatment", N_T, 0, NU, 7.694499927525767, 7.64180598628119, 7.747193868770344, N_T)


def _stat(n: int, lower: float, upper: float) -> QuantileSums:
    """gbstats' TestQuantileStatisticZeroVariance.make_stat."""
    return QuantileSums("arm", n, 0, 0.9, 5.0, lower, upper, n)


def test_gb_bayesian_effect_improper_flat_prior_is_the_frequentist_interval() -> None:
    # an improper flat prior leaves the normal likelihood: gbstats' expected and ci, to the last digits
    r = quantile_test(GB_C, GB_T)
    assert r.estimate == pytest.approx(0.5365124375579775, abs=1e-15)
    assert r.ci == pytest.approx((0.4572559589115422, 0.6157689162044128), abs=1e-14)
    assert r.method == "z" and r.p_value < 1e-30


@pytest.mark.parametrize(("relative", "prior_sd", "expected", "ci"), [
    (False, 1e3, 0.536512437540855, (0.4572559588956844, 0.6157689161860256)),  # flat: variance 1e6
    (True, 1e3, 0.07495297222736319, (0.06341005842481906, 0.08649588602990732)),
    (False, 1.0, 0.536495315442269, (0.4572401014910488, 0.6157505293934892)),  # informative: variance 1
    (True, 1.0, 0.07495037261804469, (0.06340765898986044, 0.08649308624622894)),
])
def test_gb_bayesian_effect_proper_priors(relative: bool, prior_sd: float, expected: float,
                                          ci: tuple[float, float]) -> None:
    r = quantile_test(GB_C, GB_T, relative=relative)
    # gbstats' priors are on the relative scale: an absolute effect's prior sd is scaled by |q̂_C|
    scale = 1.0 if relative else abs(GB_C.quantile)
    b = bayes_from_estimate(r.estimate, r.se, relative=relative, prior_sd=prior_sd * scale)
    assert b.estimate == pytest.approx(expected, abs=1e-12)
    assert (b.ci_lower, b.ci_upper) == pytest.approx(ci, abs=1e-12)


def test_gb_bayesian_effect_risk_matches_simulation() -> None:
    # bounds ±1 around each quantile: gbstats checks the risk against 1e7 normal draws to 3 decimals
    c = QuantileSums("c", N_C, 0, NU, GB_C.quantile, GB_C.quantile - 1, GB_C.quantile + 1, N_C)
    t = QuantileSums("t", N_T, 0, NU, GB_T.quantile, GB_T.quantile - 1, GB_T.quantile + 1, N_T)
    r = quantile_test(c, t)
    b = bayes_from_estimate(r.estimate, r.se, prior_sd=1e3)
    y = b.posterior_sd * np.random.default_rng(20240329).normal(size=2_000_000) + b.estimate
    assert b.risk_control == pytest.approx(np.mean(np.where(y > 0, y, 0.0)), abs=5e-4)
    assert b.risk_treatment == pytest.approx(np.mean(np.where(y < 0, -y, 0.0)), abs=5e-4)


@pytest.mark.parametrize(("n", "lower", "upper", "zero"), [
    (60_000_000, 5.0, 5.0, True),  # collapsed bounds at very high n
    (999, 5.0, 5.0, True),  # collapsed bounds at small n
    (60_000_000, 4.99, 5.01, False),  # distinct bounds
])
def test_gb_zero_variance(n: int, lower: float, upper: float, zero: bool) -> None:
    assert (quantile_variance(_stat(n, lower, upper)) == 0.0) is zero


def test_gb_collapsed_bounds_give_the_zero_variance_error() -> None:
    with pytest.raises(StatsInputError, match="no usable variance"):
        quantile_test(_stat(60_000_000, 5.0, 5.0), _stat(60_000_000, 4.99, 5.01))


def test_variance_is_gbstats_formula_and_too_few_units_have_none() -> None:
    z = 1.959963984540054
    want = (N_C - 1) / N_C * ((GB_C.upper - GB_C.lower) / (2 * z)) ** 2  # variance_init / n
    assert quantile_variance(GB_C) == pytest.approx(want, rel=1e-15)
    # n ≤ z²ν/(1−ν) = 34.6 for p90: a bound level would pass 1
    assert quantile_variance(QuantileSums("a", 34, 0, 0.9, 1.0, 0.5, 2.0, 34)) == 0.0
    assert quantile_variance(QuantileSums("a", 35, 0, 0.9, 1.0, 0.5, 2.0, 35)) > 0.0
    assert quantile_variance(QuantileSums("a", 35, 0, 0.1, 1.0, 0.5, 2.0, 35)) > 0.0
    assert quantile_variance(QuantileSums("a", 34, 0, 0.1, 1.0, 0.5, 2.0, 34)) == 0.0


@pytest.mark.parametrize("nu", [0.5, 0.9, 0.99])
def test_bounds_are_numpys_quantiles_at_the_bound_levels(nu: float) -> None:
    rng = np.random.default_rng(7)
    x = rng.lognormal(3.0, 1.0, size=4_000)
    lo, hi = quantile_bound_levels(nu, len(x))
    assert (lo, hi) == pytest.approx((nu - 1.959963984540054 * math.sqrt(nu * (1 - nu) / 4000),
                                      nu + 1.959963984540054 * math.sqrt(nu * (1 - nu) / 4000)), abs=1e-15)
    # the interval of order statistics covers the true quantile of the lognormal at its nominal rate
    q, ql, qu = np.quantile(x, [nu, lo, hi])
    assert ql <= q <= qu
    assert quantile_bound_levels(0.999, 10) == (pytest.approx(0.999 - 1.96 * math.sqrt(0.999 * 0.001 / 10), abs=1e-3),
                                                1 - 1e-8)


def _arms(x: np.ndarray, nu: float, variant: str) -> list[QuantileSums]:
    """One QuantileSums per row of ``x`` (experiments × users), by numpy's quantile (the scan's rule)."""
    n = x.shape[1]
    lo, hi = quantile_bound_levels(nu, n)
    q = np.quantile(x, [nu, lo, hi], axis=1)
    return [QuantileSums(variant, n, n, nu, float(a), float(b), float(c), n) for a, b, c in q.T]


def _false_positive_rate(sims: int, users: int, nu: float, seed: int, *, sequential: bool = False,
                         looks: int = 1) -> float:
    """The share of seeded A/A experiments whose quantile row is significant (any look for mSPRT)."""
    rng = np.random.default_rng(seed)
    c = rng.lognormal(2.0, 0.8, size=(sims, users))
    t = rng.lognormal(2.0, 0.8, size=(sims, users))
    specs = [MetricSpec(f"m{i}", kind="quantile", quantile=nu) for i in range(sims)]
    hit = np.zeros(sims, dtype=bool)
    for k in range(1, looks + 1):
        n = users * k // looks
        sums = {s.name: [a, b] for s, a, b in zip(specs, _arms(c[:, :n], nu, "control"),
                                                    _arms(t[:, :n], nu, "treatment"), strict=True)}
        rows = analyze_metrics(specs, sums, control="control", correction="none", sequential=sequential)
        p = np.array([r.p_value for r in rows if not r.is_control])
        hit |= p < 0.05
    return float(hit.mean())


@pytest.mark.parametrize("nu", [0.5, 0.9])
def test_aa_false_positive_rate_is_nominal(nu: float) -> None:
    # 2,000 seeded A/A experiments of 2,000 users per arm, fixed horizon
    fpr = _false_positive_rate(2_000, 2_000, nu, seed=17 + int(100 * nu))
    assert 0.04 <= fpr <= 0.06, fpr


def test_aa_msprt_under_daily_peeking_stays_below_alpha() -> None:
    # 2,000 A/A experiments, 10 daily looks each: the always-valid p never crosses 5 % more often
    fpr = _false_positive_rate(2_000, 1_000, 0.9, seed=3, sequential=True, looks=10)
    assert fpr <= 0.05, fpr


def test_analyze_metrics_agrees_with_quantile_test_on_both_scales() -> None:
    spec = MetricSpec("p90", kind="quantile", quantile=NU)
    rows = analyze_metrics([spec], {"p90": [GB_C, GB_T]}, control="control")
    t = rows[1]
    a, r = quantile_test(GB_C, GB_T), quantile_test(GB_C, GB_T, relative=True)
    assert (t.abs_lift, t.abs_ci_lower, t.abs_ci_upper) == pytest.approx((a.estimate, a.ci_lower, a.ci_upper), rel=1e-12)
    assert (t.rel_lift, t.rel_ci_lower, t.rel_ci_upper) == pytest.approx((r.estimate, r.ci_lower, r.ci_upper), rel=1e-12)
    assert t.p_value == pytest.approx(a.p_value, rel=1e-9) and t.method == "z" and rows[0].value == GB_C.quantile
    seq = analyze_metrics([spec], {"p90": [GB_C, GB_T]}, control="control", sequential=True)[1]
    s = quantile_test(GB_C, GB_T, relative=True, sequential=True)
    assert seq.method == "msprt" and (seq.rel_ci_lower, seq.rel_ci_upper, seq.p_value) == pytest.approx(
        (s.ci_lower, s.ci_upper, s.p_value), rel=1e-12)
    assert s.tau2 == pytest.approx(0.01) and s.ci_lower < r.ci_lower  # always valid: wider


def test_all_zero_values_and_ties_have_no_test() -> None:
    zeros = _arms(np.zeros((1, 500)), 0.5, "control")[0]
    assert (zeros.lower, zeros.quantile, zeros.upper) == (0.0, 0.0, 0.0) and quantile_variance(zeros) == 0.0
    other = _arms(np.random.default_rng(1).normal(size=(1, 500)), 0.5, "treatment")[0]
    with pytest.raises(StatsInputError, match="no usable variance"):
        quantile_test(zeros, other)
    rows = analyze_metrics([MetricSpec("m", kind="quantile", quantile=0.5)], {"m": [zeros, other]}, control="control")
    assert math.isnan(rows[1].p_value) and not rows[1].significant
    # heavy ties that do not cover the bounds still give a test: the bounds differ
    ties = np.random.default_rng(2).integers(0, 20, size=(1, 2_000)).astype(float)
    tc, tt = _arms(ties, 0.5, "control")[0], _arms(ties + 1.0, 0.5, "treatment")[0]
    assert tc.quantile == float(np.quantile(ties, 0.5)) and tc.upper > tc.lower
    r = quantile_test(tc, tt)
    assert r.estimate == 1.0 and r.p_value < 0.05


def test_one_user_per_arm_and_an_empty_arm_are_not_estimable() -> None:
    one_c, one_t = QuantileSums("control", 1, 1, 0.9, 3.0, 3.0, 3.0, 1), QuantileSums("treatment", 1, 1, 0.9, 4.0, 4.0, 4.0, 1)
    rows = analyze_metrics([MetricSpec("m", kind="quantile", quantile=0.9)], {"m": [one_c, one_t]}, control="control")
    assert [math.isnan(r.value) for r in rows] == [True, True] and math.isnan(rows[1].p_value)
    with pytest.raises(StatsInputError, match="no usable variance"):
        quantile_test(one_c, one_t)
    empty = QuantileSums("treatment", 0, 0, 0.9, math.nan, math.nan, math.nan, 0)
    with pytest.raises(StatsInputError):
        quantile_test(GB_C, empty)


def test_three_arms_give_one_row_per_treatment_with_holm() -> None:
    rng = np.random.default_rng(11)
    x = rng.lognormal(2.0, 0.5, size=(3, 3_000)) * np.array([[1.0], [1.0], [1.15]])
    arms = [_arms(x[i:i + 1], 0.9, v)[0] for i, v in enumerate(("control", "same", "better"))]
    rows = analyze_metrics([MetricSpec("p90", kind="quantile", quantile=0.9)], {"p90": arms}, control="control")
    by = {r.variant: r for r in rows}
    assert [r.variant for r in rows] == ["control", "same", "better"]
    assert by["better"].significant and by["better"].rel_lift == pytest.approx(arms[2].quantile / arms[0].quantile - 1)
    assert not by["same"].significant
    assert by["better"].p_value_adjusted == pytest.approx(min(1.0, 2 * min(by["better"].p_value, by["same"].p_value)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"relative": True}, "relative effect is undefined"),
])
def test_relative_effect_of_a_zero_control_quantile_is_refused(kwargs: dict[str, bool], match: str) -> None:
    c = QuantileSums("c", 1000, 0, 0.5, 0.0, -0.1, 0.1, 1000)
    with pytest.raises(StatsInputError, match=match):
        quantile_test(c, GB_T.__class__("t", 1000, 0, 0.5, 1.0, 0.9, 1.1, 1000), **kwargs)


def test_mismatched_levels_and_bad_bounds_are_refused() -> None:
    with pytest.raises(StatsInputError, match="different quantiles"):
        quantile_test(GB_C, QuantileSums("t", N_T, 0, 0.5, 1.0, 0.9, 1.1, N_T))
    with pytest.raises(StatsInputError, match="below lower bound"):
        quantile_variance(QuantileSums("t", 100, 0, 0.5, 1.0, 1.2, 0.8, 100))
    with pytest.raises(StatsInputError, match=r"in \(0, 1\)"):
        quantile_bound_levels(90, 100)
