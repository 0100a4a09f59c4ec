"""The record API, the trainers, and the original library's defects that must not come back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from battleground.incremental import (
    Feature,
    HessianType,
    IndexedDataset,
    IndexedModel,
    IndexMap,
    OptimizationError,
    SequentialBayesianLogisticRegression,
    TrainerLogisticLossWithL2,
    TrainerSequentialBayesianLogisticLossWithL2,
    TrainerSquareLossWithL2,
    TrainingRecord,
    UnknownFeatureError,
    evaluate,
    nt_domain_coeffs_to_index_domain_coeffs,
    nt_domain_data_to_index_domain_data,
    score_linear_model,
)


def _data(n: int = 400, k: int = 4, seed: int = 0, weights: np.ndarray | None = None) -> IndexedDataset:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, k))])
    beta = np.linspace(-1, 1, k + 1)
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ beta))).astype(float)
    w = np.ones(n) if weights is None else weights
    return IndexedDataset(sparse.csr_matrix(X), y, w, np.zeros(n))


def _prior(p: int, mean: float = 0.0, precision: float = 10.0) -> IndexedModel:
    return IndexedModel(np.full(p, mean), sparse.diags(np.full(p, precision)).tocsr())


def test_index_map_two_way_and_conversion() -> None:
    recs = [TrainingRecord(1, 1.0, 0.5, [Feature("a", "1", 2.0), Feature("b", "", 1.0)]),
            TrainingRecord(0, 2.0, 0.0, [Feature("a", "2", 3.0), Feature("a", "1", 1.0)])]
    imap, meta = IndexMap.from_records_means_and_variances(recs, [Feature("z", "9", 0.3)], [])
    assert imap.name_terms == [("intercept", "intercept"), ("z", "9"), ("a", "1"), ("b", ""), ("a", "2")]
    assert meta == {"num_nts_in_both": 0, "num_nts_in_coeffs_only": 1, "num_nts_in_records_only": 3}
    assert imap.get_index(("a", "2")) == 4 and imap.get_nt(3) == ("b", "")
    data = nt_domain_data_to_index_domain_data(recs, imap)
    np.testing.assert_array_equal(data.X.toarray(), [[1, 0, 2, 1, 0], [1, 0, 1, 0, 3]])
    np.testing.assert_array_equal(data.y, [1, 0])  # labels kept as given
    np.testing.assert_array_equal(data.w, [1, 2])
    np.testing.assert_array_equal(data.offsets, [0.5, 0])
    other = [TrainingRecord(1, 1.0, 0.0, [Feature("new", "x", 1.0), Feature("a", "1", 4.0)])]
    with pytest.raises(UnknownFeatureError, match="new"):
        nt_domain_data_to_index_domain_data(other, imap)
    ignored = nt_domain_data_to_index_domain_data(other, imap, unknown="ignore")
    np.testing.assert_array_equal(ignored.X.toarray(), [[1, 0, 4, 0, 0]])
    model = nt_domain_coeffs_to_index_domain_coeffs([Feature("a", "1", 0.7)], [Feature("a", "1", 0.25)], imap, 5.0)
    np.testing.assert_allclose(model.theta, [0, 0, 0.7, 0, 0])
    np.testing.assert_allclose(model.variance, [0.2, 0.2, 0.25, 0.2, 0.2])
    with pytest.raises(ValueError, match="variance"):
        nt_domain_coeffs_to_index_domain_coeffs([], [Feature("a", "1", 0.0)], imap, 5.0)


def test_logistic_l2_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    data = _data()
    lam = 2.0
    model, _, meta = TrainerLogisticLossWithL2(training_data=data, initial_model=_prior(5),
                                               penalty=lam, hessian_type=HessianType.FULL).train()
    sk = LogisticRegression(C=1 / lam, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(data.X.toarray(), data.y)
    np.testing.assert_allclose(model.theta, sk.coef_.ravel(), atol=1e-6)
    assert meta["converged"] and model.hessian is not None and model.hessian.shape == (5, 5)
    # the library's L-BFGS reaches the same optimum
    lb, _, lmeta = TrainerLogisticLossWithL2(training_data=data, initial_model=_prior(5), penalty=lam,
                                             solver="lbfgs").train(precision=10.0)
    assert lmeta["solver"] == "lbfgs"
    np.testing.assert_allclose(lb.theta, model.theta, atol=1e-4)


def test_square_loss_closed_form_with_real_labels_and_weights() -> None:
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(200), rng.normal(size=(200, 3))])
    y = X @ [0.5, 1.0, -2.0, 3.0] + rng.normal(0, 0.1, 200)  # real-valued: never forced to ±1
    w = rng.uniform(0.5, 2.0, 200)
    off = rng.normal(size=200)
    data = IndexedDataset(sparse.csr_matrix(X), y, w, off)
    model, loss, _ = TrainerSquareLossWithL2(training_data=data, initial_model=_prior(4), penalty=1.0,
                                             hessian_type=HessianType.DIAGONAL).train()
    expected = np.linalg.solve((X * w[:, None]).T @ X + np.eye(4), X.T @ (w * (y - off)))
    np.testing.assert_allclose(model.theta, expected, atol=1e-10)
    r = X @ expected + off - y
    assert loss == pytest.approx(0.5 * w @ (r * r) + 0.5 * expected @ expected)
    np.testing.assert_allclose(model.precision, np.diag((X * w[:, None]).T @ X) + 1.0)


def test_weights_count_in_mean_and_precision() -> None:
    base = _data(n=300, seed=3)
    X = base.X.toarray()
    doubled = IndexedDataset(sparse.csr_matrix(np.vstack([X, X[:100]])), np.r_[base.y, base.y[:100]],
                             np.ones(400), np.zeros(400))
    weighted = IndexedDataset(base.X, base.y, np.r_[np.full(100, 2.0), np.ones(200)], np.zeros(300))
    kw = {"initial_model": _prior(5, 0.1, 4.0), "penalty": 10.0, "delta": 0.8}
    m_dup, loss_dup, _ = TrainerSequentialBayesianLogisticLossWithL2(training_data=doubled, **kw).train()
    m_w, loss_w, _ = TrainerSequentialBayesianLogisticLossWithL2(training_data=weighted, **kw).train()
    np.testing.assert_allclose(m_w.theta, m_dup.theta, atol=1e-9)
    np.testing.assert_allclose(m_w.precision, m_dup.precision, rtol=1e-9)  # the library ignored weights here
    assert loss_w == pytest.approx(loss_dup)
    unweighted, _, _ = TrainerSequentialBayesianLogisticLossWithL2(
        training_data=IndexedDataset(base.X, base.y, np.ones(300), np.zeros(300)), **kw).train()
    assert np.all(m_w.precision > unweighted.precision)


@pytest.mark.parametrize("bad", [2.0, 0.5, -3.0])
def test_non_binary_labels_are_an_error(bad: float) -> None:
    data = _data(n=50)
    data.y[7] = bad
    for trainer in (TrainerSequentialBayesianLogisticLossWithL2, TrainerLogisticLossWithL2):
        with pytest.raises(ValueError, match=r"binary .*got \[" ):
            trainer(training_data=data, initial_model=_prior(5), penalty=1.0).train()
    with pytest.raises(ValueError, match="binary"):
        SequentialBayesianLogisticRegression().partial_fit(np.ones((3, 1)), [0, 1, 2])


def test_labels_zero_one_and_minus_one_agree() -> None:
    data = _data(n=100)
    pm = IndexedDataset(data.X, np.where(data.y == 1, 1.0, -1.0), data.w, data.offsets)
    a, _, _ = TrainerSequentialBayesianLogisticLossWithL2(training_data=data, initial_model=_prior(5), penalty=3.0).train()
    b, _, _ = TrainerSequentialBayesianLogisticLossWithL2(training_data=pm, initial_model=_prior(5), penalty=3.0).train()
    np.testing.assert_array_equal(a.theta, b.theta)


def test_optimizer_failure_raises_or_reports_never_returns_prior() -> None:
    data = _data(n=300)
    prior = _prior(5, mean=0.3)
    trainer = TrainerSequentialBayesianLogisticLossWithL2(training_data=data, initial_model=prior, penalty=1.0)
    with pytest.raises(OptimizationError, match="did not converge") as info:
        trainer.train(max_iterations=1, gradient_tolerance=1e-14)
    assert info.value.metadata["warnflag"] == 1 and info.value.metadata["nit"] == 1
    reporting = TrainerSequentialBayesianLogisticLossWithL2(training_data=data, initial_model=prior, penalty=1.0,
                                                            on_failure="report")
    model, _, meta = reporting.train(max_iterations=1, gradient_tolerance=1e-14)
    assert meta["converged"] is False and meta["warnflag"] == 1
    assert np.max(np.abs(model.theta - prior.theta)) > 1e-3  # the last iterate, not the prior
    broken = IndexedDataset(data.X, data.y, data.w, np.r_[np.inf, np.zeros(299)])
    with pytest.raises(OptimizationError, match="NON-FINITE"):
        TrainerSequentialBayesianLogisticLossWithL2(training_data=broken, initial_model=prior, penalty=1.0).train()


def test_thompson_sampling_draws_from_variance_not_precision() -> None:
    p = 3
    model = IndexedModel(np.array([1.0, -2.0, 0.5]), sparse.diags([100.0, 4.0, 0.25]).tocsr())
    eye = IndexedDataset(sparse.identity(p, format="csr"), np.zeros(p), np.ones(p), np.zeros(p))
    draws = np.array([score_linear_model(model, eye, 1.0, random_state=s) for s in range(4000)])
    np.testing.assert_allclose(draws.mean(axis=0), model.theta, atol=0.05)
    np.testing.assert_allclose(draws.var(axis=0), [0.01, 0.25, 4.0], rtol=0.08)
    np.testing.assert_array_equal(score_linear_model(model, eye), model.theta)
    with pytest.raises(ValueError, match=">= 0"):
        score_linear_model(model, eye, -1.0)


def test_sequential_update_first_batch_is_plain_l2_and_precision_formula() -> None:
    data = _data(n=500, seed=5)
    lam, delta = 10.0, 0.8
    sb, _, _ = TrainerSequentialBayesianLogisticLossWithL2(training_data=data, initial_model=_prior(5, 0, lam),
                                                           penalty=lam, delta=delta).train()
    lr, _, _ = TrainerLogisticLossWithL2(training_data=data, initial_model=_prior(5), penalty=lam).train()
    np.testing.assert_allclose(sb.theta, lr.theta, atol=1e-9)
    X = data.X.toarray()
    s = 1 / (1 + np.exp(-X @ sb.theta))
    expected = delta * lam + (X**2).T @ (s * (1 - s)) + (1 - delta) * lam
    np.testing.assert_allclose(sb.precision, expected, rtol=1e-9)


def test_evaluate_matches_sklearn_and_validates() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300).astype(float)
    s = y + rng.normal(size=300)
    s[:50] = np.round(s[:50])  # ties
    out = evaluate(metric_list=["auc", "rmse"], y_scores=s, y_targets=y)
    assert out["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((y - s) ** 2)))
    assert evaluate(["auc"], s, np.where(y == 1, 1, -1))["auc"] == pytest.approx(out["auc"])
    with pytest.raises(ValueError, match="unsupported metrics \\['logloss'\\]"):
        evaluate(["auc", "logloss"], s, y)
    with pytest.raises(ValueError, match="both classes"):
        evaluate(["auc"], s, np.ones(300))


def test_full_hessian_prior_is_used_when_chained_without_round_trip() -> None:
    first, _, _ = TrainerSequentialBayesianLogisticLossWithL2(
        training_data=_data(seed=7), initial_model=_prior(5), penalty=2.0, hessian_type=HessianType.FULL).train()
    H0 = first.hessian.toarray()
    assert np.count_nonzero(H0 - np.diag(np.diag(H0))) > 0  # a genuinely full precision
    data = _data(seed=8)
    second, _, meta = TrainerSequentialBayesianLogisticLossWithL2(
        training_data=data, initial_model=first, penalty=2.0, delta=0.5).train()
    X, y = data.X.toarray(), np.where(data.y == 1, 1.0, -1.0)
    s = 1 / (1 + np.exp(y * (X @ second.theta)))
    grad = -X.T @ (y * s) + 0.5 * 2.0 * second.theta + 0.5 * H0 @ (second.theta - first.theta)
    assert np.max(np.abs(grad)) < 1e-7 and meta["converged"]


def test_estimators_clone_and_index_lookups() -> None:
    from sklearn.base import clone

    from battleground.incremental import GLMix

    m = SequentialBayesianLogisticRegression(penalty=3.0, delta=0.5)
    c = clone(m)
    assert c.get_params() == m.get_params() and c is not m
    g = clone(GLMix(penalty=2.0, random_effect_features=["a"]))
    assert g.penalty == 2.0 and g.random_effect_features == ["a"]
    with pytest.raises(ValueError, match="unknown parameter"):
        m.set_params(lambda_=1.0)
    imap = IndexMap()
    imap.batch_push([("a", "1"), ("b", "2")])
    np.testing.assert_array_equal(imap.get_indices(iter([("b", "2"), ("zz", "")]), unknown="ignore"), [2, -1])
    with pytest.raises(UnknownFeatureError, match="zz"):
        imap.get_indices([("a", "1"), ("zz", "")])
    with pytest.raises(RuntimeError, match="not fitted"):
        m.decision_function(np.ones((1, 2)))
