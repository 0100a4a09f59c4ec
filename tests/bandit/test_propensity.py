"""LinTS propensities (issue 15): the shortcuts and the panel rules of ``bandit._propensity``.

Every shortcut is checked against a fine reference quadrature that keeps *all* competitors, and the
one-row path (``select_one``) against the batch path bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

import battleground.bandit._propensity as prop
from battleground.bandit._propensity import (
    _STEP_RULES,
    integral,
    step_panel,
    win_probability,
    win_probability_one,
)

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(200)


def _reference(a: np.ndarray, b: np.ndarray) -> float:
    """``∫ φ(z) Π_j Φ(a_j + b_j z) dz`` by 200-node Gauss–Legendre between every competitor's centre and
    ±1, ±3, ±8 of its widths on [−9, 9] (error far below 1e-12 for these smooth pieces)."""
    offsets = np.array([[-8.0], [-3.0], [-1.0], [0.0], [1.0], [3.0], [8.0]])
    edges = np.unique(np.r_[-9.0, np.clip((-a + offsets) / b, -9, 9).ravel(), np.linspace(-9, 9, 19)])
    half = 0.5 * np.diff(edges)[:, None]
    z = (edges[:-1, None] + half + half * _NODES).ravel()
    f = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) * ndtr(a + b * z[:, None]).prod(axis=1)
    return float((f * (half * _WEIGHTS).ravel()).sum())


def _reference_win(mu: np.ndarray, sd: np.ndarray, arm: int) -> float:
    others = np.delete(np.arange(mu.size), arm)
    return _reference((mu[arm] - mu[others]) / sd[others], sd[arm] / sd[others])


def _all_arms(mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    k = mu.size
    return win_probability(np.repeat(mu[None, :], k, 0), np.repeat(sd[None, :], k, 0), np.arange(k))


def test_two_normals_closed_form_equals_the_fine_quadrature() -> None:
    """One competitor left: ``Φ(a/√(1+b²))`` (no quadrature) within 1e-12 of the integral, spreads up to
    140× apart either way, ties and huge gaps included."""
    rng = np.random.default_rng(150)
    b = np.r_[np.exp(rng.uniform(np.log(1 / 140), np.log(140), 60)), 1.0, 30.0, 1 / 30, 140.0, 1 / 140]
    a = np.r_[rng.normal(0, 3, 60), 0.0, 0.0, 0.0, 40.0, -40.0] * np.sqrt(1 + b * b) / 3
    got = integral(a[:, None], b[:, None])
    exact = np.array([_reference(a[i : i + 1], b[i : i + 1]) for i in range(a.size)])
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-12)
    assert got[60] == 0.5


# Contexts (means, spreads) whose propensities need no quadrature at all: every arm but one or two
# cannot win (beyond 8.3 pairwise standard deviations), with ties, spread ratios 30–140 and huge means.
_SHORTCUT_CASES = {
    "two close arms, three far behind (wide and narrow)": ([0.0, 0.3, -40.0, -1e4, -12.0], [1.0, 1.1, 2.0, 140.0, 0.02]),
    "a wide and a narrow arm, others far behind": ([0.0, 5.0, -300.0, -1e3], [30.0, 1.0, 1.0, 30.0]),
    "two tied arms, two far behind": ([1.0, 1.0, -30.0, -1e4], [2.0, 2.0, 1.0, 140.0]),
    "one arm ahead of every other by more than 8.3 sigma, one 140x wider": ([50.0, 0.0, 1.0, -2e3], [1.0, 3.0, 2.0, 140.0]),
    "huge means, spreads 140x apart": ([1e9, 1e9 + 3e3, 1e9 - 1e7, 0.0], [1e3, 7.1, 1e3, 1e5]),
}


@pytest.mark.parametrize("case", list(_SHORTCUT_CASES))
def test_shortcut_propensities_equal_the_full_quadrature(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    means, spreads = _SHORTCUT_CASES[case]
    mu, sd = np.array(means), np.array(spreads)

    def no_quadrature(*args: object) -> None:
        raise AssertionError("a shortcut case reached the quadrature")

    monkeypatch.setattr(prop, "step_panel", no_quadrature)
    props = _all_arms(mu, sd)
    monkeypatch.undo()
    exact = np.array([_reference_win(mu, sd, arm) for arm in range(mu.size)])
    np.testing.assert_allclose(props, exact, rtol=0, atol=1e-12)
    assert props.sum() == pytest.approx(1.0, abs=1e-12)
    if case == "two tied arms, two far behind":
        assert props.tolist() == [0.5, 0.5, 0.0, 0.0]


def _adversarial_rows(rng: np.random.Generator, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Competitor gaps ``a`` and spread ratios ``b``: close arms 1.5× apart, narrow ones up to 400×,
    and a mix of trained arms with starved ones 20–140× wider."""
    kind = rng.integers(3, size=n)[:, None]
    b_close = np.exp(rng.uniform(np.log(1 / 1.5), np.log(1.5), size=(n, m)))
    a_close = rng.normal(0, 1.5, size=(n, m)) * rng.choice([0.1, 1.0, 3.0], size=(n, 1)) + rng.choice([0.0, 3.0], size=(n, 1))
    b_narrow = np.exp(rng.uniform(np.log(1.5), np.log(400), size=(n, 1)) + rng.uniform(0, np.log(2), size=(n, m)))
    a_narrow = -b_narrow * (rng.uniform(-4, 4, size=(n, 1)) + rng.normal(size=(n, m)) / b_narrow.min(axis=1, keepdims=True))
    b_mixed = np.where(rng.random((n, m)) < 0.3, 1 / rng.uniform(20, 140, size=(n, m)), np.exp(rng.uniform(-0.1, 0.1, size=(n, m))))
    a_mixed = rng.normal(0, 1.5, size=(n, m)) * b_mixed
    a = np.where(kind == 0, a_close, np.where(kind == 1, a_narrow, a_mixed))
    b = np.where(kind == 0, b_close, np.where(kind == 1, b_narrow, b_mixed))
    return a, b


def test_panel_rules_are_within_1e8_of_the_fine_quadrature(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node count (16, 22, 24, 32, chosen by the panel's length in widths) on seeded adversarial
    rows with 2–20 competitors; the rows the panel does not trust go to the edge panels."""
    used: set[int] = set()
    block = prop._panel_block

    def spy(*args: np.ndarray) -> np.ndarray:
        used.add(args[4].size)
        return block(*args)

    monkeypatch.setattr(prop, "_panel_block", spy)
    rng = np.random.default_rng(1515)
    worst = 0.0
    for m in (2, 3, 5, 9, 20):
        a, b = _adversarial_rows(rng, m, 40)
        got, ok = step_panel(a, b)
        assert ok.mean() >= 0.8
        exact = np.array([_reference(a[i], b[i]) for i in range(a.shape[0])])
        worst = max(worst, float(np.abs(got - exact)[ok].max()))
        np.testing.assert_allclose(integral(a, b), exact, rtol=0, atol=1e-8)
    assert worst <= 1e-8, worst
    assert used == {x.size for _, x, _ in _STEP_RULES}


def test_one_row_equals_the_batch_bit_for_bit() -> None:
    """``select_one``'s path and the batch path give the same number in every rule (beaten, tied, two
    normals, each panel size, the edge panels), whatever the other rows of the batch."""
    rng = np.random.default_rng(77)
    rows_mu, rows_sd = [], []
    for means, spreads in _SHORTCUT_CASES.values():
        rows_mu.append(np.resize(means, 6))
        rows_sd.append(np.resize(spreads, 6))
    for _ in range(60):
        scale = rng.choice([0.01, 0.3, 3.0])
        rows_mu.append(rng.normal(0, scale, 6))
        rows_sd.append(np.exp(rng.normal(0, rng.choice([0.05, 1.0, 2.5]), 6)))
    rows_mu.append(np.zeros(6))
    rows_sd.append(np.ones(6))
    mu, sd = np.array(rows_mu), np.array(rows_sd)
    n, k = mu.shape
    arms = np.tile(np.arange(k), n)
    batch = win_probability(np.repeat(mu, k, 0), np.repeat(sd, k, 0), arms)
    one = np.array([win_probability_one(mu[i // k], sd[i // k], int(arms[i])) for i in range(n * k)])
    np.testing.assert_array_equal(one, batch)
    # Shuffled batch: a row's value does not depend on its neighbours.
    order = rng.permutation(n * k)
    shuffled = win_probability(np.repeat(mu, k, 0)[order], np.repeat(sd, k, 0)[order], arms[order])
    np.testing.assert_array_equal(shuffled, batch[order])
    sums = batch.reshape(n, k).sum(axis=1)
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-7)


def test_extreme_scales_stay_finite_and_sum_to_one() -> None:
    """Means of 1e12 and spreads 1e8 apart put table coordinates far beyond 32 bits: the values stay
    finite, in [0, 1], and each context's propensities still sum to 1."""
    rng = np.random.default_rng(8)
    for _ in range(20):
        sd = 10.0 ** rng.uniform(-4, 4, 5)
        mu = 1e12 + rng.normal(0, 1, 5) * sd * rng.choice([0.5, 3.0, 30.0])
        props = _all_arms(mu, sd)
        assert np.isfinite(props).all() and ((props >= 0) & (props <= 1)).all()
        assert props.sum() == pytest.approx(1.0, abs=1e-6)
