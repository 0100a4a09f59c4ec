"""CUPED for ratio metrics (``battleground.stats.ratio_cuped_test``) against gbstats' own test case and
on the inputs that break it (issue 17)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from battleground.stats import (
    RatioCupedSummary,
    RatioSummary,
    StatsInputError,
    ratio_cuped_test,
    ratio_cuped_theta,
    ratio_test,
)

# gbstats tests/frequentist/test_tests.py, TestTwoSidedTTest.test_two_sided_ttest_test_runs_ratio_ra
# (growthbook/growthbook packages/stats, GitHub source): RegressionAdjustedRatioStatistic sums in the
# order (m_post, d_post, m_pre, d_pre); gbstats expects −0.0007, CI (−0.00841, 0.00700), SE 0.00391,
# p 0.85771 (5 decimals).
_GB_A = dict(
    n=100, sums=(485.112236689623, 679.9093275844917, 192.59138069991536, 290.1398399750233),
    squares=(2715.484666118136, 4939.424001640236, 460.076026390857, 920.9461385038898),
    mm_pre=1113.6215759318352, dd_pre=2130.9404074446747, mpre_dpre=634.239482353647,
    md_post=3602.146836776702, m_dpre=1559.2878434944676, mpre_d=1460.3181079276983,
)
_GB_B = dict(
    n=100, sums=(514.7757826608777, 705.4090874383759, 206.94157227402536, 302.54389139107326),
    squares=(2994.897482705013, 5291.36604146392, 514.2903702246757, 994.4506208125663),
    mm_pre=1237.0953021125997, dd_pre=2292.081739775257, mpre_dpre=698.4173425817908,
    md_post=3918.1561431600717, m_dpre=1701.0287270040265, mpre_d=1604.0759503266522,
)


def _gb_summary(g: dict) -> RatioCupedSummary:
    q = g["squares"]
    products = [
        [q[0], g["md_post"], g["mm_pre"], g["m_dpre"]],
        [g["md_post"], q[1], g["mpre_d"], g["dd_pre"]],
        [g["mm_pre"], g["mpre_d"], q[2], g["mpre_dpre"]],
        [g["m_dpre"], g["dd_pre"], g["mpre_dpre"], q[3]],
    ]
    return RatioCupedSummary.from_sums(g["n"], g["sums"], products)


def test_gb_two_sided_ttest_runs_ratio_ra() -> None:
    r = ratio_cuped_test(_gb_summary(_GB_A), _gb_summary(_GB_B))
    assert r.metric == "cuped_ratio" and r.relative
    assert round(r.estimate, 5) == -0.0007
    assert round(r.se, 5) == 0.00391
    assert round(r.p_value, 5) == 0.85771
    assert (round(r.ci_lower, 5), round(r.ci_upper, 5)) == (-0.00841, 0.00700)
    # to more digits than gbstats rounds to (its full-precision values, recomputed from its formulas)
    assert r.estimate == pytest.approx(-0.000701, abs=5e-7)
    assert r.se == pytest.approx(0.003907, abs=5e-7)
    assert not r.significant
    assert 0.0 < r.variance_reduction < 1.0  # the pre-period ratio does predict the post-period ratio


def test_theta_is_symmetric_in_the_arms() -> None:
    a, b = _gb_summary(_GB_A), _gb_summary(_GB_B)
    assert ratio_cuped_theta(a, b) == pytest.approx(ratio_cuped_theta(b, a), rel=1e-12)


def _arm(rng: np.random.Generator, n: int, lift: float = 0.0) -> tuple[np.ndarray, ...]:
    """Per-user (m, d, m_pre, d_pre): each user has a persistent click rate, so the pre-period ratio
    predicts the experiment's."""
    rate = np.minimum(rng.gamma(2.0, 0.1, n), 0.9)
    d, dp = rng.poisson(40, n) + 1.0, rng.poisson(40, n) + 1.0
    return rng.binomial(d.astype(int), np.minimum(rate * (1 + lift), 1.0)).astype(float), d, \
        rng.binomial(dp.astype(int), rate).astype(float), dp


def test_zero_variance_covariate_is_the_plain_ratio_test() -> None:
    """A pre-period ratio with no variance carries no information: θ = 0 and the result is the
    unadjusted delta-method ratio test, not a division by zero."""
    rng = np.random.default_rng(3)
    arms = []
    for lift in (0.0, 0.05):
        m, d, _, _ = _arm(rng, 400, lift)
        arms.append((m, d))
    adj = ratio_cuped_test(*(RatioCupedSummary.from_arrays(m, d, np.full_like(m, 2.0), np.full_like(d, 5.0))
                            for m, d in arms))
    plain = ratio_test(*(RatioSummary.from_arrays(m, d) for m, d in arms), relative=True)
    assert adj.theta == 0.0 and adj.variance_reduction == pytest.approx(0.0, abs=1e-12)
    assert adj.estimate == pytest.approx(plain.estimate, rel=1e-12)
    assert adj.se == pytest.approx(plain.se, rel=1e-9)
    assert adj.p_value == pytest.approx(plain.p_value, rel=1e-9)


def test_no_pre_period_denominator_falls_back_to_theta_zero() -> None:
    rng = np.random.default_rng(4)
    c = RatioCupedSummary.from_arrays(*(_arm(rng, 300)[:2]), np.zeros(300), np.zeros(300))
    t = RatioCupedSummary.from_arrays(*(_arm(rng, 300)[:2]), np.zeros(300), np.zeros(300))
    r = ratio_cuped_test(c, t)
    assert r.theta == 0.0 and math.isfinite(r.se) and r.se > 0


def test_one_user_per_arm_is_a_clear_error() -> None:
    one = RatioCupedSummary.from_arrays([1.0], [2.0], [1.0], [2.0])
    many = RatioCupedSummary.from_arrays([1.0, 2.0, 3.0], [2.0, 3.0, 5.0], [1.0, 1.0, 2.0], [2.0, 2.0, 4.0])
    for c, t in ((one, many), (many, one)):
        with pytest.raises(StatsInputError, match=r"at least 2 users per arm, got n=1"):
            ratio_cuped_test(c, t)


def test_zero_denominator_and_bad_inputs_name_the_problem() -> None:
    zero_d = RatioCupedSummary.from_arrays([0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [2.0, 3.0])
    ok = RatioCupedSummary.from_arrays([1.0, 2.0, 3.0], [2.0, 3.0, 5.0], [1.0, 1.0, 2.0], [2.0, 2.0, 4.0])
    with pytest.raises(StatsInputError, match=r"control's mean denominator is 0\.0"):
        ratio_cuped_test(zero_d, ok)
    with pytest.raises(StatsInputError, match="one value per user"):
        RatioCupedSummary.from_arrays([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(StatsInputError, match="4×4"):
        RatioCupedSummary.from_sums(10, (1, 2, 3), np.eye(3))
    with pytest.raises(StatsInputError, match="RatioCupedSummary or a ratio metric's MetricSums"):
        ratio_cuped_test({"n": 3}, ok)


def test_huge_means_keep_their_precision() -> None:
    """Numerators around 10⁹ per user: the relative lift and its SE are scale-free, so they must not
    move (the covariance comes from sums around shifts, not from Σx² − (Σx)²/n at 10¹⁸)."""
    rng = np.random.default_rng(5)
    c, t = _arm(rng, 500), _arm(rng, 500, 0.03)
    base = ratio_cuped_test(RatioCupedSummary.from_arrays(*c), RatioCupedSummary.from_arrays(*t))
    scale = 1e9

    def shifted(arm: tuple[np.ndarray, ...]) -> RatioCupedSummary:
        m, d, mp, dp = arm
        x = np.column_stack([m * scale, d, mp * scale, dp])
        k = x[0].copy()  # one user's values as the shift, as the SQL scan does
        y = x - k
        return RatioCupedSummary(float(len(x)), tuple(float(v) for v in y.sum(axis=0)),  # type: ignore[arg-type]
                                 tuple(tuple(float(v) for v in row) for row in y.T @ y), tuple(float(v) for v in k))  # type: ignore[arg-type]

    big = ratio_cuped_test(shifted(c), shifted(t))
    assert big.estimate == pytest.approx(base.estimate, rel=1e-9)
    assert big.se == pytest.approx(base.se, rel=1e-7)
    assert big.theta == pytest.approx(base.theta, rel=1e-7)
    assert big.control_mean == pytest.approx(base.control_mean * scale, rel=1e-12)


def test_decision_adjusted_ratio_is_significant_where_the_plain_one_is_not() -> None:
    """The decision the adjustment exists for, on one seeded experiment with a real +3 % lift: the plain
    ratio test misses it, CUPED on the pre-period ratio finds it, with the variance it removed."""
    rng = np.random.default_rng(28)
    c, t = _arm(rng, 1000), _arm(rng, 1000, 0.03)
    adj = ratio_cuped_test(RatioCupedSummary.from_arrays(*c), RatioCupedSummary.from_arrays(*t))
    plain = ratio_test(RatioSummary.from_arrays(*c[:2]), RatioSummary.from_arrays(*t[:2]), relative=True)
    assert not plain.significant and plain.p_value > 0.1
    assert adj.significant and adj.p_value < 1e-3 and adj.estimate > 0
    assert adj.variance_reduction > 0.6
    assert adj.se < plain.se


def test_false_positive_rate_of_the_adjusted_ratio_on_aa() -> None:
    """A/A: 400 seeded experiments, vectorised over experiments; the adjusted test rejects at ≈ α."""
    rng = np.random.default_rng(11)
    reps, n = 400, 200
    rejections = 0
    for _ in range(reps):
        c, t = _arm(rng, n), _arm(rng, n)
        rejections += ratio_cuped_test(RatioCupedSummary.from_arrays(*c), RatioCupedSummary.from_arrays(*t)).significant
    # 400 draws: SE of the rate √(.05·.95/400) ≈ 1.1 points; 3 SEs either side
    assert 0.017 <= rejections / reps <= 0.083
