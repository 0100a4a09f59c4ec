"""Tracking, config, champion (both paths), log_seed, and the `battleground model` commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from battleground.cli.model import app
from battleground.model.tracking import (
    ChampionThresholdError,
    ConfigError,
    ModelSelector,
    TrainingConfig,
    evaluate_from_config,
    load_champion,
    log_seed,
    train_from_config,
)
from battleground.settings import Settings

# The champion tests below are steps of one story on the module's `trained` folder (v1 refused, v2
# refused, v3 promoted, v4 refused): they run on one xdist worker, in file order.
pytestmark = pytest.mark.xdist_group("model_tracking")


def _flat(text: str) -> str:
    return " ".join(text.split())


SEED_002 = {
    "train": {
        "supported_models": ["LGBMClassifier", "LogisticRegression"],
        "max_search_iters": 3,
        "model_opt_timeout_secs": 60,
        "experiment_tracker": "mlflow",
        "project_name": "end-to-end-ml",
        "workspace_name": "your-workspace",
        "comparison_metric": "fbeta_score",
        "fbeta_score_beta_val": 0.5,
        "deployment_score_thresh": 0.99,
        "seed": 7,
        "tuned_models": ["LGBMClassifier"],
        "search_space": {"lightgbm": {"n_estimators": [20, 60], "num_leaves": [7, 31, "log"]}},
    },
    "data": {"synthetic": {"n_characters": 1200, "seed": 7}, "splits_dir": "splits", "artifacts_dir": "artifacts"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Split and train once through the CLI; the tests below evaluate and load from it."""
    folder = tmp_path_factory.mktemp("tracking")
    (folder / "config.yml").write_text(yaml.safe_dump(SEED_002))
    env = {"BATTLEGROUND_HOME": str(folder / ".battleground")}
    runner = CliRunner()
    res = runner.invoke(app, ["split", "--config", str(folder / "config.yml")], env=env)
    assert res.exit_code == 0, res.output
    assert (folder / "splits" / "train.parquet").exists()
    res = runner.invoke(app, ["train", "--config", str(folder / "config.yml")], env=env)
    assert res.exit_code == 0, res.output
    assert "lightgbm" in res.output and "logistic" in res.output
    return folder, env


def test_train_logs_runs_trials_and_study_csv(trained) -> None:
    import mlflow

    folder, env = trained
    settings = Settings.from_env(env)
    assert len(list((folder / "artifacts").glob("*/study_lightgbm.csv"))) == 1  # one folder per batch
    mlflow.set_tracking_uri(settings.mlflow_uri)
    exp = mlflow.get_experiment_by_name("end-to-end-ml")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    models = [r for r in runs if r.data.tags.get("battleground.kind") == "model"]
    trials = [r for r in runs if r.data.tags.get("battleground.kind") == "trial"]
    assert sorted(r.data.tags["model_type"] for r in models) == ["lightgbm", "logistic"]
    assert len(trials) == 3
    lgb = next(r for r in models if r.data.tags["model_type"] == "lightgbm")
    assert lgb.data.tags["seed"] == "7" and len(lgb.data.tags["data_hash"]) == 16
    assert lgb.data.tags["workspace_name"] == "your-workspace"
    assert {"valid_roc_auc", "valid_fbeta", "process_rss_mb", "system_cpu_percent"} <= set(lgb.data.metrics)
    assert 20 <= int(lgb.data.params["n_estimators"]) <= 60
    assert ModelSelector("end-to-end-ml", comparison_metric="fbeta_score", settings=settings).select_best_model()[1] in {
        r.info.run_id for r in models}


def test_champion_below_threshold_is_refused_and_kept_with_reason(trained) -> None:
    import mlflow

    folder, env = trained
    res = CliRunner().invoke(app, ["evaluate", "--config", str(folder / "config.yml")], env=env)
    assert res.exit_code == 1
    assert "is below deployment_score_thresh 0.9900" in _flat(res.output) and "fbeta 0." in _flat(res.output)
    client = mlflow.MlflowClient(Settings.from_env(env).mlflow_uri)
    mv = client.get_model_version("churn", "1")  # the refused candidate stays registered, with its reason
    assert mv.tags["battleground.gate.status"] == "refused" and "0.9900" in mv.tags["battleground.gate.reason"]
    assert client.get_registered_model("churn").aliases == {}
    with pytest.raises(LookupError, match="no model 'churn' with alias 'champion'"):
        load_champion(Settings.from_env(env))


def test_champion_above_threshold_is_registered_and_loads(trained) -> None:
    folder, env = trained
    settings = Settings.from_env(env)
    cfg = TrainingConfig.from_yaml(folder / "config.yml")
    low = TrainingConfig.from_mapping({**SEED_002, "train": {**SEED_002["train"], "deployment_score_thresh": 0.2},
                                       "data": {**cfg.data}})
    with pytest.raises(ChampionThresholdError):
        evaluate_from_config(cfg, settings)
    result = evaluate_from_config(low, settings, plots_dir=folder / "plots")
    assert result.registered and result.promoted and result.version == "3" and result.test_score >= 0.2
    assert (folder / "plots" / "roc.png").exists()
    champ = load_champion(settings)
    assert (champ.name, champ.alias, champ.version) == ("churn", "champion", "3")
    assert champ.model_type == result.model_type and "test_fbeta" in champ.metrics
    import pandas as pd

    test = pd.read_parquet(folder / "splits" / "test.parquet")
    X = test[champ.feature_names].head(10)
    proba = np.asarray(champ.model.predict(X))
    assert proba.shape == (10,) and ((proba > 0) & (proba < 1)).all()
    assert dict(champ.input_schema)["class"] in ("str", "object", "string")
    assert dict(champ.input_schema)["price"] == "float64"


def test_cli_evaluate_of_a_worse_model_keeps_the_champion(trained) -> None:
    """After the good champion (v3 above), a one-stump forest clears a low threshold but loses on test."""
    from battleground.model.gate import champion_history

    folder, env = trained
    settings = Settings.from_env(env)
    worse = {"train": {**SEED_002["train"], "supported_models": ["RandomForestClassifier"],
                       "tuned_models": ["RandomForestClassifier"], "max_search_iters": 1,
                       "deployment_score_thresh": 0.2, "comparison_metric": "roc_auc", "class_weight": None,
                       "calibration": None,  # one stump: two distinct scores
                       "search_space": {"random_forest": {"n_estimators": 1, "max_depth": 1, "max_features": 0.05}}},
             "data": SEED_002["data"]}
    (folder / "worse.yml").write_text(yaml.safe_dump(worse))
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--config", str(folder / "worse.yml")], env=env).exit_code == 0
    res = runner.invoke(app, ["evaluate", "--config", str(folder / "worse.yml")], env=env)
    assert res.exit_code == 1 and "does not beat champion v3" in _flat(res.output), res.output
    assert "paired bootstrap CI" in _flat(res.output)
    assert load_champion(settings).version == "3"
    entries, current = champion_history(settings, "churn")
    assert current == "3" and [e.action for e in entries] == ["refused", "refused", "promoted", "refused"]
    shown = runner.invoke(app, ["history", "churn"], env=env)
    assert shown.exit_code == 0 and "promoted" in shown.output and "refused" in shown.output
    assert "warning" not in shown.output


def test_cli_evaluate_names_the_ab_test_or_fails_before_registering(trained) -> None:
    """``model evaluate --experiment`` resolves the A/B test in the registry first: an unknown one is a
    one-line error and nothing new is registered."""
    import mlflow

    folder, env = trained
    client = mlflow.MlflowClient(Settings.from_env(env).mlflow_uri)
    before = len(client.search_model_versions("name='churn'"))
    res = CliRunner().invoke(app, ["evaluate", "--config", str(folder / "config.yml"), "--experiment", "no-such-test"], env=env)
    assert res.exit_code == 1 and "error:" in res.output and "no-such-test" in res.output, res.output
    assert len(client.search_model_versions("name='churn'")) == before


def test_config_accepts_seed_002_keys_and_refuses_bad_ones(tmp_path) -> None:
    cfg = TrainingConfig.from_mapping(SEED_002)
    assert cfg.project_name == "end-to-end-ml" and cfg.metric == "fbeta"
    with pytest.raises(ConfigError, match=r"comet_ml.*hosted service.*experiment_tracker: mlflow"):
        TrainingConfig.from_mapping({"train": {**SEED_002["train"], "experiment_tracker": "comet_ml"}})
    with pytest.raises(ConfigError, match=r"unknown config key 'max_search_iter'.*did you mean 'max_search_iters'"):
        TrainingConfig.from_mapping({"train": {"max_search_iter": 3}})
    with pytest.raises(ConfigError, match=r"supported_models: model='SVC' is unknown.*valid models"):
        TrainingConfig.from_mapping({"train": {"supported_models": ["SVC"]}})
    missing = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "nope.yml")],
                                 env={"BATTLEGROUND_HOME": str(tmp_path)})
    assert missing.exit_code == 1 and "does not exist" in _flat(missing.output)


def test_log_seed_same_config_same_metrics(tmp_path, settings) -> None:
    assert log_seed({"seed": 11}) == 11
    first = np.random.rand()
    log_seed({"train": {"seed": 11}})
    assert np.random.rand() == first
    drawn = log_seed(None)
    assert isinstance(drawn, int)

    @log_seed
    def node(x: int) -> int:
        return x + 1

    assert node(1) == 2
    from battleground.model.tracking import split_from_config

    raw = {"train": {"supported_models": ["LogisticRegression", "LGBMClassifier"], "max_search_iters": 2,
                     "seed": 5, "project_name": "repro",
                     "search_space": {"lightgbm": {"n_estimators": [10, 40], "num_leaves": [4, 31]}}},
           "data": {"synthetic": {"n_characters": 600}, "splits_dir": str(tmp_path / "s"),
                    "artifacts_dir": str(tmp_path / "a")}}
    split_from_config(raw)
    a = train_from_config(raw, settings)
    split_from_config(raw)
    b = train_from_config(raw, settings)
    assert a.seed == b.seed == 5
    assert [r.model for r in a.runs] == [r.model for r in b.runs] and len(a.runs) == 2
    for ra, rb in zip(a.runs, b.runs, strict=True):
        assert ra.metrics == rb.metrics and ra.run_id != rb.run_id
    assert 0.5 < a.runs[0].metrics["valid_roc_auc"] < 1.0


def test_leaderboard_command(tmp_path) -> None:
    res = CliRunner().invoke(app, ["leaderboard", "--n-characters", "800", "--models", "lightgbm,logistic",
                                   "--top-k", "2"], env={"BATTLEGROUND_HOME": str(tmp_path)})
    assert res.exit_code == 0, res.output
    assert "voting(top 2" in _flat(res.output) and "roc_auc" in res.output
    bad = CliRunner().invoke(app, ["leaderboard", "--models", "lightgbm,svm"], env={"BATTLEGROUND_HOME": str(tmp_path)})
    assert bad.exit_code == 1 and "model='svm' is unknown" in _flat(bad.output)


def test_orchestrator_face_and_churn_demo(settings, churn_sets, tmp_path) -> None:
    from lightgbm import LGBMClassifier

    from battleground.model.tracking import TrainingOrchestrator, run_churn_demo

    X_train, y_train, X_valid, y_valid = churn_sets
    orch = TrainingOrchestrator(None, train_features=X_train, train_class=y_train, valid_features=X_valid,
                                valid_class=y_valid, settings=settings,
                                config={"max_search_iters": 2, "seed": 1, "project_name": "faces",
                                        "data": {"artifacts_dir": str(tmp_path)}})
    study, result = orch.optimize_model(model=LGBMClassifier, search_space_params={"n_estimators": [10, 30]},
                                        registered_model_name="lightgbm_model")
    assert len(study.trials) == 2 and 10 <= result.best_params["n_estimators"] <= 30
    assert study.best_params == result.best_params
    assert len(list(tmp_path.glob("*/study_lightgbm.csv"))) == 1 and result.extra["run"].model == "lightgbm"
    # registered under the name it was given, through the gate; the study sits in the configured storage
    import optuna

    assert result.extra["decision"].name == "lightgbm_model" and result.extra["decision"].version == "1"
    stored = optuna.load_study(study_name=result.study_name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(settings.optuna_storage)))
    assert len(stored.trials) == 2
    # a worse model through the same face does not move the alias
    worse = TrainingOrchestrator(None, train_features=X_train, train_class=y_train, valid_features=X_valid,
                                 valid_class=y_valid, settings=settings,
                                 config={"max_search_iters": 1, "seed": 1, "project_name": "faces",
                                         "comparison_metric": "roc_auc", "deployment_score_thresh": 0.0,
                                         "data": {"artifacts_dir": str(tmp_path)}})
    _, bad = worse.optimize_model(model="random_forest", registered_model_name="lightgbm_model",
                                  search_space_params={"n_estimators": 1, "max_depth": 1, "max_features": 0.05})
    first = result.extra["decision"]
    if first.promoted:
        assert not bad.extra["decision"].promoted and bad.extra["decision"].champion_version == "1"
    assert len(list(tmp_path.glob("*/study_random_forest.csv"))) == 1

    demo = run_churn_demo(settings, n_characters=1500, n_trials=3)
    assert demo.evaluation.registered and demo.evaluation.test_score >= 0.7
    assert demo.evaluation.promoted and demo.evaluation.decision.source == "model evaluate"
    assert {r.model for r in demo.train.runs} == {"lightgbm", "logistic"}
    assert load_champion(settings).version == demo.evaluation.version
    # what the end-to-end demo uses: both fitted models, their metrics and the champion's name/version
    assert set(demo.models) == {"lightgbm", "logistic"} == set(demo.test_metrics) == set(demo.valid_metrics)
    assert demo.models["lightgbm"].predict_proba(X_valid).shape == (len(X_valid), 2)
    assert demo.test_metrics["lightgbm"]["roc_auc"] > demo.test_metrics["logistic"]["roc_auc"] - 0.05
    assert demo.champion == ("churn", demo.evaluation.version)
    assert not (Path.cwd() / "mlruns").exists() or settings.home != Path.cwd()
    artifacts = settings.home / "mlartifacts"
    assert artifacts.is_dir() and any(artifacts.rglob("MLmodel"))
