"""battleground against the Lambda Learner library's own numbers on the reference stream (seed 7)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from battleground.incremental import (
    Feature,
    GLMix,
    IndexedDataset,
    IndexMap,
    SequentialBayesianLogisticRegression,
    TrainerSequentialBayesianLogisticLossWithL2,
    TrainingRecord,
    evaluate,
    features_from_dict,
    index_domain_coeffs_to_nt_domain_coeffs,
    nt_domain_coeffs_to_index_domain_coeffs,
    nt_domain_data_to_index_domain_data,
    score_linear_model,
)

PENALTY, DELTA, BATCHES = 10.0, 0.8, 30


def _records(X: np.ndarray, y: np.ndarray, ent: np.ndarray) -> list[TrainingRecord]:
    terms = [str(j) for j in range(X.shape[1])]
    return [
        TrainingRecord(
            label=float(label), weight=1.0, offset=0.0,
            features=[*(Feature("x", t, v) for t, v in zip(terms, row.tolist(), strict=True)),
                      Feature("entity", str(int(e)), 1.0)],
        )
        for row, label, e in zip(X, y, ent, strict=True)
    ]


def _batch(s: dict[str, np.ndarray], part: str, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = s[f"{part}_batch"] == t
    return s[f"{part}_X"][m], s[f"{part}_y"][m], s[f"{part}_entity"][m]


def _indexed_holdout(X: np.ndarray, y: np.ndarray, ent: np.ndarray, imap: IndexMap) -> IndexedDataset:
    """Hold-out rows straight to the index domain (2,000 rows a batch: records would only be slow);
    an entity the model has never seen scores 0, as in the reference protocol."""
    n, k = X.shape
    x_cols = [imap.get_index(("x", str(j))) for j in range(k)]
    ent_cols = imap.get_indices([("entity", str(int(e))) for e in ent], unknown="ignore")
    seen = ent_cols >= 0
    rows = np.concatenate([np.arange(n), np.repeat(np.arange(n), k), np.flatnonzero(seen)])
    cols = np.concatenate([np.zeros(n, dtype=np.int64), np.tile(x_cols, n), ent_cols[seen]])
    vals = np.concatenate([np.ones(n), X.ravel(), np.ones(int(seen.sum()))])
    Xs = sparse.csr_matrix((vals, (rows, cols)), shape=(n, len(imap)))
    return IndexedDataset(Xs, y, np.ones(n), np.zeros(n))


def test_record_api_matches_library(stream7: dict[str, np.ndarray], reference: dict[str, Any]) -> None:
    means: list[Feature] = []
    variances: list[Feature] = []
    for t in range(BATCHES):
        train = _records(*_batch(stream7, "train", t))
        imap, _ = IndexMap.from_records_means_and_variances(train, means, variances)
        data = nt_domain_data_to_index_domain_data(train, imap)
        prior = nt_domain_coeffs_to_index_domain_coeffs(means, variances, imap, PENALTY)
        model, loss, meta = TrainerSequentialBayesianLogisticLossWithL2(
            training_data=data, initial_model=prior, penalty=PENALTY, delta=DELTA).train()
        mean_d, var_d = index_domain_coeffs_to_nt_domain_coeffs(model, imap)
        assert var_d is not None
        means, variances = features_from_dict(mean_d), features_from_dict(var_d)
        test = _indexed_holdout(*_batch(stream7, "hold", t), imap)
        auc = evaluate(["auc"], score_linear_model(model, test), test.y)["auc"]
        ref = reference["per_batch"][t]
        assert abs(auc - ref["auc_holdout"]) < 1e-4, t
        assert abs(loss - ref["loss"]) < 1e-4 * abs(ref["loss"]), t
        assert meta["converged"]
    mine = {f"{f.name}|{f.term}": f.value for f in means}
    ref_means = reference["final_model"]["means"]
    assert set(mine) == set(ref_means) and len(mine) == 121
    assert max(abs(mine[k] - v) for k, v in ref_means.items()) < 1e-4
    mine_var = {f"{f.name}|{f.term}": f.value for f in variances}
    ref_var = reference["final_model"]["variances"]
    assert max(abs(mine_var[k] / v - 1) for k, v in ref_var.items()) < 1e-4


def _frame(X: np.ndarray, y: np.ndarray, ent: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(X, columns=[f"x|{j}" for j in range(X.shape[1])])
    frame.insert(0, "label", y)
    frame.insert(0, "entity", ent)
    return frame


def test_fast_path_matches_library(stream7: dict[str, np.ndarray], reference: dict[str, Any]) -> None:
    model = SequentialBayesianLogisticRegression(penalty=PENALTY, delta=DELTA)
    for t in range(BATCHES):
        model.partial_fit(_frame(*_batch(stream7, "train", t)))
        hold = _frame(*_batch(stream7, "hold", t))
        auc = evaluate(["auc"], model.decision_function(hold), hold["label"])["auc"]
        assert abs(auc - reference["per_batch"][t]["auc_holdout"]) < 1e-4, t
        assert abs(model.last_metadata_["loss"] - reference["per_batch"][t]["loss"]) < 1e-3
    means, _ = model.to_nt_domain()
    mine = {f"{n}|{t}": v for (n, t), v in means.items()}
    ref_means = reference["final_model"]["means"]
    assert set(mine) == set(ref_means)
    assert max(abs(mine[k] - v) for k, v in ref_means.items()) < 1e-4


def test_glmix_beats_fixed_effect_and_equals_loop(stream7: dict[str, np.ndarray]) -> None:
    batched = GLMix(penalty=PENALTY, delta=DELTA, fixed_effect_penalty=1.0)
    batched.fit_fixed_effect(stream7["warm_X"], stream7["warm_y"])
    loop = GLMix(penalty=PENALTY, delta=DELTA, fixed_effect_penalty=1.0, solver="loop")
    loop.fit_fixed_effect(stream7["warm_X"], stream7["warm_y"])
    glmix_auc, fixed_auc = [], []
    for t in range(BATCHES):
        X, y, e = _batch(stream7, "train", t)
        batched.partial_fit(X, y, entity=e)
        if t < 5:  # the per-entity loop is the slow reference: a few batches make the point
            loop.partial_fit(X, y, entity=e)
            assert loop.entities_ == batched.entities_
            np.testing.assert_allclose(batched.re_coef_, loop.re_coef_, rtol=0, atol=1e-6)
            np.testing.assert_allclose(batched.re_precision_, loop.re_precision_, rtol=1e-6)
        hX, hy, he = _batch(stream7, "hold", t)
        glmix_auc.append(evaluate(["auc"], batched.decision_function(hX, entity=he), hy)["auc"])
        fixed_auc.append(evaluate(["auc"], batched.fixed_effect_score(hX), hy)["auc"])
    assert batched.last_metadata_["n_entities"] > 80
    assert np.mean(glmix_auc) > np.mean(fixed_auc) + 0.03
    assert np.mean(np.array(glmix_auc[5:]) > np.array(fixed_auc[5:])) > 0.9
