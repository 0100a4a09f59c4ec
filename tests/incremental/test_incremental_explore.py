"""Thompson-sampling scores on every path (record API, fast path, GLMix, HTTP) and the variance choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from battleground.incremental import (
    GLMix,
    HessianType,
    IndexedDataset,
    IndexedModel,
    SequentialBayesianLogisticRegression,
    TrainerLogisticLossWithL2,
    create_router,
    make_stream,
    run_stream,
    score_linear_model,
)


@pytest.fixture(scope="module")
def stream():
    return make_stream(n_batches=3, batch_size=300, holdout_size=20, n_entities=8, n_features=3, seed=21)


def test_fast_path_draws_with_the_posterior_variance(stream) -> None:
    model = SequentialBayesianLogisticRegression().partial_fit(stream.train[0]).partial_fit(stream.train[1])
    row = stream.holdout[0].iloc[:1]
    mean = model.decision_function(row)
    np.testing.assert_array_equal(model.decision_function(row, exploration=0.0), mean)
    a = model.decision_function(row, exploration=1.0, random_state=3)
    np.testing.assert_array_equal(a, model.decision_function(row, exploration=1.0, random_state=3))
    xr, er = row[model.feature_names_in_].to_numpy(), row["entity"].to_numpy()  # arrays: quick to score
    draws = np.array([model.decision_function(xr, entity=er, exploration=2.0, random_state=s)[0]
                      for s in range(3000)])
    x = np.concatenate([[1.0], xr[0]])
    k = model.n_dense_
    ent = model.entities_.index(str(int(row["entity"].iloc[0])))
    expected_var = 2.0 * (x**2 @ model.variance_[:k] + model.variance_[k + ent])
    assert draws.mean() == pytest.approx(mean[0], abs=4 * np.sqrt(expected_var / 3000))
    assert draws.var() == pytest.approx(expected_var, rel=0.1)
    with pytest.raises(ValueError, match="exploration"):
        model.decision_function(row, exploration=-1.0)


def test_glmix_draws_random_effects_and_leaves_unknown_entities_alone(stream) -> None:
    model = GLMix().fit_fixed_effect(stream.warmup).partial_fit(stream.train[0])
    row = stream.holdout[0].iloc[:1]
    xr, er = row[model.feature_names_in_].to_numpy(), row["entity"].to_numpy()
    draws = np.array([model.decision_function(xr, entity=er, exploration=1.0, random_state=s)[0]
                      for s in range(2000)])
    e = model.entities_.index(str(int(row["entity"].iloc[0])))
    z = np.concatenate([[1.0], row[model.feature_names_in_].to_numpy()[0]])
    assert draws.var() == pytest.approx(z**2 @ (1.0 / model.re_precision_[e]), rel=0.1)
    unknown = row.assign(entity=10_000)
    got = {model.decision_function(unknown, exploration=1.0, random_state=s)[0] for s in range(5)}
    assert got == {model.fixed_effect_score(unknown)[0]}


def test_http_scores_explore_on_request(tmp_path: Path, stream) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    ck = tmp_path / "ck"
    run_stream([("a", stream.train[0])], ck, model=GLMix().fit_fixed_effect(stream.warmup))
    app_ = FastAPI()
    app_.include_router(create_router(ck))
    client = TestClient(app_)
    feats = {c: float(stream.holdout[0][c].iloc[0]) for c in ("x0", "x1", "x2")}
    rows = [{"entity": int(stream.holdout[0]["entity"].iloc[0]), "features": feats}]
    mean = client.post("/score", json={"rows": rows}).json()["scores"]
    one = client.post("/score", json={"rows": rows, "exploration": 1.0, "seed": 7}).json()["scores"]
    assert one == client.post("/score", json={"rows": rows, "exploration": 1.0, "seed": 7}).json()["scores"]
    assert one != mean
    assert client.post("/score", json={"rows": rows, "exploration": -1}).status_code == 422


def test_diagonal_of_inverse_covers_when_features_correlate() -> None:
    """ρ = 0.8: intervals from diag(H⁻¹) cover the true coefficients ~95 % of the time, 1/diag(H) far less."""
    rng = np.random.default_rng(8)
    beta = np.array([-0.3, 0.8, -0.5])
    cover = {"diagonal_of_inverse": 0, "inverse_diagonal": 0}
    reps, n = 150, 400
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    chol = np.linalg.cholesky(cov)
    for _ in range(reps):
        X = np.column_stack([np.ones(n), rng.standard_normal((n, 2)) @ chol.T])
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ beta))).astype(float)
        data = IndexedDataset(sparse.csr_matrix(X), y, np.ones(n), np.zeros(n))
        model, _, _ = TrainerLogisticLossWithL2(training_data=data, initial_model=IndexedModel(np.zeros(3)),
                                                penalty=1e-6, hessian_type=HessianType.FULL).train()
        H = model.hessian.toarray()
        for name, var in (("diagonal_of_inverse", np.diag(np.linalg.inv(H))), ("inverse_diagonal", 1 / np.diag(H))):
            cover[name] += int(abs(model.theta[1] - beta[1]) <= 1.96 * np.sqrt(var[1]))
    assert cover["diagonal_of_inverse"] / reps >= 0.9
    assert cover["inverse_diagonal"] / reps <= 0.85
    # and score_linear_model draws with the chosen one
    draws = np.array([score_linear_model(model, IndexedDataset(sparse.csr_matrix([[0.0, 1.0, 0.0]]), np.zeros(1),
                                                                np.ones(1), np.zeros(1)), 1.0, random_state=s,
                                         variance="diagonal_of_inverse")[0] for s in range(3000)])
    assert draws.var() == pytest.approx(np.linalg.inv(H)[1, 1], rel=0.1)


def test_every_path_draws_through_one_helper(stream) -> None:
    """The record API, the fast path and GLMix share one Thompson draw: the same seed, mean and
    variance give the same coefficients; every path rejects a non-finite or negative scale by name."""
    from battleground.incremental._explore import thompson_draw

    model = SequentialBayesianLogisticRegression().partial_fit(stream.train[0])
    X = stream.holdout[0][model.feature_names_in_].to_numpy()
    theta = thompson_draw(model.coef_, model.variance_, 0.5, 7)
    k = model.n_dense_
    want = theta[0] + X @ theta[1:k]
    np.testing.assert_allclose(model.decision_function(X, exploration=0.5, random_state=7), want, atol=1e-12)
    indexed = IndexedModel(model.coef_[:k], sparse.diags(model.precision_[:k]).tocsr())
    data = IndexedDataset(sparse.csr_matrix(np.column_stack([np.ones(len(X)), X])), np.zeros(len(X)),
                          np.ones(len(X)), np.zeros(len(X)))
    got = score_linear_model(indexed, data, 0.5, random_state=7)
    np.testing.assert_allclose(got, thompson_draw(model.coef_[:k], model.variance_[:k], 0.5, 7)[0]
                               + X @ thompson_draw(model.coef_[:k], model.variance_[:k], 0.5, 7)[1:], atol=1e-12)
    for bad in (np.inf, np.nan, -1.0):
        with pytest.raises(ValueError, match="exploration_threshold must be a finite number"):
            score_linear_model(indexed, data, bad)
        with pytest.raises(ValueError, match="exploration must be a finite number"):
            model.decision_function(X, exploration=bad)
