"""Bootstrap and analytic intervals, resampling counts, and diagnostics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from battleground.ope import (
    IPS,
    SNIPS,
    OPEInputError,
    OPEReliabilityWarning,
    all_estimators,
    diagnose,
    estimate_intervals,
    resampling_counts,
)


def test_resampling_counts_are_multinomial() -> None:
    counts = resampling_counts(50, 2000, np.random.default_rng(0))
    assert counts.shape == (2000, 50)
    assert np.all(counts.sum(axis=1) == 50)
    # Multinomial(n, 1/n) counts: mean 1, variance 1 − 1/n.
    assert counts.mean() == pytest.approx(1.0, abs=1e-12)
    assert counts.var() == pytest.approx(1 - 1 / 50, rel=0.03)


def test_bootstrap_is_seeded(synthetic) -> None:
    fb, pi = synthetic
    args = (fb.action, fb.reward, fb.pscore, pi, fb.expected_reward)
    ests = all_estimators()
    a = estimate_intervals(ests, *args, ci="bootstrap", n_bootstrap=200, random_state=7)
    b = estimate_intervals(ests, *args, ci="bootstrap", n_bootstrap=200, random_state=7)
    c = estimate_intervals(ests, *args, ci="bootstrap", n_bootstrap=200, random_state=8)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert a[0].ci_low != c[0].ci_low


def test_bootstrap_matches_plain_loop(synthetic) -> None:
    fb, pi = synthetic
    n = 4000
    w = pi[np.arange(n), fb.action[:n]] / fb.pscore[:n]
    v = w * fb.reward[:n]
    rng = np.random.default_rng(0)
    loop = np.array([v[rng.integers(0, n, n)].mean() for _ in range(1000)])
    args = (fb.action[:n], fb.reward[:n], fb.pscore[:n], pi[:n])
    fast = estimate_intervals([IPS()], *args, ci="bootstrap", n_bootstrap=1000, random_state=1)[0]
    assert fast.se == pytest.approx(loop.std(ddof=1), rel=0.1)
    lo, hi = np.quantile(loop, [0.025, 0.975])
    assert fast.ci_low == pytest.approx(lo, abs=0.3 * fast.se)
    assert fast.ci_high == pytest.approx(hi, abs=0.3 * fast.se)


def test_block_bootstrap_keeps_the_spread(synthetic) -> None:
    fb, pi = synthetic
    args = (fb.action, fb.reward, fb.pscore, pi, fb.expected_reward)
    exact = estimate_intervals([SNIPS()], *args, ci="bootstrap", n_bootstrap=500, random_state=2)[0]
    blocks = estimate_intervals(
        [SNIPS()], *args, ci="bootstrap", n_bootstrap=500, random_state=2, max_units=2000
    )[0]
    assert blocks.value == exact.value
    assert blocks.se == pytest.approx(exact.se, rel=0.15)


def test_interval_width_follows_alpha(synthetic) -> None:
    fb, pi = synthetic
    args = (fb.action, fb.reward, fb.pscore, pi)
    r95 = estimate_intervals([IPS()], *args, alpha=0.05)[0]
    r80 = estimate_intervals([IPS()], *args, alpha=0.2)[0]
    ratio = (r95.ci_high - r95.ci_low) / (r80.ci_high - r80.ci_low)
    assert ratio == pytest.approx(1.959964 / 1.281552, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha=1.5"),
        ({"ci": "jackknife"}, "ci='jackknife'"),
        ({"ci": "bootstrap", "n_bootstrap": 1}, "n_bootstrap=1"),
        ({"ci": "bootstrap", "max_units": 0}, "max_units=0"),
    ],
)
def test_interval_argument_errors(kwargs, match, synthetic) -> None:
    fb, pi = synthetic
    with pytest.raises(OPEInputError, match=match):
        estimate_intervals([IPS()], fb.action, fb.reward, fb.pscore, pi, **kwargs)


def test_diagnostics_uniform_policy() -> None:
    n = 1000
    action = np.arange(n) % 4
    d = diagnose(action, np.full(n, 0.25), np.full((n, 4), 0.25), warn=False)
    assert d.ess == pytest.approx(n)
    assert d.ess_ratio == pytest.approx(1.0)
    assert d.max_weight == pytest.approx(1.0) and d.mean_weight == pytest.approx(1.0)
    assert d.zero_support_share == 0.0 and d.trustworthy and d.reasons == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diagnose(action, np.full(n, 0.25), np.full((n, 4), 0.25))


def test_diagnostics_warn_on_degenerate_weights() -> None:
    n = 1000
    action = np.zeros(n, dtype=int)
    action[0] = 1
    pscore = np.full(n, 0.999)
    pscore[0] = 0.001
    dist = np.tile(
        [0.0, 1.0, 0.0], (n, 1)
    )  # the evaluation policy only plays action 1, logged once
    with pytest.warns(OPEReliabilityWarning, match="effective sample size"):
        d = diagnose(action, pscore, dist)
    assert d.ess == pytest.approx(1.0)
    assert d.max_weight == pytest.approx(1000.0)
    assert not d.trustworthy and len(d.reasons) >= 2
    assert d.to_dict()["reasons"] == list(d.reasons)


def test_zero_support_share() -> None:
    n = 400
    action = np.arange(n) % 2  # action 2 never logged
    dist = np.tile([0.4, 0.4, 0.2], (n, 1))
    d = diagnose(action, np.full(n, 0.5), dist, warn=False)
    assert d.zero_support_share == pytest.approx(0.2)
    assert any("support" in r for r in d.reasons)
    behavior = np.tile([0.5, 0.5, 0.0], (n, 1))
    d2 = diagnose(action, np.full(n, 0.5), dist, behavior_dist=behavior, warn=False)
    assert d2.zero_support_share == pytest.approx(0.2)
    with pytest.raises(OPEInputError, match="behavior_dist"):
        diagnose(action, np.full(n, 0.5), dist, behavior_dist=np.ones((n, 2)) / 2)


def test_analytic_intervals_cover_at_the_nominal_rate() -> None:
    from battleground.datasets._bandit_feedback import epsilon_greedy_policy, make_bandit_feedback

    names = ["ips", "snips", "dr", "sndr"]
    hits = dict.fromkeys(names, 0)
    reps = 150
    for seed in range(reps):
        fb = make_bandit_feedback(1500, n_actions=4, dim_context=3, beta=0.5, random_state=seed)
        pi = epsilon_greedy_policy(fb.expected_reward, 0.3)
        q = np.clip(fb.expected_reward + np.random.default_rng(seed).normal(0, 0.1, pi.shape), 0, 1)
        truth = fb.policy_value(pi)
        ests = [e for e in all_estimators(5.0) if e.label in names]
        for res in estimate_intervals(ests, fb.action, fb.reward, fb.pscore, pi, q):
            hits[res.estimator] += res.ci_low <= truth <= res.ci_high
    for name in names:
        assert 0.88 <= hits[name] / reps <= 0.995, (name, hits[name])


@pytest.mark.parametrize("max_units", [2000, None])
def test_bootstrap_interval_does_not_depend_on_row_order(synthetic, max_units) -> None:
    """Sorting the log by reward must not widen the interval (issue 15: 2× with contiguous blocks)."""
    fb, pi = synthetic
    n = 20_000 if max_units else 120_000  # None: above the default 100k units, blocks of 2 rounds
    reps = -(-n // fb.action.shape[0])
    cols = [np.tile(c, reps)[:n] if c.ndim == 1 else np.tile(c, (reps, 1))[:n] for c in (fb.action, fb.reward, fb.pscore, pi, fb.expected_reward)]
    kw = {"ci": "bootstrap", "n_bootstrap": 300, "random_state": 5} | ({"max_units": max_units} if max_units else {})
    ests = [IPS(), SNIPS()]
    shuffled = estimate_intervals(ests, *cols, **kw)
    order = np.argsort(cols[1], kind="stable")
    by_reward = estimate_intervals(ests, *[c[order] for c in cols], **kw)
    for a, b in zip(shuffled, by_reward, strict=True):
        assert b.value == pytest.approx(a.value, rel=1e-12)
        # 300 resamples: the se itself is known to ~4 %; 15 % is well beyond Monte-Carlo error.
        assert b.se == pytest.approx(a.se, rel=0.15)
        assert b.ci_high - b.ci_low == pytest.approx(a.ci_high - a.ci_low, rel=0.2)
