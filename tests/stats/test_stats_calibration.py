"""Calibration: statistics that do not lie (issue 3, §5).

2,000 simulated A/A (and A/B) tests, vectorised: each simulated test is represented by its daily
summary statistics (users and conversions per arm per day), never by per-user loops.
"""

from __future__ import annotations

import numpy as np
import pytest

from battleground import stats
from battleground.stats._tests import infer

N_SIMS = 2_000
DAYS = 14
ALPHA = 0.05


def _cumulative_tests(users_c, conv_c, users_t, conv_t):  # type: ignore[no-untyped-def]
    """Vectorised Welch test on proportions from cumulative daily sums: (estimate, se, p)."""
    nc, nt = np.cumsum(users_c, axis=1), np.cumsum(users_t, axis=1)
    pc, pt = np.cumsum(conv_c, axis=1) / nc, np.cumsum(conv_t, axis=1) / nt
    vc, vt = pc * (1 - pc) / nc, pt * (1 - pt) / nt
    se = np.sqrt(vc + vt)
    df = (vc + vt) ** 2 / (vc**2 / (nc - 1) + vt**2 / (nt - 1))
    est = pt - pc
    _, p, _, _ = infer(est, se, df, ALPHA, "two-sided")
    return est, se, p


@pytest.fixture(scope="module")
def aa() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261122)
    daily = 1_000
    users = np.full((N_SIMS, DAYS), daily)
    conv_c = rng.binomial(daily, 0.10, size=(N_SIMS, DAYS))
    conv_t = rng.binomial(daily, 0.10, size=(N_SIMS, DAYS))
    return _cumulative_tests(users, conv_c, users, conv_t)


def test_fixed_horizon_false_positive_rate(aa: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _, _, p = aa
    fpr = float((p[:, -1] < ALPHA).mean())
    assert 0.04 <= fpr <= 0.06, fpr


def test_peeking_inflates_naive_but_not_msprt(aa: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    est, se, p = aa
    naive = float((p < ALPHA).any(axis=1).mean())
    # Daily peeking at a fixed-horizon test: far more than α false positives.
    assert naive > 0.10, naive
    path = stats.msprt_path(est, se, tau2=(0.1 * 0.10) ** 2, alpha=ALPHA)
    seq = float((path.p_value[:, -1] <= ALPHA).mean())
    assert seq <= ALPHA, seq
    # The always-valid CI covers the true effect (0) whenever the p-value is above α.
    covered = (path.ci_lower[:, -1] <= 0) & (path.ci_upper[:, -1] >= 0)
    assert float(covered.mean()) >= 1 - ALPHA


def test_power_matches_plan() -> None:
    plan = stats.sample_size_proportions(0.10, 0.10, relative=True, power=0.8)
    n = plan.n_control_ceil
    rng = np.random.default_rng(7)
    conv_c = rng.binomial(n, 0.10, size=(N_SIMS, 1))
    conv_t = rng.binomial(n, 0.11, size=(N_SIMS, 1))
    users = np.full((N_SIMS, 1), n)
    _, _, p = _cumulative_tests(users, conv_c, users, conv_t)
    power = float((p[:, -1] < ALPHA).mean())
    assert abs(power - plan.power) <= 0.03, power


def test_continuous_metric_fpr_and_power_from_sums() -> None:
    """Means: per-simulation sums of normal data (Σx, Σx²) drawn exactly from their distributions."""
    rng = np.random.default_rng(11)
    plan = stats.sample_size_means(0.5, 5.0, method="t")
    n = plan.n_control_ceil

    def arm(mu: float) -> tuple[np.ndarray, np.ndarray]:
        mean = rng.normal(mu, 5.0 / np.sqrt(n), N_SIMS)
        var = 25.0 * rng.chisquare(n - 1, N_SIMS) / (n - 1)
        return mean, var

    for shift, lo, hi in ((0.0, 0.04, 0.06), (0.5, 0.77, 0.83)):
        mc, vc = arm(10.0)
        mt, vt = arm(10.0 + shift)
        a, b = vc / n, vt / n
        df = (a + b) ** 2 / (a**2 / (n - 1) + b**2 / (n - 1))
        _, p, _, _ = infer(mt - mc, np.sqrt(a + b), df, ALPHA, "two-sided")
        rate = float((p < ALPHA).mean())
        assert lo <= rate <= hi, (shift, rate)
