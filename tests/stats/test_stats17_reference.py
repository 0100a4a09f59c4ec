"""Issue 17's statistics against their references: gbstats' own test cases (ported from its GitHub
source, growthbook/growthbook packages/stats/tests), spotify-confidence's alpha-spending bounds and
scipy's multivariate normal for the Lan–DeMets boundaries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from battleground.stats import (
    MeanSummary,
    StatsInputError,
    alpha_spent,
    group_sequential_bounds,
    group_sequential_test,
    mid_experiment_power,
    one_sided_confidence_sequence,
    power_after,
    relative_lift,
    sequential_srm_test,
    srm_test,
)

DATA = Path(__file__).parents[1] / "data" / "ab"


# ------------------------------------------------------------------ gbstats tests/test_ssrm.py (8 cases)


def test_gb_ssrm_balanced_high_p() -> None:
    assert sequential_srm_test([[500, 500]], [0.5, 0.5]).p_value > 0.05


def test_gb_ssrm_imbalanced_low_p() -> None:
    assert sequential_srm_test([[100, 900]], [0.5, 0.5]).p_value < 0.05


def test_gb_ssrm_empty_and_zero_users() -> None:
    r = sequential_srm_test([[0, 0]], [0.5, 0.5])  # gbstats: no users → p = 1
    assert r.p_value == 1.0 and r.status == "ok"
    with pytest.raises(StatsInputError):
        sequential_srm_test(np.zeros((0, 2)))  # gbstats returns []; a look-less test is an input error here


def test_gb_ssrm_valid_p_and_multiday() -> None:
    p = sequential_srm_test([[500, 600]]).p_value
    assert 0.0 <= p <= 1.0
    assert sequential_srm_test([[250, 250], [250, 250]]).p_value > 0.05
    assert sequential_srm_test([[50, 450], [50, 450]]).p_value < 0.05


def test_gb_chi_squared_2d_matches_aggregated() -> None:
    assert srm_test([500, 600]).p_value == pytest.approx(srm_test([250 + 250, 300 + 300]).p_value, abs=1e-10)


def test_ssrm_closed_form_equals_gbstats_recursion() -> None:
    """gbstats accumulates the Dirichlet–multinomial predictive look by look; the closed form on
    cumulative counts must give the same Bayes factor (reimplemented here from gbstats' ssrm.py)."""
    from scipy.special import gammaln, xlogy

    data = np.array([[120, 100], [130, 90], [0, 0], [500, 420], [1, 0]])
    p0 = np.array([0.5, 0.5])
    alpha = p0 * 10000.0
    m1 = m0 = 0.0
    running, expect = 1.0, []
    for x in data:
        n = x.sum()
        if n > 0:
            m0 += gammaln(n + 1) + np.sum(xlogy(x, p0) - gammaln(x + 1))
        m1 += (gammaln(n + 1) - gammaln(x + 1).sum() + gammaln(alpha.sum()) - gammaln(alpha).sum()
               + gammaln(alpha + x).sum() - gammaln(alpha.sum() + n))
        alpha = alpha + x
        running = min(running, math.exp(-(m1 - m0)))
        expect.append(running)
    r = sequential_srm_test(data, p0)
    assert r.p_values == pytest.approx(expect, rel=1e-9)
    assert sequential_srm_test(np.cumsum(data, axis=0), p0, cumulative=True).p_values == pytest.approx(expect, rel=1e-9)


def test_ssrm_slab_mixture_matches_recursion() -> None:
    from scipy.special import gammaln, logsumexp, xlogy

    def ldm(x: np.ndarray, a: np.ndarray) -> float:
        n = x.sum()
        return float(gammaln(n + 1) - gammaln(x + 1).sum() + gammaln(a.sum()) - gammaln(a).sum()
                     + gammaln(a + x).sum() - gammaln(a.sum() + n))

    data = np.array([[30, 40, 30], [35, 30, 40], [60, 10, 30]])
    p0 = np.array([0.3, 0.4, 0.3])
    spike, slab, m1, m0 = p0 * 500.0, np.ones(3) * 2.0, 0.0, 0.0
    for x in data:
        m0 += float(gammaln(x.sum() + 1) + np.sum(xlogy(x, p0) - gammaln(x + 1)))
        m1 += float(logsumexp([math.log(0.7) + ldm(x, spike), math.log(0.3) + ldm(x, slab)]))
        spike, slab = spike + x, slab + x
    r = sequential_srm_test(data, p0, concentration=500.0, slab_weight=0.3, slab_concentration=2.0)
    assert r.log_bayes_factor == pytest.approx(m1 - m0, rel=1e-9)


# ---------------------------------------------------- gbstats tests/test_midexperimentpower.py (3 cases)


@pytest.fixture(scope="module")
def mid_se() -> float:
    a = MeanSummary.from_sums(500, 499.99999999999994, 1499.999999999999)
    b = MeanSummary.from_sums(500, 525.0000000000008, 1551.2499999999998)
    return relative_lift(a, b).se


@pytest.mark.parametrize(
    ("kw", "expected"),
    [({}, 25.45703125), ({"sequential": True, "n_star": 5000}, 55.66796875),
     ({"prior_mean": 0.05, "prior_variance": 0.001}, 13.9404296875)],
    ids=["frequentist", "sequential", "bayesian"],
)
def test_gb_midexperiment_power(mid_se: float, kw: dict, expected: float) -> None:
    r = mid_experiment_power(mid_se, 1000, 0.05, **kw)
    assert r.scaling_factor == pytest.approx(expected, abs=1e-4)
    assert power_after(r.scaling_factor, se=mid_se, users=1000, mde=0.05, **kw) == pytest.approx(0.8, abs=1e-4)
    assert r.additional_users == pytest.approx(expected * 1000, abs=0.1)


def test_midexperiment_power_already_powered_and_days() -> None:
    r = mid_experiment_power(0.001, 10_000, 0.05, planned_users=20_000, users_per_day=500)
    assert r.scaling_factor == 0.0 and r.additional_users == 0.0 and r.additional_days == 0.0
    assert r.power_now > 0.999 and r.power_at_plan >= r.power_now
    r = mid_experiment_power(0.05, 1000, 0.05, users_per_day=100)
    assert r.additional_days == pytest.approx(r.additional_users / 100)
    assert r.power_now < 0.8 and r.scaling_factor and r.scaling_factor > 0


@pytest.mark.parametrize("bad", [{"se": 0.0}, {"se": math.nan}, {"users": 1}, {"mde": 0.0}])
def test_midexperiment_power_refuses_bad_input(bad: dict) -> None:
    args = {"se": 0.05, "users": 1000, "mde": 0.05} | bad
    with pytest.raises(StatsInputError):
        mid_experiment_power(args["se"], args["users"], args["mde"])


# --------------------------------------------- gbstats tests/frequentist/test_tests.py: one-sided sequential


@pytest.fixture(scope="module")
def one_sided_stats() -> tuple[MeanSummary, MeanSummary]:
    return MeanSummary.from_sums(3000, 1396.87, 52377.9767), MeanSummary.from_sums(3461, 2422.7, 134698.29)


@pytest.mark.parametrize(
    ("relative", "alternative", "bound", "gb_p"),
    [(True, "greater", -0.42356454602790883, 0.4999), (False, "greater", -0.12656844172804982, 0.46316491943359384),
     (True, "less", 1.4302867177403806, 0.4999), (False, "less", 0.5953217750613832, 0.4999)],
    ids=["greater-relative", "greater-absolute", "less-relative", "less-absolute"],
)
def test_gb_sequential_one_sided(one_sided_stats, relative, alternative, bound, gb_p) -> None:  # type: ignore[no-untyped-def]
    a, b = one_sided_stats
    if relative:
        r = relative_lift(a, b)
        est, se = r.estimate, r.se
        assert (est, se) == pytest.approx((0.5033610858562358, 0.3334122146400735), rel=1e-9)
    else:
        est = b.mean - a.mean
        se = math.sqrt(a.var / a.n + b.var / b.n)
        assert (est, se) == pytest.approx((0.23437666666666668, 0.12983081254184736), rel=1e-9)
    res = one_sided_confidence_sequence(est, se, a.n + b.n, alternative=alternative)
    if alternative == "greater":
        assert res.ci_lower == pytest.approx(bound, abs=1e-9) and res.ci_upper == math.inf
    else:
        assert res.ci_upper == pytest.approx(bound, abs=1e-9) and res.ci_lower == -math.inf
    if gb_p == 0.4999:  # gbstats clamps its bisection to [1e-5, 0.4999]
        assert res.p_value >= 0.4999
    else:
        assert res.p_value == pytest.approx(gb_p, abs=5e-4)


def test_one_sided_p_is_the_level_where_the_bound_touches_zero() -> None:
    r = one_sided_confidence_sequence(0.3, 0.1, 4000)
    again = one_sided_confidence_sequence(0.3, 0.1, 4000, alpha=0.05)
    assert r.p_value < 0.05 and again.ci_lower > 0
    # the bound at the p-value's level (ρ held at α = 0.05) is 0
    from battleground.stats._one_sided import one_sided_rho

    rho = one_sided_rho(0.05, 5000.0)
    n, s2 = 4000, 0.1**2 * 4000
    half = math.sqrt(s2 * 2 * (n * rho**2 + 1) / (n * rho) ** 2 * math.log(1 + math.sqrt(n * rho**2 + 1) / (2 * r.p_value)))
    assert half == pytest.approx(0.3, rel=1e-9)


# --------------------------------------------------------------- alpha spending (spotify-confidence)


def test_spotify_power_spending_bounds() -> None:
    ref = json.loads((DATA / "f_gbstats_summary_stats.json").read_text())["spotify_gst_bounds_alpha_t^2"]
    b = group_sequential_bounds(ref["information_fractions"], spending="power", rho=2.0)
    # spotify-confidence integrates on a coarser grid: its bounds are within 1e-4 of the converged ones
    assert b.z_bounds == pytest.approx(ref["z_bounds"], abs=1e-4)
    assert b.nominal_alpha == pytest.approx(ref["nominal_alpha_each_look"], abs=2e-5)


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock", "power"])
@pytest.mark.parametrize("two_sided", [True, False])
def test_bounds_spend_exactly_alpha_by_scipy_mvn(spending: str, two_sided: bool) -> None:
    """The cumulative crossing probability under H0 (scipy's multivariate normal, corr √(tᵢ/tⱼ)) equals
    α(t) at every look: the definition of a Lan–DeMets boundary."""
    from scipy.stats import multivariate_normal

    t = np.array([0.2, 0.45, 0.7, 1.0])
    b = group_sequential_bounds(t, spending=spending, two_sided=two_sided)
    c = np.asarray(b.z_bounds)
    spent = alpha_spent(t, 0.05, spending, two_sided=two_sided)
    for k in range(1, len(t) + 1):
        cov = np.sqrt(np.minimum.outer(t[:k], t[:k]) / np.maximum.outer(t[:k], t[:k]))
        mvn = multivariate_normal(mean=np.zeros(k), cov=cov, abseps=1e-7, releps=1e-7)
        lower = -c[:k] if two_sided else np.full(k, -np.inf)
        inside = mvn.cdf(c[:k], lower_limit=lower)
        assert 1 - inside == pytest.approx(spent[k - 1], abs=2e-4)
    assert spent[-1] == pytest.approx(0.05)


def test_known_lan_demets_values() -> None:
    # LD O'Brien–Fleming at t = 0.25: α(0.25) = 2 − 2Φ(1.96/0.5), so c₁ = z(0.975)/√0.25 exactly
    b = group_sequential_bounds([0.25, 0.5, 0.75, 1.0])
    assert b.z_bounds[0] == pytest.approx(1.959963984540054 / 0.5, rel=1e-9)
    # a single look at the full information is the fixed-horizon test
    assert group_sequential_bounds([1.0], spending="pocock").z_bounds[0] == pytest.approx(1.959963984540054)
    # the grid is converged: a 4x finer grid moves no bound by more than 1e-7
    import battleground.stats._group_sequential as g

    old = g._GRID
    try:
        g._GRID = 2401
        fine = group_sequential_bounds([0.25, 0.5, 0.75, 1.0]).z_bounds
    finally:
        g._GRID = old
    assert fine == pytest.approx(b.z_bounds, abs=1e-7)


def test_unplanned_looks_and_past_the_plan() -> None:
    b = group_sequential_bounds([0.3, 0.3, 1.2, 1.5])
    assert math.isinf(b.z_bounds[1]) and math.isinf(b.z_bounds[3])  # no new information, nothing left
    assert b.cumulative_alpha[-1] == pytest.approx(0.05)
    with pytest.raises(StatsInputError):
        group_sequential_bounds([0.5, 0.4])
    with pytest.raises(StatsInputError):
        group_sequential_bounds([0.0, 1.0])


def test_group_sequential_decision_quantities() -> None:
    t = [0.25, 0.5]
    c = group_sequential_bounds(t).z_bounds
    # just inside the second bound: not crossed, p above α; just outside: crossed, p ≤ α, RCI excludes 0
    for z, crossed in ((c[1] - 1e-3, False), (c[1] + 1e-3, True)):
        r = group_sequential_test([0.0, z * 0.1], [0.1, 0.1], t)
        assert r.boundary_crossed is crossed
        assert (r.p_value <= 0.05) is crossed
        assert (r.ci_lower > 0) is crossed
