"""Bad input raises OPEInputError naming the argument and its value."""

from __future__ import annotations

import numpy as np
import pytest

from battleground.ope import (
    IPS,
    CappedIPS,
    DRos,
    EvalRecommenderModel,
    OPEInputError,
    all_estimators,
)

N, K = 6, 3


def _good() -> dict[str, np.ndarray]:
    return {
        "action": np.array([0, 1, 2, 0, 1, 2]),
        "reward": np.array([1.0, 0, 1, 0, 1, 0]),
        "pscore": np.full(N, 1 / 3),
        "action_dist": np.full((N, K), 1 / 3),
        "q_hat": np.full((N, K), 0.5),
    }


def _with(**changes: object) -> dict[str, object]:
    args: dict[str, object] = dict(_good())
    args.update(changes)
    return args


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (_with(reward=np.ones(5)), "reward has 5 rounds"),
        (_with(pscore=np.ones(7) / 3), "pscore has 7 rounds"),
        (_with(action_dist=np.full((5, K), 1 / 3)), "action_dist has 5 rows"),
        (_with(q_hat=np.zeros((N, 4))), r"q_hat has shape \(6, 4\)"),
        (_with(pscore=np.array([0.5, 0, 0.5, 0.5, 0.5, 0.5])), r"pscore=0.0 is outside \(0, 1\]"),
        (_with(pscore=np.array([0.5, 1.2, 0.5, 0.5, 0.5, 0.5])), "pscore=1.2"),
        (_with(pscore=-np.ones(N)), "pscore=-1.0"),
        (_with(action=np.array([0, 1, 3, 0, 1, 2])), "action=3 is out of range for K=3"),
        (_with(action=np.array([0, -1, 2, 0, 1, 2])), "action=-1"),
        (_with(action=np.array([0, 1.5, 2, 0, 1, 2])), "integer action ids"),
        (_with(action_dist=np.full((N, K), 0.4)), "rows must sum to 1, row 0 sums to 1.2"),
        (_with(action_dist=np.ones(N)), r"action_dist must have shape \(n, K\)"),
        (_with(action_dist=np.full((N, K, 2), 1 / 3)), "position"),
        (_with(action=np.zeros((N, 1), dtype=int)), "action must be 1-D"),
        (_with(reward=np.array([1.0, np.nan, 1, 0, 1, 0])), "reward contains NaN"),
    ],
)
def test_bad_feedback(args: dict[str, object], match: str) -> None:
    with pytest.raises(OPEInputError, match=match):
        DRos().estimate(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), "x"])
def test_bad_lambda(lam: object) -> None:
    with pytest.raises(OPEInputError, match="lambda_="):
        CappedIPS(lam).estimate(**{k: v for k, v in _good().items() if k != "q_hat"})  # type: ignore[arg-type]
    with pytest.raises(OPEInputError, match="lambda_="):
        all_estimators(lam)  # type: ignore[arg-type]


def test_error_is_a_value_error() -> None:
    assert issubclass(OPEInputError, ValueError)
    with pytest.raises(ValueError):
        IPS().estimate([0], [1.0], [0.0], [[1.0]])


def test_position_selects_the_slot() -> None:
    g = _good()
    dist = np.stack([g["action_dist"], np.tile([1.0, 0.0, 0.0], (N, 1))], axis=2)
    pos = np.ones(N, dtype=int)
    got = IPS().estimate(g["action"], g["reward"], g["pscore"], dist, position=pos)
    # only rounds logged with action 0 count, weight 3: rounds 0 (r=1) and 3 (r=0)
    assert got == pytest.approx(3 * 1 / N)


def test_facade_bad_mode_and_lambda() -> None:
    with pytest.raises(OPEInputError, match="mode='online'"):
        EvalRecommenderModel(mode="online")
    with pytest.raises(OPEInputError, match="lambda_=0"):
        EvalRecommenderModel(mode="offline", lambda_=0)
    with pytest.raises(OPEInputError, match="ci='normal'"):
        EvalRecommenderModel(mode="offline", ci="normal")
    ev = EvalRecommenderModel(mode="offline")
    g = _good()
    y = {"action": g["action"], "reward": g["reward"], "pscore": g["pscore"]}
    with pytest.raises(OPEInputError, match="lambda_=-2"):
        ev.get_capped_importance_sampling(g["action_dist"], y, lambda_=-2)
    with pytest.raises(OPEInputError, match=r"y lacks column\(s\) \['pscore'\]"):
        ev.get_importance_sampling(g["action_dist"], {"action": g["action"], "reward": g["reward"]})
    with pytest.raises(OPEInputError, match="y must be a DataFrame or dict"):
        ev.get_importance_sampling(g["action_dist"], [1, 2, 3])


def _random_feedback(seed: int = 0, n: int = 500) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dist = rng.dirichlet(np.ones(K), size=n)
    behaviour = rng.dirichlet(np.ones(K), size=n)
    action = np.array([rng.choice(K, p=p) for p in behaviour])
    return {
        "action": action,
        "reward": rng.binomial(1, 0.4, size=n).astype(float),
        "pscore": behaviour[np.arange(n), action],
        "action_dist": dist,
        "q_hat": rng.uniform(0.2, 0.6, size=(n, K)),
    }


def test_dros_with_infinite_lambda_is_dr() -> None:
    from battleground.ope import DR

    g = _random_feedback()
    got = DRos(float("inf")).estimate(**g)
    assert np.isfinite(got)
    assert got == pytest.approx(DR().estimate(**g), rel=1e-12)


def test_zero_lambda_switch_dr_and_dros_are_dm() -> None:
    """As in obp: λ = 0 switches every correction off (SwitchDR) or shrinks every weight to 0 (DRos)."""
    from battleground.ope import DM, SwitchDR

    g = _random_feedback(1)
    dm = DM().estimate(**g)
    assert SwitchDR(0.0).estimate(**g) == pytest.approx(dm, rel=1e-12)
    assert DRos(0.0).estimate(**g) == pytest.approx(dm, rel=1e-12)
    for bad in (-1.0, float("nan")):
        with pytest.raises(OPEInputError, match="lambda_="):
            SwitchDR(bad)


@pytest.mark.parametrize("slots", [1, 3])
def test_q_hat_slot_count_must_match_action_dist_with_position(slots: int) -> None:
    g = _good()
    dist = np.stack([g["action_dist"]] * 2, axis=2)  # two slots
    q3 = np.full((N, K, slots), 0.5)
    pos = np.array([0, 1, 1, 0, 1, 0])
    with pytest.raises(OPEInputError, match=rf"q_hat has {slots} position"):
        DRos().estimate(g["action"], g["reward"], g["pscore"], dist, q_hat=q3, position=pos)
    # with the slot count of action_dist it selects the same slot
    ok = DRos().estimate(g["action"], g["reward"], g["pscore"], dist, q_hat=np.full((N, K, 2), 0.5), position=pos)
    assert np.isfinite(ok)
