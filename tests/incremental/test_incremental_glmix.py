"""GLMix and the fast path on small synthetic streams."""

from __future__ import annotations

import numpy as np
import pytest

from battleground.incremental import (
    GLMix,
    SequentialBayesianLogisticRegression,
    TrainerSequentialBayesianLogisticLossWithL2,
    evaluate,
    make_stream,
)
from battleground.incremental._records import IndexedDataset, IndexedModel


@pytest.fixture(scope="module")
def stream():
    return make_stream(n_batches=6, batch_size=600, holdout_size=600, n_entities=30, n_features=6, seed=11)


def test_batched_equals_single_entity_trainer_loop(stream) -> None:
    from scipy import sparse

    model = GLMix(penalty=5.0, delta=0.7, random_effect_features=["x0", "x2"]).fit_fixed_effect(stream.warmup)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, 600)
    for frame in stream.train[:3]:
        frame = frame.assign(weight=weights)
        before_coef, before_prec = model.re_coef_.copy(), model.re_precision_.copy()
        known = len(model.entities_)
        model.partial_fit(frame)
        fixed = model.fixed_effect_score(frame)
        ent = frame["entity"].astype(str).to_numpy()
        for e in np.unique(ent):
            rows = ent == e
            i = model.entities_.index(e)
            mu = before_coef[i] if i < known else np.zeros(3)
            prec = before_prec[i] if i < known else np.full(3, 5.0)
            Z = np.column_stack([np.ones(rows.sum()), frame.loc[rows, ["x0", "x2"]].to_numpy()])
            data = IndexedDataset(sparse.csr_matrix(Z), frame.loc[rows, "label"].to_numpy(), weights[rows], fixed[rows])
            single, _, _ = TrainerSequentialBayesianLogisticLossWithL2(
                training_data=data, initial_model=IndexedModel(mu, sparse.diags(prec).tocsr()),
                penalty=5.0, delta=0.7).train()
            np.testing.assert_allclose(model.re_coef_[i], single.theta, atol=1e-6)
            np.testing.assert_allclose(model.re_precision_[i], single.precision, rtol=1e-6)
    assert model.n_batches_ == 3 and model.n_records_ == 1800


def test_glmix_beats_fixed_effect_and_unseen_entity_gets_fixed_effect(stream) -> None:
    model = GLMix().fit_fixed_effect(stream.warmup)
    lifts = []
    for train, hold in zip(stream.train, stream.holdout, strict=True):
        model.partial_fit(train)
        lifts.append(evaluate(["auc"], model.decision_function(hold), hold["label"])["auc"]
                     - evaluate(["auc"], model.fixed_effect_score(hold), hold["label"])["auc"])
    assert np.mean(lifts) > 0.03 and lifts[-1] > 0
    row = stream.holdout[0].iloc[:3].copy()
    unseen = row.assign(entity=["never-seen"] * 3)
    np.testing.assert_allclose(model.decision_function(unseen), model.fixed_effect_score(unseen))
    assert not np.allclose(model.decision_function(row), model.fixed_effect_score(row))


def test_state_round_trip_and_validation(stream) -> None:
    model = GLMix().fit_fixed_effect(stream.warmup).partial_fit(stream.train[0])
    arrays, meta = model.get_state()
    clone = GLMix.from_state(arrays, meta)
    hold = stream.holdout[0]
    np.testing.assert_array_equal(clone.decision_function(hold), model.decision_function(hold))
    clone.partial_fit(stream.train[1])
    model.partial_fit(stream.train[1])
    np.testing.assert_array_equal(clone.re_coef_, model.re_coef_)
    with pytest.raises(ValueError, match="entity"):
        GLMix().partial_fit(stream.train[0].drop(columns=["entity"]))
    with pytest.raises(ValueError, match=r"delta .* \[0, 1\], got 1.5"):
        GLMix(delta=1.5).partial_fit(stream.train[0])
    with pytest.raises(ValueError, match="weight must be >= 0"):
        GLMix().partial_fit(stream.train[0].assign(weight=-1.0))
    with pytest.raises(ValueError, match="differ"):
        model.partial_fit(stream.train[2].drop(columns=["x1"]))


def test_fast_path_matches_record_trainer_with_offsets_and_weights(stream) -> None:
    from battleground.incremental import (
        Feature,
        IndexMap,
        TrainingRecord,
        features_from_dict,
        index_domain_coeffs_to_nt_domain_coeffs,
        nt_domain_coeffs_to_index_domain_coeffs,
        nt_domain_data_to_index_domain_data,
    )

    rng = np.random.default_rng(4)
    fast = SequentialBayesianLogisticRegression(penalty=3.0, delta=0.6)
    means: list = []
    variances: list = []
    for frame in stream.train[:3]:
        frame = frame.assign(weight=rng.uniform(0.2, 3, len(frame)), offset=rng.normal(0, 0.3, len(frame)))
        fast.partial_fit(frame)
        xs = [c for c in frame.columns if c.startswith("x")]
        recs = [TrainingRecord(r["label"], r["weight"], r["offset"],
                               [*(Feature(c, "", r[c]) for c in xs), Feature("entity", str(r["entity"]), 1.0)])
                for r in frame.to_dict("records")]
        imap, _ = IndexMap.from_records_means_and_variances(recs, means, variances)
        model, _, _ = TrainerSequentialBayesianLogisticLossWithL2(
            training_data=nt_domain_data_to_index_domain_data(recs, imap),
            initial_model=nt_domain_coeffs_to_index_domain_coeffs(means, variances, imap, 3.0),
            penalty=3.0, delta=0.6).train()
        m, v = index_domain_coeffs_to_nt_domain_coeffs(model, imap)
        means, variances = features_from_dict(m), features_from_dict(v)
    fm, fv = fast.to_nt_domain()
    assert set(fm) == set(m)
    assert max(abs(fm[k] - m[k]) for k in m) < 1e-8
    assert max(abs(fv[k] / v[k] - 1) for k in v) < 1e-8


def test_fast_path_failures_raise_and_leave_model_unchanged(stream) -> None:
    from battleground.incremental import OptimizationError

    single = SequentialBayesianLogisticRegression(max_iter=1, tol=1e-15)
    single.set_params(max_iter=100, tol=1e-9).partial_fit(stream.train[0])
    before = single.coef_.copy()
    single.set_params(max_iter=1, tol=1e-15)
    with pytest.raises(OptimizationError, match="did not converge"):
        single.partial_fit(stream.train[1])
    np.testing.assert_array_equal(single.coef_, before)
    assert single.n_batches_ == 1 and single.last_metadata_["converged"] is False
    single.set_params(on_failure="report").partial_fit(stream.train[1])
    assert single.n_batches_ == 2 and not np.array_equal(single.coef_, before)
    glmix = GLMix(max_iter=1, tol=1e-15)
    with pytest.raises(OptimizationError, match="random-effect update did not converge"):
        glmix.partial_fit(stream.train[0])
    assert glmix.n_batches_ == 0 and not np.any(glmix.re_coef_)


def test_big_batches_build_hessians_per_group_with_same_result(stream, monkeypatch) -> None:
    import battleground.incremental._solver as solver

    stacked = GLMix().fit_fixed_effect(stream.warmup).partial_fit(stream.train[0]).partial_fit(stream.train[1])
    monkeypatch.setattr(solver, "_OUTER_LIMIT", 0)
    grouped = GLMix().fit_fixed_effect(stream.warmup).partial_fit(stream.train[0]).partial_fit(stream.train[1])
    np.testing.assert_allclose(grouped.re_coef_, stacked.re_coef_, atol=1e-12)
    np.testing.assert_allclose(grouped.re_precision_, stacked.re_precision_, rtol=1e-12)


def test_batched_solver_on_wide_sparse_random_effects_matches_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """60 random-effect features, 95 % zeros, 200 entities: the batched solver works on the nonzero
    pattern (no dense n·p² outer products) and gives the per-entity trainer's answers."""
    rng = np.random.default_rng(3)
    E, K, N = 200, 60, 1500
    p_ent = (1.0 + np.arange(E)) ** -0.8
    p_ent /= p_ent.sum()

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ent = rng.choice(E, size=n, p=p_ent)
        X = rng.normal(size=(n, K)) * (rng.random((n, K)) < 0.05)
        y = (rng.random(n) < 1 / (1 + np.exp(1.0 - X[:, :5].sum(axis=1)))).astype(float)
        return X, y, ent

    Xw, yw, _ = draw(3000)
    batches = [draw(N) for _ in range(2)]
    models = {s: GLMix(solver=s).fit_fixed_effect(Xw, yw) for s in ("batched", "loop")}
    for X, y, ent in batches:
        for m in models.values():
            m.partial_fit(X, y, entity=ent)
    fast, ref = models["batched"], models["loop"]
    assert fast.last_metadata_["sparse"] is True and fast.last_metadata_["n_entities"] > 150
    assert fast.entities_ == ref.entities_
    np.testing.assert_allclose(fast.re_coef_, ref.re_coef_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fast.re_precision_, ref.re_precision_, rtol=1e-10, atol=1e-8)
    from battleground.incremental._sparse_groups import SparseGroups

    monkeypatch.setattr(SparseGroups, "pays", staticmethod(lambda X: False))  # the dense stacked systems
    dense = GLMix().fit_fixed_effect(Xw, yw)
    for X, y, ent in batches:
        dense.partial_fit(X, y, entity=ent)
    assert dense.last_metadata_["sparse"] is False
    np.testing.assert_allclose(fast.re_coef_, dense.re_coef_, rtol=0, atol=1e-12)
