"""The paired "agent A beats agent B" test that the bandit report relies on."""

from __future__ import annotations

import numpy as np
import pytest

from battleground.bandit._compare import ComparisonInputError, compare_agents


def test_a_tiny_gap_over_noisy_customers_is_no_win() -> None:
    """367.1 vs 366.6 (the issue's example) with customer-level noise: not a win either way."""
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 180.0, size=1000)
    a = base + rng.normal(0.5, 60.0, size=(2, 1000))
    b = base + rng.normal(0.0, 60.0, size=(2, 1000))
    c = compare_agents("linear_ts", a, "linear_ucb", b)
    assert not c.a_beats_b and not c.b_beats_a
    assert "not distinguishable" in c.verdict
    assert c.ci_low < 0 < c.ci_high


def test_a_real_gap_is_a_win_with_the_right_sign() -> None:
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 180.0, size=1000)
    a = base + 15.0 + rng.normal(0, 30.0, size=1000)
    c = compare_agents("a", a, "b", base)
    assert c.a_beats_b and c.difference == pytest.approx(15.0, abs=3.0)
    assert c.verdict.startswith("a beats b by +")
    flipped = compare_agents("b", base, "a", a)
    assert flipped.b_beats_a and flipped.verdict.startswith("a beats b")


def test_coverage_of_the_paired_interval_under_no_difference() -> None:
    rng = np.random.default_rng(2)
    wins = 0
    for _ in range(400):
        base = rng.gamma(2.0, 100.0, size=300)
        c = compare_agents("a", base + rng.normal(0, 20, 300), "b", base + rng.normal(0, 20, 300))
        wins += c.a_beats_b or c.b_beats_a
    assert wins / 400 == pytest.approx(0.05, abs=0.03)


def test_bad_input() -> None:
    with pytest.raises(ComparisonInputError, match="same customers"):
        compare_agents("a", np.ones(5), "b", np.ones(6))
    with pytest.raises(ComparisonInputError, match="at least 2 customers"):
        compare_agents("a", np.ones(1), "b", np.ones(1))
    with pytest.raises(ComparisonInputError, match="alpha"):
        compare_agents("a", np.ones(3), "b", np.ones(3), alpha=1.5)
