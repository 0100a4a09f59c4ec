"""CUPED++ / regression adjustment with several covariates (``battleground.stats.regression_adjusted_test``,
issue 17): against a pooled OLS fit of the same covariates, against one-covariate CUPED, calibrated by an
A/A simulation, and on the inputs that break it (constant and collinear covariates, one user per arm,
3+ arms, tiny samples)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from battleground.stats import (
    CovariateSummary,
    StatsInputError,
    compare_means,
    cuped_test,
    regression_adjusted_test,
)


def _arms(seed: int = 7, sizes: tuple[int, ...] = (400, 380, 420), p: int = 4,
          lifts: tuple[float, ...] = (0.0, 0.3, -0.2)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    beta = np.array([1.5, -0.7, 0.4, 0.0, 0.2, 0.1][:p])
    ys, xs = [], []
    for n, lift in zip(sizes, lifts, strict=True):
        x = rng.gamma(2.0, 1.5, size=(n, p)) + rng.normal(size=(n, 1))  # correlated, skewed covariates
        ys.append(10.0 + x @ beta + rng.standard_t(5, size=n) * 2.0 + lift)
        xs.append(x)
    return ys, xs


def _summaries(ys: list[np.ndarray], xs: list[np.ndarray]) -> list[CovariateSummary]:
    return [CovariateSummary.from_arrays(y, x, name=f"v{i}") for i, (y, x) in enumerate(zip(ys, xs, strict=True))]


def _pooled_ols(ys: list[np.ndarray], xs: list[np.ndarray]) -> np.ndarray:
    """θ of the pooled OLS fit y ~ 1 + x over every arm's users (no treatment indicator): statsmodels'
    OLS when it is installed, else the same least-squares problem solved by numpy."""
    y = np.concatenate(ys)
    design = np.column_stack([np.ones(len(y)), np.concatenate(xs)])
    try:
        import statsmodels.api as sm
    except ImportError:
        params = np.linalg.lstsq(design, y, rcond=None)[0]
    else:
        params = np.asarray(sm.OLS(y, design).fit().params)
    return np.asarray(params[1:])


def test_matches_the_pooled_ols_regression_to_1e9() -> None:
    """With ridge 0 the effect is the difference of the arms' mean OLS residuals and its SE the Welch SE
    of those residuals, for every treatment of a 3-arm test."""
    ys, xs = _arms()
    theta = _pooled_ols(ys, xs)
    resid = [y - x @ theta for y, x in zip(ys, xs, strict=True)]
    r = regression_adjusted_test(_summaries(ys, xs), control="v0", ridge=0.0)
    assert r.fallback == "" and r.variants == ("v1", "v2") and r.used == r.covariates
    assert np.allclose(r.theta, theta, rtol=1e-9, atol=1e-12)
    for i in (1, 2):
        c = r.comparison(f"v{i}")
        want = resid[i].mean() - resid[0].mean()
        se = math.sqrt(resid[i].var(ddof=1) / len(resid[i]) + resid[0].var(ddof=1) / len(resid[0]))
        assert c.estimate == pytest.approx(want, rel=1e-9)
        assert c.se == pytest.approx(se, rel=1e-9)
        assert c.metric == "cuped++" and c.method == "welch"
        # the covariates explain much of y: a real reduction, reported
        plain = compare_means(ys[0], ys[i])
        assert c.variance_reduction == pytest.approx(1 - c.se**2 / plain.se**2, rel=1e-9)
        assert c.variance_reduction > 0.5
    y = np.concatenate(ys)
    fitted = np.concatenate(resid)
    assert r.r2 == pytest.approx(1 - ((fitted - fitted.mean()) ** 2).sum() / ((y - y.mean()) ** 2).sum(), rel=1e-9)


@pytest.mark.parametrize("relative", [False, True])
def test_one_covariate_is_cuped(relative: bool) -> None:
    ys, xs = _arms(seed=3, sizes=(300, 310), p=1, lifts=(0.0, 0.4))
    r = regression_adjusted_test(_summaries(ys, xs), ridge=0.0, relative=relative).comparisons[0]
    want = cuped_test((ys[0], xs[0][:, 0]), (ys[1], xs[1][:, 0]), relative=relative)
    for field in ("estimate", "se", "p_value", "ci_lower", "ci_upper", "df"):
        assert getattr(r, field) == pytest.approx(getattr(want, field), rel=1e-10), field
    if not relative:  # ρ² of the pooled data, up to the arms' own weights
        assert r.variance_reduction == pytest.approx(1 - r.se**2 / compare_means(ys[0], ys[1]).se**2, rel=1e-12)
        assert r.variance_reduction == pytest.approx(want.variance_reduction, abs=0.02)


def test_shifted_sums_give_the_same_answer() -> None:
    """Sums around shifts near the means (what the store sends) and raw sums agree."""
    ys, xs = _arms(seed=11, sizes=(200, 200), p=3, lifts=(0.0, 0.1))
    ys = [y + 1e6 for y in ys]  # values near 1e6 with a spread of a few units
    raw = regression_adjusted_test(_summaries(ys, xs), relative=True)
    ky, kx = 1e6 + 10.0, np.array([3.0, 2.5, 3.5])
    shifted = []
    for i, (y, x) in enumerate(zip(ys, xs, strict=True)):
        yy, xx = y - ky, x - kx
        shifted.append(CovariateSummary(
            float(len(y)), float(yy.sum()), float(yy @ yy), tuple(map(float, xx.sum(axis=0))),
            tuple(map(float, xx.T @ yy)), tuple(tuple(map(float, row)) for row in xx.T @ xx),
            shift_y=ky, shift_x=tuple(map(float, kx)), name=f"v{i}"))
    got = regression_adjusted_test(shifted, relative=True)
    # raw sums of values near 1e6 lose digits of the variance: agree to what they keep
    assert got.comparisons[0].estimate == pytest.approx(raw.comparisons[0].estimate, rel=1e-3)
    assert got.comparisons[0].se == pytest.approx(raw.comparisons[0].se, rel=1e-3)
    # the shifted sums keep every digit: the absolute effect equals that of the data moved near 0
    got_abs = regression_adjusted_test(shifted).comparisons[0]
    exact = regression_adjusted_test(_summaries([y - 1e6 for y in ys], xs)).comparisons[0]
    assert (got_abs.estimate, got_abs.se) == pytest.approx((exact.estimate, exact.se), rel=1e-9)


def test_aa_false_positive_rate_is_calibrated() -> None:
    """2,000 simulated A/A experiments (200 users per arm, 4 covariates of which 2 are pure noise, a
    skewed outcome): the 5 % test rejects in [4 %, 6 %] of them, and the adjustment reduces variance."""
    rng = np.random.default_rng(20261203)
    runs, n, p = 2000, 200, 4
    rejections, reductions = 0, []
    for _ in range(runs):
        arms = []
        for name in ("control", "treatment"):
            x = rng.normal(size=(n, p))
            y = np.exp(0.4 * x[:, 0]) + 0.5 * x[:, 1] + rng.exponential(1.0, size=n)
            arms.append(CovariateSummary.from_arrays(y, x, name=name))
        c = regression_adjusted_test(arms).comparisons[0]
        rejections += c.p_value < 0.05
        reductions.append(c.variance_reduction)
    assert 0.04 <= rejections / runs <= 0.06
    assert np.mean(reductions) > 0.2


def test_a_constant_covariate_is_dropped() -> None:
    ys, xs = _arms(seed=5, sizes=(150, 160), p=2, lifts=(0.0, 0.2))
    with_const = [np.column_stack([x, np.full(len(x), 3.25)]) for x in xs]
    r = regression_adjusted_test(_summaries(ys, with_const), covariates=["a", "b", "constant"], ridge=0.0)
    base = regression_adjusted_test(_summaries(ys, xs), ridge=0.0)
    assert r.used == ("a", "b") and r.theta[2] == 0.0
    assert r.comparisons[0].estimate == pytest.approx(base.comparisons[0].estimate, rel=1e-9)
    assert r.comparisons[0].se == pytest.approx(base.comparisons[0].se, rel=1e-9)
    # only constant covariates: the plain Welch test, saying why
    only = regression_adjusted_test(_summaries(ys, [np.ones((len(x), 1)) for x in xs]))
    assert only.fallback == "no covariate varies" and only.theta == (0.0,)
    plain = compare_means(ys[0], ys[1])
    assert only.comparisons[0].estimate == pytest.approx(plain.estimate, rel=1e-12)
    assert only.comparisons[0].se == pytest.approx(plain.se, rel=1e-12)
    assert only.comparisons[0].variance_reduction == 0.0


@pytest.mark.parametrize("ridge", [0.0, 0.01])
def test_collinear_covariates_are_fitted_once(ridge: float) -> None:
    """A duplicated covariate, and one that is the sum of two others: the design is singular, the fit
    still answers, and with ridge 0 it is the fit of the independent covariates."""
    ys, xs = _arms(seed=9, sizes=(250, 240), p=2, lifts=(0.0, 0.3))
    collinear = [np.column_stack([x, x[:, 0], x[:, 0] + 2 * x[:, 1]]) for x in xs]
    r = regression_adjusted_test(_summaries(ys, collinear), ridge=ridge)
    base = regression_adjusted_test(_summaries(ys, xs), ridge=ridge)
    assert r.fallback == "" and all(math.isfinite(t) for t in r.theta)
    tol = 1e-8 if ridge == 0 else 0.02
    assert r.comparisons[0].estimate == pytest.approx(base.comparisons[0].estimate, rel=tol)
    assert r.comparisons[0].se == pytest.approx(base.comparisons[0].se, rel=tol)


def test_one_user_per_arm_is_refused_clearly() -> None:
    arms = [CovariateSummary.from_arrays([1.0], [[2.0]], name="control"),
            CovariateSummary.from_arrays([3.0], [[1.0]], name="treatment")]
    with pytest.raises(StatsInputError, match=r"arm control has n=1\.0 users; .* at least 2 users per arm"):
        regression_adjusted_test(arms)


def test_a_tiny_sample_falls_back_to_the_plain_test() -> None:
    ys, xs = _arms(seed=2, sizes=(6, 6), p=4, lifts=(0.0, 1.0))
    r = regression_adjusted_test(_summaries(ys, xs))
    assert "too few for 4 covariate(s)" in r.fallback and r.theta == (0.0,) * 4
    plain = compare_means(ys[0], ys[1])
    assert r.comparisons[0].estimate == pytest.approx(plain.estimate, rel=1e-12)
    assert r.comparisons[0].p_value == pytest.approx(plain.p_value, rel=1e-12)


def test_noise_covariates_never_make_it_worse() -> None:
    """Covariates unrelated to y: the variance of the effect never rises above the plain test's (θ = 0
    when the adjustment would not help)."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        arms = [CovariateSummary.from_arrays(rng.normal(size=60), rng.normal(size=(60, 2)), name=v)
                for v in ("c", "t")]
        r = regression_adjusted_test(arms)
        assert r.comparisons[0].variance_reduction >= 0.0


def test_three_arms_share_one_fit_and_each_is_compared_with_control() -> None:
    ys, xs = _arms(seed=13, sizes=(300, 300, 300, 300), p=3, lifts=(0.0, 0.5, 0.0, -0.5))
    r = regression_adjusted_test(_summaries(ys, xs), control="v2", relative=True)
    assert r.control == "v2" and r.variants == ("v0", "v1", "v3")
    two = regression_adjusted_test(_summaries([ys[2], ys[1]], [xs[2], xs[1]]), relative=True)
    # a different pooled fit (two arms' users, not four), so close but not identical
    assert r.comparison("v1").estimate == pytest.approx(two.comparisons[0].estimate, rel=0.05)
    assert r.comparison("v1").estimate > 0 > r.comparison("v3").estimate
    with pytest.raises(StatsInputError, match="no comparison for variant 'v2'"):
        r.comparison("v2")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"ridge": -1.0}, "ridge must be a finite number >= 0"),
    ({"control": "nope"}, "control 'nope' is not an arm"),
    ({"covariates": ["a"]}, "covariates names 1 covariates, the sums have 4"),
])
def test_bad_arguments_say_what_to_fix(kwargs: dict, match: str) -> None:
    ys, xs = _arms(sizes=(50, 50), lifts=(0.0, 0.0))
    with pytest.raises(StatsInputError, match=match):
        regression_adjusted_test(_summaries(ys, xs), **kwargs)


def test_arms_with_different_covariates_are_refused() -> None:
    a = CovariateSummary.from_arrays([1.0, 2.0, 3.0], [[1.0], [2.0], [2.5]], name="a")
    b = CovariateSummary.from_arrays([1.0, 2.0, 3.0], [[1.0, 0.0], [2.0, 1.0], [2.5, 0.0]], name="b")
    with pytest.raises(StatsInputError, match="same covariates"):
        regression_adjusted_test([a, b])
