"""The seed facade, evaluate_policy, the cross-fitted reward model and the synthetic generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from battleground.datasets._bandit_feedback import epsilon_greedy_policy, make_bandit_feedback
from battleground.ope import (
    DM,
    IPS,
    SNIPS,
    CappedIPS,
    CappedSNIPS,
    CrossFitRewardModel,
    Diagnostics,
    EvalRecommenderModel,
    OPEReliabilityWarning,
    PolicyEvaluation,
    evaluate_policy,
    fit_reward_model,
)


def test_seed_example_runs(obp_reference) -> None:
    arrays, meta = obp_reference
    # seed 000: pred = trainer.predict_proba(X_test); y_test holds the logged feedback
    clf = LogisticRegression(max_iter=500).fit(arrays["context"], arrays["action"])
    pred = clf.predict_proba(arrays["context"])
    y_test = pd.DataFrame({k: arrays[k] for k in ("action", "reward", "pscore")})
    evaluator = EvalRecommenderModel(mode="offline")
    ips = evaluator.get_importance_sampling(pred, y_test)
    cips = evaluator.get_capped_importance_sampling(pred, y_test)
    ncis = evaluator.get_normalized_cis(pred, y_test)
    args = (arrays["action"], arrays["reward"], arrays["pscore"], pred)
    assert ips.value == pytest.approx(IPS().estimate(*args), abs=1e-12)
    assert cips.value == pytest.approx(CappedIPS(5.0).estimate(*args), abs=1e-12)
    assert ncis.value == pytest.approx(CappedSNIPS(5.0).estimate(*args), abs=1e-12)
    assert ips.ci_low < ips.value < ips.ci_high
    # the reference policy through the facade reproduces obp
    ref = evaluator.get_importance_sampling(arrays["action_dist"], y_test.to_dict("list"))
    assert ref.value == pytest.approx(meta["values"]["ipw"], abs=1e-9)
    nc = evaluator.get_normalized_cis(arrays["action_dist"], y_test, lambda_=5.0)
    assert nc.value == pytest.approx(meta["values"]["snipw_capped_5(numpy)"], abs=1e-9)
    sn = evaluator.get_normalized_cis(
        arrays["action_dist"], y_test, capped=False, ci="bootstrap", n_bootstrap=200
    )
    assert (
        sn.value == pytest.approx(meta["values"]["snipw"], abs=1e-9) and sn.ci_method == "bootstrap"
    )


def test_seed_import_path() -> None:
    from battleground.model.eval import EvalRecommenderModel as FromModel

    assert FromModel is EvalRecommenderModel


def test_facade_matches_snips_for_large_cap(obp_reference) -> None:
    arrays, _ = obp_reference
    y = {k: arrays[k] for k in ("action", "reward", "pscore")}
    ev = EvalRecommenderModel(mode="offline", lambda_=1e9)
    assert ev.get_normalized_cis(arrays["action_dist"], y).value == pytest.approx(
        SNIPS().estimate(y["action"], y["reward"], y["pscore"], arrays["action_dist"]), abs=1e-12
    )


def test_evaluate_policy_table(synthetic) -> None:
    fb, pi = synthetic
    result = evaluate_policy(fb.action, fb.reward, fb.pscore, pi, context=fb.context)
    table = result.to_frame()
    assert list(table.columns) == [
        "estimator",
        "value",
        "se",
        "ci_low",
        "ci_high",
        "alpha",
        "ci_method",
        "n_rounds",
    ]
    assert len(table) == 10
    truth = fb.policy_value(pi)
    dr = table.set_index("estimator").loc["dr"]
    assert dr.ci_low <= truth <= dr.ci_high
    # A typed, frozen result: the diagnostics are a field, nothing travels in the frame's attrs.
    assert isinstance(result, PolicyEvaluation) and isinstance(result.diagnostics, Diagnostics)
    assert result.diagnostics.trustworthy is True and result.trustworthy
    assert not table.attrs
    assert result["dr"] == result.estimates[list(table.estimator).index("dr")]
    assert result["dr"].value == dr.value
    with pytest.raises(KeyError, match="no estimator 'nope'"):
        result["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.diagnostics = result.diagnostics  # type: ignore[misc]
    no_model = evaluate_policy(fb.action, fb.reward, fb.pscore, pi, ci="bootstrap", n_bootstrap=100).to_frame()
    assert list(no_model.estimator) == ["ips", "capped_ips(λ=5)", "snips", "capped_snips(λ=5)"]
    assert set(no_model.ci_method) == {"bootstrap"}
    two = evaluate_policy(
        fb.action, fb.reward, fb.pscore, pi, q_hat=fb.expected_reward, estimators=[IPS(), DM()]
    ).to_frame()
    assert list(two.estimator) == ["ips", "dm"]
    assert two.value.iloc[1] == pytest.approx(
        truth, abs=1e-12
    )  # DM with the true q is the true value


def test_evaluate_policy_warns_when_untrustworthy() -> None:
    fb = make_bandit_feedback(300, n_actions=4, beta=4.0, random_state=0)
    worst = np.zeros((300, 4))
    worst[np.arange(300), fb.expected_reward.argmin(axis=1)] = 1.0
    with pytest.warns(OPEReliabilityWarning):
        result = evaluate_policy(fb.action, fb.reward, fb.pscore, worst)
    assert result.diagnostics.trustworthy is False and result.diagnostics.reasons


def test_cross_fitted_reward_model(synthetic) -> None:
    fb, _ = synthetic
    q = fit_reward_model(fb.context, fb.action, fb.reward, fb.n_actions)
    assert q.shape == (fb.n_rounds, fb.n_actions)
    assert np.all((q > 0) & (q < 1))
    assert np.corrcoef(q.ravel(), fb.expected_reward.ravel())[0, 1] > 0.95
    model = CrossFitRewardModel(LogisticRegression(max_iter=300), n_folds=2, random_state=1)
    q2 = model.fit_predict(fb.context, fb.action, fb.reward, fb.n_actions)
    assert len(model.models_) == 2 and model.n_actions_ == fb.n_actions
    assert np.abs(q2 - q).max() < 0.1


def test_reward_model_with_regressors() -> None:
    fb = make_bandit_feedback(
        3000, n_actions=3, dim_context=2, reward_type="continuous", random_state=2
    )
    q = fit_reward_model(fb.context, fb.action, fb.reward, 3, LinearRegression())
    # continuous rewards are linear in (context × action), which the design captures exactly
    assert np.abs(q - fb.expected_reward).mean() < 0.05
    rf = fit_reward_model(
        fb.context, fb.action, fb.reward, 3, RandomForestRegressor(n_estimators=10, random_state=0)
    )
    assert np.corrcoef(rf.ravel(), fb.expected_reward.ravel())[0, 1] > 0.8


def test_generator_is_seeded_and_consistent() -> None:
    a = make_bandit_feedback(2000, n_actions=4, random_state=11)
    b = make_bandit_feedback(2000, n_actions=4, random_state=11)
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_allclose(a.pscore, a.behavior_dist[np.arange(2000), a.action])
    np.testing.assert_allclose(a.behavior_dist.sum(axis=1), 1.0)
    # logging policy's own value is the expected reward under it, and the mean reward estimates it
    assert a.policy_value(a.behavior_dist) == pytest.approx(a.reward.mean(), abs=0.03)
    uniform = make_bandit_feedback(1000, n_actions=5, beta=0.0, random_state=0)
    np.testing.assert_allclose(uniform.pscore, 0.2)
    greedy = epsilon_greedy_policy(a.expected_reward, 0.0)
    assert greedy.sum(axis=1) == pytest.approx(np.ones(2000))
    assert a.policy_value(greedy) > a.policy_value(a.behavior_dist)
