"""battleground.model.train: Trainer, tuning (serial and parallel), leaderboard, voting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from battleground.model.train import Trainer, leaderboard, parse_search_space, top_k_voting, tune


@pytest.mark.parametrize("model", ["lightgbm", "xgboost", "logistic", "random_forest", "voting", "LGBMClassifier"])
def test_trainer_fits_every_model_type(churn_sets, model: str) -> None:
    X_train, y_train, X_test, y_test = churn_sets
    params = {"n_estimators": 40} if model in ("lightgbm", "xgboost", "random_forest", "LGBMClassifier") else None
    trainer = Trainer(model, params=params).fit(X_train, y_train)
    proba = trainer.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(y_test, proba[:, 1]) > 0.7
    assert set(trainer.predict(X_test)) <= {0, 1}
    assert clone(trainer).get_params()["params"] == params


def test_lightgbm_gets_categoricals_natively_and_balance(churn_sets) -> None:
    X_train, y_train, _, _ = churn_sets
    t = Trainer("lightgbm", params={"n_estimators": 10}).fit(X_train, y_train, categorical_features=["sub_months"])
    booster = t.estimator_.booster_
    infos = booster.dump_model()["feature_infos"]
    # LightGBM lists the category codes it split on for categorical features, nothing for numeric ones
    for col in ("class", "sub_type", "sub_months"):
        assert len(infos[col]["values"]) >= 2
    assert infos["price"]["values"] == []
    assert t.categorical_features_[-1] == "sub_months" and "class" in t.categorical_features_
    assert str(t._prepare(X_train)["class"].dtype) == "category"
    assert t.estimator_.class_weight == "balanced"
    x = Trainer("xgboost", params={"n_estimators": 5}).fit(X_train, y_train)
    ratio = (y_train == 0).sum() / (y_train == 1).sum()
    assert x.estimator_.get_params()["scale_pos_weight"] == pytest.approx(ratio)
    # an unseen category at predict time is a missing value, not a crash
    odd = X_train.head(5).copy()
    odd["class"] = "Z"
    assert t.predict_proba(odd).shape == (5, 2)


def test_calibration_and_bad_input(churn_sets) -> None:
    X_train, y_train, X_test, _ = churn_sets
    cal = Trainer("lightgbm", params={"n_estimators": 30}, calibration="isotonic").fit(X_train, y_train)
    p = cal.predict_proba(X_test)[:, 1]
    assert abs(p.mean() - y_train.mean()) < 0.08  # balanced weights are undone by calibration
    with pytest.raises(ValueError, match=r"model='lgbm' is unknown.*did you mean 'lgb|valid models"):
        Trainer("lgbm").fit(X_train, y_train)
    with pytest.raises(ValueError, match="two classes"):
        Trainer().fit(X_train, np.zeros(len(X_train)))
    with pytest.raises(ValueError, match=r"categorical_features \['klass'\].*did you mean 'class'"):
        Trainer().fit(X_train, y_train, categorical_features=["klass"])
    with pytest.raises(ValueError, match="lacks the columns"):
        cal.predict_proba(X_test.drop(columns=["price"]))


def test_tune_is_seeded_and_writes_study_csv(churn_sets, tmp_path) -> None:
    X_train, y_train, X_test, y_test = churn_sets
    space = "lightgbm:\n  n_estimators: [20, 60]\n  learning_rate: [0.02, 0.2, log]\n  num_leaves: 15\n"
    a = tune("lightgbm", X_train, y_train, X_test, y_test, search_space=space, n_trials=4, seed=3,
             output_dir=tmp_path)
    b = tune("lightgbm", X_train, y_train, X_test, y_test, search_space=space, n_trials=4, seed=3)
    assert a.best_params == b.best_params and a.best_value == pytest.approx(b.best_value)
    assert a.best_params["num_leaves"] == 15 if "num_leaves" in a.best_params else True
    assert 1 <= a.trainer.estimator_.n_estimators <= 60  # early stopping may keep fewer than the low bound
    csv = pd.read_csv(tmp_path / "study_lightgbm.csv")
    assert len(csv) == 4 and "params_learning_rate" in csv.columns
    with pytest.raises(ValueError, match=r"\[low, high\] or \[low, high, log\]"):
        parse_search_space({"lightgbm": {"num_leaves": [4, 8, "log2"]}})
    with pytest.raises(ValueError, match="SQLite breaks under parallel workers"):
        tune("lightgbm", X_train, y_train, X_test, y_test, n_workers=2, storage="sqlite:///x.db")
    with pytest.raises(ValueError, match="metric='auc' is unknown"):
        tune("lightgbm", X_train, y_train, X_test, y_test, metric="auc")


def test_parallel_tuning_shares_a_journal_study(churn_sets, tmp_path) -> None:
    import os

    from battleground.model.train import TuningWorkers

    X_train, y_train, X_test, y_test = churn_sets
    journal = str(tmp_path / "optuna.journal")
    space = {"logistic": {"C": [0.01, 10.0, "log"]}}
    with TuningWorkers(2).start() as pool:  # started once, reused by both studies
        assert len(pool.pids) == 1 and os.getpid() not in pool.pids
        r = tune("logistic", X_train, y_train, X_test, y_test, search_space=space, n_trials=4, n_workers=2,
                 storage=journal, study_name="par", workers=pool)
        again = tune("logistic", X_train, y_train, X_test, y_test, search_space=space, n_trials=3, n_workers=2,
                     storage=journal, study_name="par-2", workers=pool, prune=False)
        with pytest.raises(ValueError, match="workers has 2 workers but n_workers=3"):
            tune("logistic", X_train, y_train, X_test, y_test, n_trials=2, n_workers=3, storage=journal, workers=pool)
    assert len(r.trials) == 4 and r.n_complete == 4  # exactly n_trials, whichever worker ran them
    assert len(again.trials) == 3 and again.n_complete == 3
    assert (tmp_path / "optuna.journal").stat().st_size > 0
    assert r.best_value == pytest.approx(r.trials["value"].max())
    assert r.study.best_value == pytest.approx(r.best_value)


def test_leaderboard_and_top_k_voting(churn_sets) -> None:
    X_train, y_train, X_test, y_test = churn_sets
    board = leaderboard(X_train, y_train, X_test, y_test, models=["lightgbm", "logistic", "random_forest"],
                        params={"lightgbm": {"n_estimators": 40}, "random_forest": {"n_estimators": 40}})
    table = board.table
    assert list(table["roc_auc"]) == sorted(table["roc_auc"], reverse=True)
    # models given parameters also show their untuned defaults
    assert set(table["model"]) == {"lightgbm", "logistic", "random_forest", "lightgbm (default)",
                                   "random_forest (default)"}
    voter = top_k_voting(board, X_train, y_train, k=2)
    assert list(voter.voting_models) == [m for m in table["model"] if not m.endswith("(default)")][:2]
    assert roc_auc_score(y_test, voter.predict_proba(X_test)[:, 1]) > table["roc_auc"].min() - 0.02


def test_tuning_on_postgresql_storage(churn_sets, postgres_url) -> None:
    import optuna

    X_train, y_train, X_test, y_test = churn_sets
    space = {"logistic": {"C": [0.01, 10.0, "log"]}}
    r = tune("logistic", X_train, y_train, X_test, y_test, search_space=space, n_trials=2, storage=postgres_url,
             study_name="pg-study")
    stored = optuna.load_study(study_name="pg-study", storage=postgres_url)
    assert len(stored.trials) == 2 and stored.best_value == pytest.approx(r.best_value)
    # parallel workers across processes (or machines) share the study through the database
    par = tune("logistic", X_train, y_train, X_test, y_test, search_space=space, n_trials=4, n_workers=2,
               storage=postgres_url, study_name="pg-parallel")
    stored = optuna.load_study(study_name="pg-parallel", storage=postgres_url)
    assert len(stored.trials) == 4 == par.n_complete


@pytest.mark.parametrize("metric", ["fbeta", "pr_auc"])
def test_pruned_trials_carry_no_value_of_another_metric(churn_sets, metric) -> None:
    """Optuna stores a pruned trial's last reported value as its value: it must be the objective's own."""
    from sklearn import metrics as m

    from battleground.model.train import tune

    X_train, y_train, X_valid, y_valid = churn_sets
    space = {"lightgbm": {"n_estimators": [40, 120], "learning_rate": [0.005, 0.5, "log"],
                          "num_leaves": [2, 64, "log"]}}
    result = tune("lightgbm", X_train, y_train, X_valid, y_valid, search_space=space, n_trials=8, metric=metric,
                  seed=3)
    pruned = [t for t in result.study.trials if t.state.name == "PRUNED"]
    if metric == "fbeta":  # no validation curve of F-beta: nothing is pruned, every value is an F-beta
        assert pruned == [] and result.n_complete == 8
        # ... at the threshold tuned on validation, the one stored with the model
        from battleground.model.train import best_fbeta

        thr, best = best_fbeta(y_valid, result.trainer.predict_proba(X_valid)[:, 1])
        assert result.best_value == pytest.approx(best) and thr != 0.5
    else:  # pruned on the average-precision curve: a pruned value is a PR AUC, not a ROC AUC
        curve = {int(k): v for t in result.study.trials for k, v in t.intermediate_values.items()}
        assert curve, "the PR AUC curve was reported"
        auc = m.roc_auc_score(y_valid, result.trainer.predict_proba(X_valid)[:, 1])
        ap = m.average_precision_score(y_valid, result.trainer.predict_proba(X_valid)[:, 1])
        assert result.best_value == pytest.approx(ap) and abs(ap - auc) > 0.03  # two different numbers
        for t in pruned:
            assert t.value == t.intermediate_values[max(t.intermediate_values)]


def test_config_calibrates_by_default_when_classes_are_weighted(churn_sets) -> None:
    """Balanced class weights inflate P(churn); the config's default calibration brings it back."""
    from battleground.model.tracking import ConfigError, TrainingConfig

    cfg = TrainingConfig.from_mapping({"train": {}})
    assert (cfg.class_weight, cfg.calibration_method) == ("balanced", "sigmoid")
    assert TrainingConfig.from_mapping({"train": {"class_weight": None}}).calibration_method is None
    assert TrainingConfig.from_mapping({"train": {"calibration": "isotonic"}}).calibration_method == "isotonic"
    with pytest.raises(ConfigError, match="calibration='platt' is unknown"):
        TrainingConfig.from_mapping({"train": {"calibration": "platt"}})
    X_train, y_train, X_test, y_test = churn_sets
    rate = float(np.mean(y_test))
    raw = Trainer("logistic", class_weight="balanced").fit(X_train, y_train).predict_proba(X_test)[:, 1]
    cal = Trainer("logistic", class_weight="balanced", calibration=cfg.calibration_method).fit(
        X_train, y_train).predict_proba(X_test)[:, 1]
    assert raw.mean() - rate > 0.06 and abs(cal.mean() - rate) < 0.03


def test_leaderboard_shows_untuned_defaults_and_grouped_cv_spread(churn_sets) -> None:
    X_train, y_train, X_valid, y_valid = churn_sets
    groups = np.arange(len(X_train)) // 2  # two rows per "entity"
    board = leaderboard(X_train, y_train, X_valid, y_valid, models=["lightgbm", "logistic"],
                        params={"lightgbm": {"n_estimators": 5, "num_leaves": 2}}, cv=3, groups=groups)
    table = board.table.set_index("model")
    assert set(table.index) == {"lightgbm", "lightgbm (default)", "logistic"}
    # the crippled "tuned" LightGBM loses to its own default, and the board shows it
    assert table.loc["lightgbm (default)", "roc_auc"] > table.loc["lightgbm", "roc_auc"]
    assert (table["cv_roc_auc_sd"] > 0).all() and table["cv_roc_auc_mean"].between(0.5, 1).all()
    with pytest.raises(ValueError, match="cv=1 must be 0"):
        leaderboard(X_train, y_train, X_valid, y_valid, models=["logistic"], cv=1)


def test_tuning_stops_boosting_early_on_the_validation_fold(churn_sets) -> None:
    X_train, y_train, X_valid, y_valid = churn_sets
    space = {"lightgbm": {"n_estimators": [300, 400], "learning_rate": [0.3, 0.5], "num_leaves": [31, 63]}}
    result = tune("lightgbm", X_train, y_train, X_valid, y_valid, search_space=space, n_trials=2, seed=0)
    rounds = result.study.best_trial.user_attrs["best_iteration"]
    assert 0 < rounds < result.best_params["n_estimators"]  # a fast learner stops long before 300 rounds
    assert result.trainer.params["n_estimators"] == rounds
