"""The regression path: RegressionTrainer (LightGBM, XGBoost, linear, random forest), tuning on rmse,
config ``task: regression`` through MLflow, the champion gate on rmse, batch predict and serving
returning numbers. Data: a seeded synthetic target with numeric and categorical columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.model.regression_data import log_regressor, regression_frame

from battleground.model.data import ModelInputError
from battleground.model.train import REGRESSORS, RegressionTrainer, Trainer, score, tune
from battleground.settings import Settings


@pytest.mark.parametrize("model", [*REGRESSORS, "LGBMRegressor", "Ridge"])
def test_each_regressor_learns_the_target(reg_sets, model) -> None:
    from sklearn.base import is_regressor

    X, y, X_test, y_test = reg_sets
    params = {"n_estimators": 60} if model in ("lightgbm", "xgboost", "random_forest", "LGBMRegressor") else None
    reg = RegressionTrainer(model, params=params).fit(X, y)
    pred = reg.predict(X_test)
    assert is_regressor(reg) and pred.dtype == np.float64 and pred.shape == (len(X_test),)
    assert reg.categorical_features_ == ["level", "region"]
    base = score("rmse", y_test, np.full(len(y_test), y.mean()))  # the mean: about 3.6
    assert score("rmse", y_test, pred) < 0.5 * base and score("r2", y_test, pred) > 0.75
    # the noise floor is 1.0; a linear model of a linear target sits on it
    if reg.kind_ == "linear":
        assert score("rmse", y_test, pred) == pytest.approx(1.0, abs=0.1)
    # an unseen category scores as missing (a number, not an error)
    odd = X_test.head(3).assign(level=["platinum", "gold", None])
    assert np.isfinite(reg.predict(odd)).all()


def test_regression_inputs_are_checked(reg_sets) -> None:
    X, y, _, _ = reg_sets
    with pytest.raises(ModelInputError, match="is not a regressor"):
        RegressionTrainer("logistic").fit(X, y)
    with pytest.raises(ModelInputError, match="is a regressor"):
        Trainer("linear").fit(X, (y > 12).astype(int))
    with pytest.raises(ModelInputError, match="must be numeric"):
        RegressionTrainer("linear").fit(X, np.array(["a"] * len(X)))
    with pytest.raises(ModelInputError, match="1 missing or infinite"):
        RegressionTrainer("linear").fit(X, y.where(y.index != 3))
    with pytest.raises(ModelInputError, match="unknown parameter 'C'"):
        RegressionTrainer("linear", params={"C": 1.0}).fit(X, y)


def test_tune_regression_minimises_rmse(reg_sets) -> None:
    import optuna

    X, y, X_valid, y_valid = reg_sets
    space = {"lightgbm": {"n_estimators": [20, 80], "num_leaves": [4, 32, "log"]}}
    res = tune("lightgbm", X, y, X_valid, y_valid, search_space=space, n_trials=4, metric="rmse", task="regression",
               seed=0)
    assert res.study.direction == optuna.study.StudyDirection.MINIMIZE
    values = [t.value for t in res.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert res.best_value == min(values) and isinstance(res.trainer, RegressionTrainer)
    # the refit uses the best trial's rounds; its rmse on the validation rows is the study's best
    assert score("rmse", y_valid, res.trainer.predict(X_valid)) == pytest.approx(res.best_value, rel=1e-6)
    r2 = tune("linear", X, y, X_valid, y_valid, n_trials=2, metric="r2", task="regression", seed=0)
    assert r2.study.direction == optuna.study.StudyDirection.MAXIMIZE and r2.best_value > 0.8
    with pytest.raises(ModelInputError, match="does not score regression"):
        tune("lightgbm", X, y, X_valid, y_valid, n_trials=1, metric="roc_auc", task="regression")
    with pytest.raises(ModelInputError, match="cannot be tuned for regression"):
        tune("logistic", X, y, X_valid, y_valid, n_trials=1, metric="rmse", task="regression")


def test_gate_on_rmse_keeps_the_lower_error(tmp_path, reg_sets) -> None:
    """A candidate with a higher rmse is refused and one with a lower rmse promoted; the threshold is
    the largest rmse allowed."""
    from battleground.model.gate import champion_gate, register_candidate

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    X, y, X_test, y_test = reg_sets
    rough = RegressionTrainer("linear").fit(X[["x1"]].assign(x2=0.0, level="gold", region="r0"), y)  # ignores 3 columns
    fine = RegressionTrainer("linear").fit(X, y)
    rough_rmse, fine_rmse = score("rmse", y_test, rough.predict(X_test)), score("rmse", y_test, fine.predict(X_test))
    assert fine_rmse < rough_rmse

    def gate(model, threshold):
        version = register_candidate(settings, log_regressor(settings, model, X_test, "regression-gate"), "value", source="test")
        return champion_gate(settings, "value", version, X_test, y_test, metric="rmse", threshold=threshold,
                             source="test", n_boot=50)

    first = gate(rough, threshold=10.0)
    assert first.promoted and first.candidate_score == pytest.approx(rough_rmse)
    better = gate(fine, threshold=10.0)
    assert better.promoted and better.delta == pytest.approx(fine_rmse - rough_rmse)
    assert better.ci_low <= better.delta <= better.ci_high < 0
    worse = gate(rough, threshold=10.0)
    assert not worse.promoted and worse.delta > 0 and "does not beat champion v2" in worse.reason
    capped = gate(fine, threshold=0.5)  # below the noise floor: no model clears it
    assert not capped.promoted and "above deployment_score_thresh 0.5000" in capped.reason


def test_regression_config_trains_gates_scores_and_serves(tmp_path) -> None:
    """``task: regression`` end to end: split (deciles of the target), tune + train LightGBM and Ridge with
    MLflow, evaluate on test through the gate (rmse), batch predict and serve numbers."""
    import yaml
    from fastapi.testclient import TestClient

    from battleground.model.batch import batch_predict
    from battleground.model.serve import create_app
    from battleground.model.tracking import (
        TrainingConfig,
        _mlflow,
        evaluate_from_config,
        load_champion,
        split_from_config,
        train_from_config,
    )

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    frame = regression_frame(1200, seed=11)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    config = {
        "train": {"task": "regression", "supported_models": ["LGBMRegressor", "Ridge"],
                  "tuned_models": ["LGBMRegressor"], "max_search_iters": 2, "deployment_score_thresh": 2.0,
                  "project_name": "value-test", "seed": 0, "registered_model_name": "value",
                  "search_space": {"lightgbm": {"n_estimators": [20, 60]}}},
        "data": {"input": "rows.csv", "label": "target", "id_columns": ["char_id"], "drop_columns": [],
                 "splits_dir": "splits", "artifacts_dir": "artifacts"},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    cfg = TrainingConfig.from_yaml(path)
    assert cfg.metric == "rmse" and cfg.calibration_method is None
    split_from_config(cfg)
    trained = train_from_config(cfg, settings)
    assert [r.model for r in trained.runs] == sorted((r.model for r in trained.runs),
                                                     key=lambda m: dict((r.model, r.valid_score) for r in trained.runs)[m])
    assert {r.model for r in trained.runs} == {"lightgbm", "linear"}
    assert all(r.valid_score == pytest.approx(r.metrics["valid_rmse"]) for r in trained.runs)
    best = trained.runs[0]  # the lowest validation rmse first
    assert best.valid_score == min(r.valid_score for r in trained.runs)
    client = _mlflow(settings).MlflowClient()
    run = client.get_run(best.run_id)
    assert run.data.tags["task"] == "regression" and "decision_threshold" not in run.data.tags
    assert {"valid_rmse", "valid_mae", "valid_r2"} <= set(run.data.metrics)
    res = evaluate_from_config(cfg, settings)
    assert res.promoted and res.model_type == best.model and res.test_score < 2.0
    assert res.test_metrics["rmse"] == pytest.approx(res.test_score) and res.test_metrics["r2"] > 0.8
    assert {"test_rmse", "test_r2"} <= set(client.get_run(best.run_id).data.metrics)
    # the evaluation artifacts of a regressor, logged to the run: its plots, importance and model card
    from pathlib import Path

    files = {Path(a.path).name for a in client.list_artifacts(best.run_id, "evaluation")}
    assert {"predicted_vs_actual.png", "residuals.png", "residual_histogram.png", "feature_importance.csv",
            "metric_intervals.json", "model_card.md"} <= files and "roc.png" not in files
    card = Path(client.download_artifacts(best.run_id, "evaluation/model_card.md")).read_text()
    assert f"| rmse | {res.test_metrics['rmse']:.4f} |" in card and "rows.csv; stratified split" in card
    logged = client.get_run(best.run_id).data.metrics
    for metric in ("rmse", "mae", "r2"):  # the intervals as run metrics too
        assert logged[f"test_{metric}_ci_low"] < logged[f"test_{metric}"] < logged[f"test_{metric}_ci_high"]

    champ = load_champion(settings, "value")
    assert champ.task == "regression" and champ.version == res.version
    test = pd.read_parquet(cfg.splits_dir / "test.parquet")
    expected = trained.trainers[best.model].predict(test.drop(columns=["char_id", "target"]))
    test.to_parquet(tmp_path / "test_in.parquet", index=False)
    out = batch_predict(champ, tmp_path / "test_in.parquet", tmp_path / "pred.parquet", chunk_rows=100)
    written = pd.read_parquet(tmp_path / "pred.parquet")
    assert out.rows == len(test) and list(written.columns) == ["char_id", "prediction"]
    np.testing.assert_allclose(written["prediction"].to_numpy(), expected, rtol=1e-12)
    assert written["prediction"].max() > 1.0  # values on the target's scale, not probabilities

    app = create_app(settings, "value", poll_seconds=0)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        record = json.loads(test.drop(columns=["target"]).head(2).to_json(orient="records"))
        body = http.post("/predict", json=record).json()
        assert body["task"] == "regression" and "labels" not in body
        np.testing.assert_allclose(body["predictions"], expected[:2], rtol=1e-9)
        assert http.get("/model").json()["task"] == "regression"


def test_regression_config_errors() -> None:
    from battleground.model.tracking import ConfigError, TrainingConfig

    with pytest.raises(ConfigError, match="needs deployment_score_thresh"):
        TrainingConfig.from_mapping({"train": {"task": "regression"}})
    with pytest.raises(ConfigError, match="'LogisticRegression' is not a regressor"):
        TrainingConfig.from_mapping({"train": {"task": "regression", "deployment_score_thresh": 3.0,
                                               "supported_models": ["LogisticRegression"]}})
    with pytest.raises(ConfigError, match="comparison_metric='roc_auc' is unknown"):
        TrainingConfig.from_mapping({"train": {"task": "regression", "deployment_score_thresh": 3.0,
                                               "comparison_metric": "roc_auc"}})
    with pytest.raises(ConfigError, match="task='ranking' is unknown"):
        TrainingConfig.from_mapping({"train": {"task": "ranking"}})
    with pytest.raises(ConfigError, match="'Ridge' is a regressor"):
        TrainingConfig.from_mapping({"train": {"supported_models": ["Ridge"]}})
    cfg = TrainingConfig.from_mapping({"train": {"task": "regression", "deployment_score_thresh": 0.5,
                                                 "comparison_metric": "r2"}})
    assert cfg.supported_models == ("LGBMRegressor", "Ridge") and cfg.metric == "r2"
