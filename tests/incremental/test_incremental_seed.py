"""The seed document 004 example, run against battleground with its imports changed and slips fixed."""

from __future__ import annotations

import numpy as np

from battleground.incremental import (
    Feature,
    IndexMap,
    TrainerSequentialBayesianLogisticLossWithL2,
    TrainingRecord,
    evaluate,
    index_domain_coeffs_to_nt_domain_coeffs,
    make_stream,
    nt_domain_coeffs_to_index_domain_coeffs,
    nt_domain_data_to_index_domain_data,
    score_linear_model,
)


def _records(frame) -> list[TrainingRecord]:
    cols = [c for c in frame.columns if c.startswith("x")]
    return [
        TrainingRecord(
            label=float(row["label"]), weight=float(row["weight"]), offset=float(row["offset"]),
            features=[Feature("x", c[1:], float(row[c])) for c in cols],
        )
        for row in frame.to_dict("records")
    ]


def test_seed_004_example_runs_and_learns() -> None:
    stream = make_stream(n_batches=2, batch_size=3000, holdout_size=3000, n_entities=1, seed=4)
    # Load in and prepare your data and current model (a specific random effect), in "Name Term Value" form.
    training_data: list[TrainingRecord] = _records(stream.train[0])
    test_data: list[TrainingRecord] = _records(stream.holdout[0])
    model_coefficients: list[Feature] = [Feature("x", "0", 0.1)]
    model_coefficienet_variances: list[Feature] = [Feature("x", "0", 0.05)]

    index_map, index_map_metadata = IndexMap.from_records_means_and_variances(
        training_data, model_coefficients, model_coefficienet_variances)
    indexed_training_data = nt_domain_data_to_index_domain_data(training_data, index_map)
    regularization_penalty = 10.0
    initial_model = nt_domain_coeffs_to_index_domain_coeffs(
        model_coefficients, model_coefficienet_variances, index_map, regularization_penalty)
    forgetting_factor = 0.8
    lr_trainer = TrainerSequentialBayesianLogisticLossWithL2(
        training_data=indexed_training_data,
        initial_model=initial_model,
        penalty=regularization_penalty,
        delta=forgetting_factor)
    updated_model, updated_model_loss, training_metadata = lr_trainer.train()

    indexed_test_data = nt_domain_data_to_index_domain_data(test_data, index_map)
    post_train_scores = score_linear_model(updated_model, indexed_test_data)
    trained_model_metrics = evaluate(metric_list=['auc'], y_scores=post_train_scores,
                                     y_targets=indexed_test_data.y)
    trained_model_auc = trained_model_metrics['auc']
    mean_dict, var_dict = index_domain_coeffs_to_nt_domain_coeffs(updated_model, index_map)

    assert index_map_metadata == {"num_nts_in_both": 1, "num_nts_in_coeffs_only": 0,
                                  "num_nts_in_records_only": 9}
    assert len(index_map) == 11 and index_map.get_nt(0) == ("intercept", "intercept")
    assert training_metadata["warnflag"] == 0 and training_metadata["converged"]
    assert np.max(np.abs(training_metadata["grad"])) < 1e-6
    assert 0.65 < trained_model_auc < 1.0
    assert set(mean_dict) == set(var_dict) and len(mean_dict) == 11
    # the posterior is tighter than the prior for every coefficient the data informs
    assert var_dict[("x", "0")] < 0.05 and all(v < 1 / regularization_penalty for v in var_dict.values())
    assert updated_model_loss > 0
