"""The seeds' model examples, run as written (typos fixed), and seed 002's config file taken whole.

Seed 000: ``model.data`` / ``model.train`` / ``model.eval``. Seed 001: the ``@log_seed`` node decorator.
Seed 002: ``training-config.yml``, ``TrainingOrchestrator.optimize_model`` and
``ModelSelector.select_best_model``. The typos fixed are listed where they occur.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

# seed 002's training-config.yml as printed; its "..." in supported_models is filled with the
# other two model types the seed names (Random Forest, XGBoost)
SEED_002_CONFIG = """\
train:
  # Model configuration
  supported_models: ["LGBMClassifier", "LogisticRegression", "RandomForestClassifier", "XGBClassifier"]

  # Optimization settings
  max_search_iters: 100
  model_opt_timeout_secs: 180

  # Experiment tracking
  experiment_tracker: "comet_ml"
  project_name: "end-to-end-ml"
  workspace_name: "your-workspace"

  # Evaluation metrics
  comparison_metric: "fbeta_score"
  fbeta_score_beta_val: 0.5
  deployment_score_thresh: 0.7
"""


def test_seed_000_model_examples_as_written() -> None:
    # --- model.data (seed: `X_train, y_train = preprocess.fit_transform(...)` and
    #     `preprocess.transform(X_text, y_test)`: transformers return X alone, and X_text is X_test)
    from battleground.model.data import CreateDataSet, FeatureSelection, Preprocess

    dataset = CreateDataSet(feature_list=[], train_dt=[], infer_dt=[])
    X_train, y_train = dataset.load_train_set()
    X_test, y_test = dataset.load_test_set()

    fs = FeatureSelection(method="lightgbm")
    X_train_selected = fs.fit_transform(X_train, y_train)
    X_test_selected = fs.transform(X_test)

    preprocess = Preprocess(numerical_features=[], categorical_features=[], imputation_methods=[])
    X_train = preprocess.fit_transform(X_train, y_train)
    X_test = preprocess.transform(X_test)

    assert len(X_train) == len(y_train) > 3000 and len(X_test) == len(y_test) > 2000
    assert 0.1 < y_train.mean() < 0.35
    assert 0 < X_train_selected.shape[1] <= 27 and list(X_test_selected.columns) == list(X_train_selected.columns)
    assert list(X_train.columns) == list(X_test.columns) and not X_train.isna().any().any()

    # --- model.train (seed: `categorical_features` is not defined; it means the categorical columns)
    from battleground.model.train import Trainer

    categorical_features = [c for c in ("gender", "race", "class", "territory", "sub_type") if c in X_train_selected]
    trainer = Trainer(model="lightgbm")
    fit_params = {"categorical_features": categorical_features}
    trainer.fit(X_train_selected, y_train, **fit_params)
    assert set(categorical_features) <= set(trainer.categorical_features_)

    # --- model.eval (seed: `trainer.predict_proba(X_test)`; the model was fitted on the selected
    #     columns, so X_test_selected is meant). EvalRecommenderModel is off-policy evaluation: it
    #     needs logged bandit feedback (action, reward, pscore), not churn labels; see tests/ope.
    from battleground.model.eval import (
        EvalClassifierModel,
        EvalRecommenderModel,
        EvalRegressorModel,
    )

    pred = trainer.predict_proba(X_test_selected)
    assert EvalRecommenderModel(mode="offline").mode == "offline"
    evaluator = EvalClassifierModel()
    report = evaluator.calculate(pred, y_test)
    assert 0.75 <= report.roc_auc <= 0.95  # runs in progress at the cut-off (knowable) are in the population
    assert report.n == len(y_test) and sum(map(sum, report.confusion_matrix)) == len(y_test)
    assert 0.0 < report.brier < 0.25 and 0.0 < report.best_threshold < 1.0
    assert EvalRegressorModel().calculate(pred[:, 1], y_test).rmse == pytest.approx(np.sqrt(report.brier))


@pytest.mark.parametrize("model", ["lightgbm", "xgboost", "linear", "random_forest"])
def test_seed_000_eval_regressor_model_scores_a_battleground_regressor(churn_sets, tmp_path: Path,
                                                                       model: str) -> None:
    """Seed 000 imports ``EvalRegressorModel`` beside the classifier's evaluator; here it evaluates what
    it is for: a :class:`RegressionTrainer` fitted the seed's way (``fit_params`` with the categorical
    columns) on a numeric target of the same churn features, a character's total kills."""
    from battleground.model.eval import EvalRegressorModel
    from battleground.model.train import RegressionTrainer, score

    X_train, _, X_test, _ = churn_sets
    target, leaks = "total_kills", ["total_kills", "death_ratio"]  # kills' own ratio to deaths is no feature
    y_train, y_test = X_train[target], X_test[target]
    X_train, X_test = X_train.drop(columns=leaks), X_test.drop(columns=leaks)
    categorical_features = [c for c in ("gender", "race", "class", "territory", "sub_type") if c in X_train]
    trainer = RegressionTrainer(model=model, params=None if model == "linear" else {"n_estimators": 50})
    fit_params = {"categorical_features": categorical_features}
    trainer.fit(X_train, y_train, **fit_params)

    pred = trainer.predict(X_test)
    evaluator = EvalRegressorModel()
    report = evaluator.calculate(pred, y_test)
    assert report.n == len(y_test)
    for metric in ("rmse", "mae", "r2"):
        assert getattr(report, metric) == pytest.approx(score(metric, y_test, pred), rel=1e-12)
    # better than predicting the training mean, on rows the model never saw
    assert report.rmse < score("rmse", y_test, np.full(len(y_test), y_train.mean())) and report.r2 > 0.1
    assert report.mae < report.rmse
    paths = evaluator.plots(pred, y_test, tmp_path, title=f"{model}: total kills")
    assert {p.name for p in paths.values()} == {"predicted_vs_actual.png", "residuals.png",
                                                "residual_histogram.png", "report.html"}


def test_seed_001_log_seed_decorator(caplog: pytest.LogCaptureFixture) -> None:
    from battleground.model.tracking import log_seed
    from battleground.pipelines import nodes

    @log_seed
    def random_node(frame_size: int, params: dict) -> tuple[int, float]:
        return params["seed"], float(np.random.rand())

    with caplog.at_level(logging.INFO, logger="battleground.model"):
        seed, first = random_node(3, {"seed": 42})
        again = random_node(3, params={"seed": 42})
        drawn, _ = random_node(3, {"other": 1})  # no seed parameter: one is drawn, logged, passed on
    assert seed == 42 and again == (42, first)
    assert isinstance(drawn, int) and drawn >= 0
    logged = [r.getMessage() for r in caplog.records if "random seed for" in r.getMessage()]
    assert len(logged) == 3 and logged[0].endswith(": 42") and logged[2].endswith(f": {drawn}")
    # the pipelines' random nodes carry it
    for node in (nodes.generate_raw, nodes.train_model):
        assert getattr(node, "__wrapped_seeded__", False) and node.__wrapped__ is not None


def test_seed_002_config_file_is_accepted_whole(tmp_path: Path) -> None:
    from battleground.model.tracking import ConfigError, TrainingConfig

    path = tmp_path / "training-config.yml"
    path.write_text(SEED_002_CONFIG)
    with pytest.raises(ConfigError) as err:
        TrainingConfig.from_yaml(path)
    message = str(err.value)
    assert "experiment_tracker='comet_ml'" in message and "hosted service" in message
    assert "experiment_tracker: mlflow" in message  # how to switch
    res = CliRunner().invoke(_cli(), ["model", "train", "--config_yaml_path", str(path)],
                             env={"BATTLEGROUND_HOME": str(tmp_path / "home")})
    assert res.exit_code == 1 and "comet_ml" in res.output and "Traceback" not in res.output

    path.write_text(SEED_002_CONFIG.replace('"comet_ml"', '"mlflow"'))
    cfg = TrainingConfig.from_yaml(path)
    assert cfg.supported_models == ("LGBMClassifier", "LogisticRegression", "RandomForestClassifier",
                                    "XGBClassifier")
    assert (cfg.max_search_iters, cfg.model_opt_timeout_secs) == (100, 180.0)
    assert (cfg.project_name, cfg.workspace_name, cfg.experiment_tracker) == ("end-to-end-ml", "your-workspace",
                                                                               "mlflow")
    assert (cfg.comparison_metric, cfg.metric, cfg.fbeta_score_beta_val, cfg.deployment_score_thresh) == (
        "fbeta_score", "fbeta", 0.5, 0.7)


def _cli():  # type: ignore[no-untyped-def]
    from battleground.cli import app

    return app


def test_seed_002_orchestrator_and_selector_as_written(churn_sets, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # seed: `experiment_manager=CometExperimentManager()` and `tracker=tracker`; MLflow needs neither
    # (the store comes from BATTLEGROUND_HOME / BATTLEGROUND_MLFLOW_URI), so both are None here.
    monkeypatch.setenv("BATTLEGROUND_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    train_features, train_class, valid_features, valid_class = churn_sets
    from battleground.model.tracking import ModelSelector, TrainingOrchestrator

    trainer = TrainingOrchestrator(
        experiment_manager=None,
        train_features=train_features,
        train_class=train_class,
        valid_features=valid_features,
        valid_class=valid_class,
        config={"max_search_iters": 3, "project_name": "end-to-end-ml", "workspace_name": "your-workspace",
                "seed": 3},
    )

    from lightgbm import LGBMClassifier

    lgbm_search_space = {"n_estimators": [20, 80], "learning_rate": [0.03, 0.3, "log"], "num_leaves": [7, 31]}
    tracker = None
    study, optimizer = trainer.optimize_model(
        tracker=tracker,
        model=LGBMClassifier,
        search_space_params=lgbm_search_space,
        registered_model_name="lightgbm_model"
    )
    assert len(study.trials) == 3 and study.best_params == optimizer.best_params
    assert 20 <= optimizer.best_params["n_estimators"] <= 80
    # beside the model as in seed 002, in a folder of this run's own so no run overwrites another's
    assert len(list((tmp_path / "artifacts").glob("*/study_lightgbm.csv"))) == 1
    assert optimizer.extra["decision"].name == "lightgbm_model"  # registered under the name it was given

    selector = ModelSelector(
        project_name="end-to-end-ml",
        workspace_name="your-workspace",
        comparison_metric="validation_score"
    )

    best_model_name, best_experiment_key = selector.select_best_model()
    assert best_model_name == "lightgbm"
    assert best_experiment_key == optimizer.extra["run"].run_id
    # the logged model is the refit (calibrated, as class weights are balanced): close to the best trial
    assert optimizer.extra["run"].valid_score == pytest.approx(study.best_value, abs=0.03)
    assert not (tmp_path / "mlruns").exists()  # artifacts live under the home, not the working folder
