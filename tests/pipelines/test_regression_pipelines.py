"""The pipelines on a numeric target (``regression_env``: task regression, a character's total kills): train
through the champion gate on rmse (lower is better), regression artifacts and model card in MLflow, the
back-test, batch predict with the champion and batch score; a worse regressor is refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from battleground.pipelines.registry import load_config, run_pipeline
from battleground.settings import Settings

SMALL = {"n_characters": 400}


def _report(path: Path) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1]) for line in path.read_text().splitlines()[2:]}


def test_regression_env_trains_gates_scores_and_refuses_a_worse_regressor(settings: Settings) -> None:
    from battleground.model.gate import champion_history
    from battleground.model.tracking import _mlflow, load_champion
    from battleground.model.train import score

    run_pipeline("sub_churn_train_from_raw", settings, env="regression_env", params=SMALL)
    client = _mlflow(settings).MlflowClient()
    mv = client.get_model_version_by_alias("kills", "champion")
    assert str(mv.version) == "1" and mv.tags["battleground.gate.status"] == "promoted"
    run = client.get_run(mv.run_id)
    assert run.data.tags["task"] == "regression" and "decision_threshold" not in run.data.tags
    assert {"train_rmse", "test_rmse", "test_mae", "test_r2"} <= set(run.data.metrics)
    assert run.data.metrics["test_rmse"] < 1000.0  # the configured deployment_score_thresh (a maximum)
    files = {Path(a.path).name for a in client.list_artifacts(mv.run_id, "evaluation")}
    assert {"predicted_vs_actual.png", "residuals.png", "residual_histogram.png", "feature_importance.csv",
            "metric_intervals.json", "model_card.md"} <= files
    card = Path(client.download_artifacts(mv.run_id, "evaluation/model_card.md")).read_text()
    assert "target: total_kills, at the cut-off" in card and f"| rmse | {run.data.metrics['test_rmse']:.4f} |" in card

    # the back-test on the same test cut-off reports the same rmse as MLflow; no churn label is a feature
    result = run_pipeline("sub_churn_score", settings, env="regression_env", params=SMALL)
    report = _report(result.data_dir / "08_reporting" / "score_report.txt")
    assert report["rmse"] == pytest.approx(run.data.metrics["test_rmse"], abs=1e-4)
    assert 0.1 < report["r2"] < 1.0 and report["n_rows"] > 100
    champ = load_champion(settings, "kills")
    assert champ.task == "regression" and "churned" not in champ.feature_names
    assert "death_ratio" not in champ.feature_names and "total_kills" not in champ.feature_names

    # batch predict with the champion, then batch score against the target at the same cut-off
    result = run_pipeline("sub_churn_batch_score_from_raw", settings, env="regression_env", params=SMALL)
    predictions = pd.read_csv(result.outputs["predictions"])
    assert {"char_id", "prediction", "model_version"} <= set(predictions.columns)
    assert "churn_probability" not in predictions.columns and (predictions["model_version"] == 1).all()
    assert predictions["prediction"].mean() > 100  # kills, not probabilities
    batch = _report(result.data_dir / "08_reporting" / "batch_score_report.txt")
    features = pd.read_parquet(result.data_dir / "04_feature" / "features_test.parquet")  # the same cut-off
    joined = predictions.merge(features[["char_id", "total_kills"]], on="char_id")
    assert batch["rmse"] == pytest.approx(score("rmse", joined["total_kills"], joined["prediction"]), abs=1e-4)
    assert batch["n_unscored"] == 0 and batch["n_scored"] == len(predictions)

    # a worse regressor (the mean), even with the threshold out of the way, does not move the champion
    dummy = {**SMALL, "model": {"class": "sklearn.dummy.DummyRegressor", "params": {"strategy": "mean"}},
             "deployment_score_thresh": 1e9}
    run_pipeline("sub_churn_train", settings, env="regression_env", params=dummy)
    refused = client.get_model_version("kills", "2")
    assert refused.tags["battleground.gate.status"] == "refused"
    assert "does not beat champion v1" in refused.tags["battleground.gate.reason"]
    worse = client.get_run(refused.run_id).data.metrics["test_rmse"]
    assert worse > run.data.metrics["test_rmse"]
    assert str(client.get_model_version_by_alias("kills", "champion").version) == "1"
    entries, current = champion_history(settings, "kills")
    assert current == "1" and [(e.version, e.action) for e in entries] == [("1", "promoted"), ("2", "refused")]
    assert all(e.metric == "rmse" for e in entries)


def test_regression_env_config_and_mismatches(settings: Settings, tmp_path: Path) -> None:
    from battleground.model.tracking import _mlflow
    from battleground.pipelines.registry import PipelineError

    _, base = load_config("base", tmp_path)
    _, reg = load_config("regression_env", tmp_path)
    assert reg["churn"]["task"] == "regression" and reg["churn"]["comparison_metric"] == "rmse"
    assert reg["churn"]["preprocessing"] == [] and reg["churn"]["n_characters"] == base["churn"]["n_characters"]
    run_pipeline("sub_churn_raw", settings, env="regression_env", params=SMALL)
    run_pipeline("sub_churn_standard_features", settings, env="regression_env", params=SMALL)
    classifier = {**SMALL, "model": {"class": "battleground.model.train.Trainer", "params": {"model": "logistic"}}}
    with pytest.raises(PipelineError, match=r"churn.model.class='battleground.model.train.Trainer' is a classifier "
                                            r"but churn.task='regression'; set task: classification"):
        run_pipeline("sub_churn_train", settings, env="regression_env", params=classifier)
    with pytest.raises(PipelineError, match=r"churn\.task='ranking' is unknown"):
        run_pipeline("sub_churn_train", settings, env="regression_env", params={"task": "ranking"})
    with pytest.raises(PipelineError, match=r"churn\.drop_columns='churned' must be a list"):
        run_pipeline("sub_churn_train", settings, env="regression_env", params={"drop_columns": "churned"})
    from battleground.model.tracking import ConfigError

    with pytest.raises(ConfigError, match="comparison_metric='roc_auc' is unknown"):
        run_pipeline("sub_churn_train", settings, env="regression_env", params={"comparison_metric": "roc_auc"})
    # nothing was logged or registered by the refused runs
    client = _mlflow(settings).MlflowClient()
    assert client.get_experiment_by_name("kills-pipelines") is None or not client.search_runs(
        [client.get_experiment_by_name("kills-pipelines").experiment_id])
