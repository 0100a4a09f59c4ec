"""One conformance suite for every bandit policy (like scikit-learn's check_estimator)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from battleground.bandit import (
    EpsilonGreedy,
    LinTS,
    LinUCB,
    PolicyInputError,
    RandomPolicy,
    load_policy,
    make_policy,
)
from battleground.bandit._base import BasePolicy

K, D = 5, 3
POLICIES: dict[str, Any] = {
    "random": lambda gamma=1.0: RandomPolicy(n_arms=K, random_state=3),
    "epsilon_greedy": lambda gamma=1.0: EpsilonGreedy(n_arms=K, epsilon=0.2, gamma=gamma, random_state=3),
    "linear_ucb": lambda gamma=1.0: LinUCB(n_arms=K, alpha=0.7, gamma=gamma, random_state=3),
    "linear_ts": lambda gamma=1.0: LinTS(n_arms=K, variance_scale=0.5, gamma=gamma, random_state=3),
}
LINEAR = ["epsilon_greedy", "linear_ucb", "linear_ts"]


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.normal(size=(n, D - 1))])
    theta = rng.normal(size=(K, D))
    a = rng.integers(K, size=n)
    r = (x * theta[a]).sum(axis=1) + rng.normal(0, 0.3, size=n)
    return x, a, r


@pytest.fixture(params=sorted(POLICIES))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fitted(name: str, gamma: float = 1.0) -> BasePolicy:
    x, a, r = _data()
    return POLICIES[name](gamma).fit(x, a, r)


def test_select_shapes_and_dtypes(name: str) -> None:
    policy = fitted(name)
    x, _, _ = _data(50, seed=1)
    decision = policy.select(x)
    actions, props = decision
    assert actions.shape == (50,) and actions.dtype == np.int64
    assert props.shape == (50,) and props.dtype == np.float64
    assert len(decision) == 50
    assert ((actions >= 0) & (actions < K)).all()
    assert ((props > 0) & (props <= 1)).all()
    one = policy.select_one(x[0])
    assert isinstance(one[0], int) and 0 <= one[0] < K and 0 < one[1] <= 1


def test_action_dist_is_a_distribution_matching_the_propensities(name: str) -> None:
    policy = fitted(name)
    x, _, _ = _data(200, seed=2)
    dist = policy.action_dist(x)
    assert dist.shape == (200, K)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)
    actions, props = policy.select(x)
    # select's propensity is the probability action_dist gives the chosen arm.
    np.testing.assert_allclose(props, dist[np.arange(200), actions], atol=1e-7)


def test_propensity_matches_empirical_frequency(name: str) -> None:
    policy = fitted(name)
    x = np.array([1.0, 0.1, -0.2])
    if name == "linear_ts":
        # Make the arms close so that several have real chances.
        policy.set_params(variance_scale=200.0)
    dist = policy.action_dist(x[None, :])[0]
    actions = policy.select(np.repeat(x[None, :], 20000, axis=0)).actions
    freq = np.bincount(actions, minlength=K) / actions.size
    np.testing.assert_allclose(freq, dist, atol=0.015)
    if name != "linear_ucb":
        assert (dist > 0.01).sum() >= 2


def test_determinism_under_seed(name: str) -> None:
    x, a, r = _data()
    p1 = POLICIES[name]().fit(x, a, r)
    p2 = POLICIES[name]().fit(x, a, r)
    d1, d2 = p1.select(x[:100]), p2.select(x[:100])
    np.testing.assert_array_equal(d1.actions, d2.actions)
    np.testing.assert_array_equal(d1.propensities, d2.propensities)
    assert [p1.select_one(x[i]) for i in range(20)] == [p2.select_one(x[i]) for i in range(20)]


def test_save_load_round_trip_continues_exactly(name: str, tmp_path: Path) -> None:
    policy = fitted(name)
    x, a, r = _data(80, seed=4)
    policy.update_one(x[0], int(a[0]), float(r[0]))  # pending per-round state is saved too
    path = policy.save(tmp_path / "policy")
    assert path.suffix == ".npz"
    loaded = load_policy(path)
    assert type(loaded) is type(policy) and loaded.get_params() == policy.get_params()
    np.testing.assert_array_equal(loaded.select(x).actions, policy.select(x).actions)
    loaded.update(x, a, r)
    policy.update(x, a, r)
    np.testing.assert_allclose(loaded.action_dist(x), policy.action_dist(x), atol=1e-12)
    assert loaded.select_one(x[3]) == policy.select_one(x[3])


def test_unfitted_save_and_pickle(name: str, tmp_path: Path) -> None:
    fresh = POLICIES[name]()
    assert load_policy(fresh.save(tmp_path / "fresh.npz")).get_params() == fresh.get_params()
    policy = fitted(name)
    x, a, r = _data(40, seed=5)
    for clone in (pickle.loads(pickle.dumps(policy)), copy.deepcopy(policy)):
        clone.update(x, a, r)
        policy_copy = copy.deepcopy(policy)
        policy_copy.update(x, a, r)
        np.testing.assert_allclose(clone.action_dist(x), policy_copy.action_dist(x), atol=1e-12)


@pytest.mark.parametrize("name", LINEAR)
def test_batch_update_equals_per_round_updates(name: str) -> None:
    x, a, r = _data(120, seed=6)
    batch = POLICIES[name]().fit(x, a, r)
    rounds = POLICIES[name]()
    for i in range(x.shape[0]):
        rounds.update_one(x[i], int(a[i]), float(r[i]))
    np.testing.assert_allclose(rounds.theta_, batch.theta_, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(rounds.A_inv_, batch.A_inv_, rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal(rounds.counts_, batch.counts_)


def test_batch_select_equals_per_round_where_deterministic() -> None:
    policy = fitted("linear_ucb")
    x, _, _ = _data(60, seed=7)
    batch = policy.select(x)
    per_round = [policy.select_one(x[i]) for i in range(60)]
    assert batch.actions.tolist() == [p[0] for p in per_round]
    np.testing.assert_allclose(batch.propensities, [p[1] for p in per_round])


def test_linear_ts_per_round_propensity_equals_batch() -> None:
    policy = fitted("linear_ts")
    x, _, _ = _data(40, seed=8)
    for i in range(40):
        action, prop = policy.select_one(x[i])
        mu, sd = policy._mean_sd(x[i : i + 1])
        batch = policy._win_probability(mu, sd, np.array([action]))[0]
        assert prop == pytest.approx(batch, rel=1e-9, abs=1e-12)


def test_linear_ts_propensity_against_monte_carlo() -> None:
    """The quadrature against 400k exact Thompson draws for arms with unequal spreads."""
    mu = np.array([[0.0, 0.3, -0.2, 0.1]])
    sd = np.array([[1.0, 0.4, 1.5, 0.8]])
    rng = np.random.default_rng(0)
    wins = (mu + sd * rng.standard_normal((400_000, 4))).argmax(axis=1)
    freq = np.bincount(wins, minlength=4) / wins.size
    for arm in range(4):
        p = LinTS._win_probability(mu, sd, np.array([arm]))[0]
        assert p == pytest.approx(freq[arm], abs=3e-3)


@pytest.mark.parametrize("name", LINEAR)
def test_forgetting_factor(name: str) -> None:
    x, a, r = _data(100, seed=9)
    forget = POLICIES[name](0.5)
    forget.update(x, a, r)
    forget.update(x, a, -r)  # the second batch counts twice as much as the first
    keep = POLICIES[name](1.0)
    keep.update(x, a, r)
    keep.update(x, a, -r)
    # With gamma = 1 the two batches cancel in b; with gamma = 0.5 the recent one dominates.
    np.testing.assert_allclose(keep.b_, 0.0, atol=1e-9)
    expected_b = -0.5 * POLICIES[name]().fit(x, a, r).b_
    np.testing.assert_allclose(forget.b_, expected_b, atol=1e-9)
    per_round = POLICIES[name](0.5)
    per_round.update_one(x[0], int(a[0]), float(r[0]))
    per_round.update_one(x[0], int(a[0]), float(r[0]))
    np.testing.assert_allclose(per_round.b_[a[0]], 1.5 * r[0] * x[0])


def test_get_set_params_and_sklearn_clone(name: str) -> None:
    from sklearn.base import clone

    policy = fitted(name)
    twin = clone(policy)
    assert twin.get_params() == policy.get_params() and not twin.is_fitted
    with pytest.raises(PolicyInputError, match="no parameter 'alhpa'"):
        policy.set_params(alhpa=1.0)


def test_bad_input_errors_name_the_argument(name: str) -> None:
    policy = fitted(name)
    x, a, r = _data(10, seed=10)
    with pytest.raises(PolicyInputError, match="contexts must be a 2-D array"):
        policy.select(x[0])
    with pytest.raises(PolicyInputError, match=f"contexts have 2 features but the policy was fitted with {D}"):
        policy.select(x[:, :2])
    with pytest.raises(PolicyInputError, match="contexts contain NaN"):
        policy.select(np.full((2, D), np.nan))
    with pytest.raises(PolicyInputError, match=r"actions must lie in 0\.\.4"):
        policy.update(x, np.full(10, K), r)
    with pytest.raises(PolicyInputError, match="actions and rewards must be 1-D"):
        policy.update(x, a[:5], r)
    with pytest.raises(PolicyInputError, match="actions must be integer arm indices"):
        policy.update(x, a + 0.5, r)
    with pytest.raises(PolicyInputError, match="rewards contain NaN"):
        policy.update(x, a, np.full(10, np.inf))
    with pytest.raises(PolicyInputError, match=r"context must have shape \(3,\)"):
        policy.select_one(x[0, :2])
    with pytest.raises(PolicyInputError, match="context must be a 1-D array"):
        policy.update_one(x[:2], 0, 1.0)
    with pytest.raises(PolicyInputError, match=r"action must lie in 0\.\.4"):
        policy.update_one(x[0], K, 1.0)


@pytest.mark.parametrize(
    ("agent", "params", "message"),
    [
        ("linear_ts", {"variance_scale": -1.0}, "variance_scale must be a number >= 0.0"),
        ("linear_ucb", {"alpha": "big"}, "alpha must be a number >= 0.0"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon must be a number >= 0.0 and <= 1.0"),
        ("linear_ts", {"gamma": 0.0}, "gamma must be a number > 0.0 and <= 1.0"),
        ("linear_ucb", {"reg": 0.0}, "reg must be a number > 0.0"),
        ("random", {"n_arms": 0}, "n_arms must be an integer >= 1"),
        ("random", {"random_state": -3}, "random_state must be None or an integer >= 0"),
    ],
)
def test_bad_hyperparameters_fail_on_first_use(agent: str, params: dict[str, Any], message: str) -> None:
    policy = make_policy(agent, **params)  # stored unchanged, validated when the state is created
    with pytest.raises(PolicyInputError, match=message):
        policy.select(np.ones((2, 2)))


def test_make_policy_errors() -> None:
    with pytest.raises(PolicyInputError, match="unknown agent 'ucb'"):
        make_policy("ucb")
    with pytest.raises(PolicyInputError, match="valid parameters"):
        make_policy("linear_ts", alpha=1.0)


def test_load_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no saved policy"):
        load_policy(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", __meta__=np.array('{"format": 99, "class": "X"}'))
    with pytest.raises(PolicyInputError, match="not a battleground policy file"):
        load_policy(tmp_path / "other.npz")


def test_greedy_policies_learn_the_best_arm() -> None:
    x, a, r = _data(3000, seed=11)
    rng = np.random.default_rng(0)
    replay = np.random.default_rng(11)
    replay.normal(size=(3000, D - 1))
    theta = replay.normal(size=(K, D))  # the same θ as _data(3000, seed=11)
    for name in LINEAR:
        policy = POLICIES[name]().fit(x, a, r)
        test = np.column_stack([np.ones(500), rng.normal(size=(500, D - 1))])
        best = (test @ theta.T).argmax(axis=1)
        greedy = policy.action_dist(test).argmax(axis=1)
        assert (greedy == best).mean() > 0.95, name


# -- LinTS propensities when the arms' posterior spreads differ (issue 15) ----------------------------
# Rows of (means, spreads): a new arm 30× and 140× wider than well-trained ones, arms close, three
# spread levels, and ten arms.
_SPREAD_CASES = [
    ([0.0, 0.02, -0.01, 0.01], [30.0, 1.0, 1.0, 1.0]),
    ([0.0, 0.5, 0.3, -0.2], [140.0, 1.0, 2.0, 1.0]),
    ([0.0, 3.0, 1.0, 2.0], [1.0, 30.0, 140.0, 0.5]),
    (np.linspace(-0.3, 0.3, 10).tolist(), [1.0, 30.0, 1.2, 140.0, 1.0, 0.9, 5.0, 1.0, 60.0, 1.0]),
]


@pytest.mark.parametrize(("means", "spreads"), _SPREAD_CASES)
def test_linear_ts_propensities_with_unequal_spreads_match_monte_carlo(means: list[float], spreads: list[float]) -> None:
    """≤ 1e-3 from a 2M-draw Monte Carlo of the Thompson draw itself (plus its sampling error)."""
    from scipy import integrate
    from scipy.special import ndtr

    mu, sd = np.array([means]), np.array([spreads])
    k = mu.shape[1]
    rng = np.random.default_rng(15)
    wins = np.concatenate([(mu + sd * rng.standard_normal((500_000, k))).argmax(axis=1) for _ in range(4)])
    freq = np.bincount(wins, minlength=k) / wins.size
    props = LinTS._win_probability(np.repeat(mu, k, 0), np.repeat(sd, k, 0), np.arange(k))
    se = np.sqrt(freq * (1 - freq) / wins.size)
    assert (np.abs(props - freq) <= 1e-3 + 4.5 * se).all(), (props, freq)
    assert props.sum() == pytest.approx(1.0, abs=1e-7)
    # And against adaptive quadrature, far tighter than the Monte Carlo can tell.
    for arm in range(k):
        def integrand(x: float, arm: int = arm) -> float:
            others = np.delete(np.arange(k), arm)
            dens = np.exp(-0.5 * ((x - mu[0, arm]) / sd[0, arm]) ** 2) / (sd[0, arm] * np.sqrt(2 * np.pi))
            return float(dens * ndtr((x - mu[0, others]) / sd[0, others]).prod())

        lo, hi = mu[0, arm] - 8.3 * sd[0, arm], mu[0, arm] + 8.3 * sd[0, arm]
        points = sorted(p for p in (mu[0] + sd[0] * c for c in (-2, 0, 2)) for p in p if lo < p < hi)
        exact = integrate.quad(integrand, lo, hi, points=points, limit=400, epsabs=1e-12)[0]
        assert props[arm] == pytest.approx(exact, abs=1e-7)


def _starved_linear_ts() -> tuple[LinTS, np.ndarray]:
    """Arms 0 and 3 barely played: their spreads are 30–100× the others' at the same context."""
    rng = np.random.default_rng(4)
    n = 40_000
    x = np.column_stack([np.ones(n), rng.normal(size=(n, D - 1))])
    a = rng.choice(K, size=n, p=[0.0001, 0.33, 0.33, 0.0004, 0.3395])
    r = (x @ np.array([0.1, 0.05, -0.02])) + rng.normal(0, 0.3, size=n)  # the same reward for every arm
    policy = LinTS(n_arms=K, variance_scale=1.0, random_state=0).fit(x, a, r)
    return policy, np.column_stack([np.ones(300), rng.normal(size=(300, D - 1))])


def test_linear_ts_select_and_action_dist_agree_when_spreads_differ() -> None:
    policy, x = _starved_linear_ts()
    _, sd = policy._mean_sd(x)
    assert (sd.max(axis=1) / sd.min(axis=1)).min() > 20
    dist = policy.action_dist(x)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)
    actions, props = policy.select(x)
    np.testing.assert_allclose(props, dist[np.arange(x.shape[0]), actions], atol=1e-7)
    for i in range(20):
        action, prop = policy.select_one(x[i])
        assert prop == pytest.approx(policy.action_dist(x[i : i + 1])[0, action], abs=1e-7)
    # The decisions themselves: frequencies of 20k Thompson draws at one context match action_dist.
    many = policy.select(np.repeat(x[:1], 20_000, axis=0))
    freq = np.bincount(many.actions, minlength=K) / 20_000
    np.testing.assert_allclose(freq, dist[0], atol=0.012)


def test_linear_ts_untrained_arms_are_exactly_tied() -> None:
    """Identical posteriors: 1/K by symmetry (no quadrature error), in select, select_one and action_dist."""
    x = np.random.default_rng(3).normal(size=(50, D))
    untrained = LinTS(n_arms=6, random_state=0)
    np.testing.assert_allclose(untrained.action_dist(x), 1 / 6, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(untrained.select(x).propensities, np.full(50, 1 / 6))
    assert untrained.select_one(x[0])[1] == 1 / 6


def test_linear_ts_step_panel_against_adaptive_quadrature() -> None:
    """The main rule on random adversarial rows, spreads 1.5× apart either way or far narrower than arm
    k (``b`` up to 400): ≤ 1e-6 from a 200-node composite rule with breakpoints at every competitor's edge."""
    from scipy.special import ndtr

    from battleground.bandit._propensity import step_panel

    rng = np.random.default_rng(15)
    nodes, weights = np.polynomial.legendre.leggauss(200)
    worst = 0.0
    for m in (1, 2, 4, 9, 20):
        for narrow in (False, True):
            if narrow:
                b = np.exp(rng.uniform(np.log(1.5), np.log(200), size=(12, 1)) + rng.uniform(0, np.log(2), size=(12, m)))
                a = -b * (rng.uniform(-4, 4, size=(12, 1)) + rng.normal(size=(12, m)) / b.min(axis=1, keepdims=True))
            else:
                a = rng.normal(0, 1.5, size=(12, m)) * rng.choice([0.1, 1.0, 3.0], size=(12, 1)) + rng.choice([0.0, 3.0], size=(12, 1))
                b = np.exp(rng.uniform(np.log(1 / 1.5), np.log(1.5), size=(12, m)))
            got, ok = step_panel(a, b)
            assert ok.mean() >= 0.9  # the rest go to the panels rule
            for i in np.flatnonzero(ok):
                # 200-node Gauss–Legendre between consecutive breakpoints (every competitor's centre and
                # ±3 of its widths), far finer than the rule under test (scipy's quad is off by up to 1.4e-6 here).
                edges = np.unique(np.clip((-a[i] + np.array([[-3.0], [0.0], [3.0]])) / b[i], -9, 9).ravel())
                edges = np.unique(np.r_[-9.0, edges, 9.0])
                half = 0.5 * np.diff(edges)[:, None]
                z = (edges[:-1, None] + half + half * nodes).ravel()
                f = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) * ndtr(a[i] + b[i] * z[:, None]).prod(axis=1)
                exact = float((f * (half * weights).ravel()).sum())
                worst = max(worst, abs(got[i] - exact))
    assert worst <= 1e-6, worst


def _composite_win(mu: np.ndarray, sd: np.ndarray, arm: int) -> float:
    """P(arm wins) by 200-node Gauss–Legendre between every competitor's centre and ±3, ±8 of its widths."""
    from scipy.special import ndtr

    others = np.delete(np.arange(mu.size), arm)
    a, b = (mu[arm] - mu[others]) / sd[others], sd[arm] / sd[others]
    nodes, weights = np.polynomial.legendre.leggauss(200)
    edges = np.unique(np.r_[-9.0, np.clip((-a + np.array([[-8.0], [-3.0], [0.0], [3.0], [8.0]])) / b, -9, 9).ravel(), 9.0])
    half = 0.5 * np.diff(edges)[:, None]
    z = (edges[:-1, None] + half + half * nodes).ravel()
    f = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) * ndtr(a + b * z[:, None]).prod(axis=1)
    return float((f * (half * weights).ravel()).sum())


_K50 = np.random.default_rng(50)
_ADVERSARIAL = {
    "K=2, one arm 80x wider": ([0.0, 0.3], [1.0, 80.0]),
    "3 arms, one 500x wider": ([0.0, 0.1, -0.1], [500.0, 1.0, 1.0]),
    "3 tied arms and a wide one": ([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 60.0]),
    "wide arm far behind": ([-40.0, 0.0, 0.2, 0.1], [30.0, 1.0, 1.0, 1.2]),
    "two starved arms of different spreads": ([0.0, 0.05, -0.05, 0.1, 0.0], [1.0, 1.0, 1.1, 35.0, 140.0]),
    "K=50, close, three starved": (_K50.normal(0, 0.05, 50).tolist(),
                                   np.r_[_K50.uniform(0.8, 1.2, 47), 30.0, 90.0, 140.0].tolist()),
}


@pytest.mark.parametrize("case", list(_ADVERSARIAL))
def test_linear_ts_propensities_adversarial_cases(case: str) -> None:
    """Issue 15 adversarial rows: ≤ 1e-3 from a 2M-draw Monte Carlo (plus its sampling error), ≤ 1e-6
    from a fine composite rule, summing to 1 within 1e-6, twins exactly equal."""
    means, spreads = _ADVERSARIAL[case]
    mu, sd = np.array([means]), np.array([spreads])
    k = mu.shape[1]
    props = LinTS._win_probability(np.repeat(mu, k, 0), np.repeat(sd, k, 0), np.arange(k))
    rng = np.random.default_rng(151)
    counts = np.zeros(k)
    for _ in range(10):
        counts += np.bincount((mu + sd * rng.standard_normal((200_000, k))).argmax(axis=1), minlength=k)
    freq = counts / counts.sum()
    se = np.sqrt(freq * (1 - freq) / counts.sum())
    assert (np.abs(props - freq) <= 1e-3 + 4.5 * se).all(), (props, freq)
    assert props.sum() == pytest.approx(1.0, abs=1e-6)
    exact = np.array([_composite_win(mu[0], sd[0], arm) for arm in range(k)])
    np.testing.assert_allclose(props, exact, rtol=0, atol=1e-6)
    if case == "3 tied arms and a wide one":
        assert props[0] == props[1] == props[2]
