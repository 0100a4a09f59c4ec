"""Conformance suite run over every estimator, and the obp 0.5.7 reference values to 1e-9."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from battleground.ope import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    CappedDR,
    CappedIPS,
    CappedSNIPS,
    DRos,
    Estimator,
    OPEInputError,
    SwitchDR,
    all_estimators,
    estimate_all,
    estimate_intervals,
)

# estimator, key in the reference json
CASES: list[tuple[Estimator, str]] = [
    (IPS(), "ipw"),
    (CappedIPS(5.0), "cipw_5"),
    (SNIPS(), "snipw"),
    (CappedSNIPS(5.0), "snipw_capped_5(numpy)"),
    (DM(), "dm"),
    (DR(), "dr"),
    (CappedDR(5.0), "cdr_5"),
    (SNDR(), "sndr"),
    (SwitchDR(5.0), "switch-dr"),
    (DRos(5.0), "dr-os"),
]
IDS = [c[0].name for c in CASES]


def _args(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return (
        arrays["action"],
        arrays["reward"],
        arrays["pscore"],
        arrays["action_dist"],
        arrays["q_hat"],
    )


@pytest.mark.parametrize(("est", "key"), CASES, ids=IDS)
def test_matches_obp_reference(est: Estimator, key: str, obp_reference) -> None:
    arrays, meta = obp_reference
    assert est.estimate(*_args(arrays)) == pytest.approx(meta["values"][key], abs=1e-9)


@pytest.mark.parametrize(("est", "key"), CASES, ids=IDS)
def test_three_dim_action_dist_is_accepted(est: Estimator, key: str, obp_reference) -> None:
    arrays, meta = obp_reference
    a, r, p, dist, q = _args(arrays)
    assert est.estimate(a, r, p, dist[:, :, None], q[:, :, None]) == pytest.approx(
        meta["values"][key], abs=1e-9
    )


@pytest.mark.parametrize(("est", "key"), CASES, ids=IDS)
def test_permutation_invariant_and_scale_equivariant(
    est: Estimator, key: str, obp_reference
) -> None:
    arrays, _ = obp_reference
    a, r, p, dist, q = _args(arrays)
    base = est.estimate(a, r, p, dist, q)
    perm = np.random.default_rng(0).permutation(a.shape[0])
    assert est.estimate(a[perm], r[perm], p[perm], dist[perm], q[perm]) == pytest.approx(
        base, abs=1e-12
    )
    assert est.estimate(a, 3.0 * r, p, dist, 3.0 * q) == pytest.approx(3.0 * base, abs=1e-12)


@pytest.mark.parametrize(("est", "key"), CASES, ids=IDS)
def test_interval_covers_truth_on_synthetic_logs(est: Estimator, key: str, synthetic) -> None:
    fb, pi = synthetic
    truth = fb.policy_value(pi)
    res = estimate_intervals([est], fb.action, fb.reward, fb.pscore, pi, fb.expected_reward)[0]
    assert res.ci_low < res.value < res.ci_high
    # The capped estimators are biased by design; the unbiased ones must cover the truth.
    if est.name in {"ips", "snips", "dm", "dr", "sndr"}:
        assert res.ci_low <= truth <= res.ci_high
    assert abs(res.value - truth) < 0.03
    assert res.se > 0 and res.n_rounds == fb.n_rounds


@pytest.mark.parametrize(("est", "key"), CASES, ids=IDS)
def test_analytic_and_bootstrap_se_agree(est: Estimator, key: str, synthetic) -> None:
    fb, pi = synthetic
    args = (fb.action, fb.reward, fb.pscore, pi, fb.expected_reward)
    an = estimate_intervals([est], *args)[0]
    bs = estimate_intervals([est], *args, ci="bootstrap", n_bootstrap=400, random_state=1)[0]
    assert bs.value == an.value
    assert bs.se == pytest.approx(an.se, rel=0.15)
    assert bs.ci_method == "bootstrap" and an.ci_method == "analytic"


@pytest.mark.parametrize(("est", "key"), CASES, ids=IDS)
def test_result_is_frozen_and_serialisable(est: Estimator, key: str, obp_reference) -> None:
    arrays, _ = obp_reference
    res = estimate_intervals([est], *_args(arrays))[0]
    d = res.to_dict()
    assert d["estimator"] == est.label and d["value"] == res.value
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.value = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("est", "key"),
    [c for c in CASES if c[0].requires_q_hat],
    ids=[c[0].name for c in CASES if c[0].requires_q_hat],
)
def test_q_hat_required(est: Estimator, key: str, obp_reference) -> None:
    arrays, _ = obp_reference
    a, r, p, dist, _ = _args(arrays)
    with pytest.raises(OPEInputError, match="q_hat"):
        est.estimate(a, r, p, dist)


def test_on_policy_weights_are_one() -> None:
    rng = np.random.default_rng(5)
    dist = rng.dirichlet(np.ones(4), size=500)
    action = (dist.cumsum(1) < rng.random(500)[:, None]).sum(1)
    pscore = dist[np.arange(500), action]
    reward = rng.random(500)
    for est in (IPS(), CappedIPS(5.0), SNIPS(), CappedSNIPS(5.0)):
        assert est.estimate(action, reward, pscore, dist) == pytest.approx(reward.mean(), abs=1e-12)


def test_estimate_all_names_and_values(obp_reference) -> None:
    arrays, meta = obp_reference
    out = estimate_all(*_args(arrays), lambda_=5.0)
    assert list(out) == [e.label for e in all_estimators(5.0)]
    assert out["sndr"] == pytest.approx(meta["values"]["sndr"], abs=1e-9)
    only_ips = estimate_all(*_args(arrays)[:4])
    assert len(only_ips) == 4 and only_ips["ips"] == pytest.approx(meta["values"]["ipw"], abs=1e-9)


def test_large_lambda_reduces_capped_to_plain(obp_reference) -> None:
    arrays, _ = obp_reference
    args = _args(arrays)
    assert CappedIPS(1e12).estimate(*args) == pytest.approx(IPS().estimate(*args), abs=1e-12)
    assert CappedDR(1e12).estimate(*args) == pytest.approx(DR().estimate(*args), abs=1e-12)
    assert SwitchDR(1e12).estimate(*args) == pytest.approx(DR().estimate(*args), abs=1e-12)
    assert CappedSNIPS(1e12).estimate(*args) == pytest.approx(SNIPS().estimate(*args), abs=1e-12)
