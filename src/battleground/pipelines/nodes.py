"""Kedro nodes: thin, plain functions over :mod:`battleground.datasets` and :mod:`battleground.model`.

Every node takes DataFrames/dicts and parameters and returns values; the catalog does the I/O.
Nodes with randomness carry the :func:`battleground.model.tracking.log_seed` decorator: the seed is
the ``seed`` parameter, applied to ``random``/NumPy before the work and logged (and written to the
MLflow run by ``train_model``). Every node checks its ``params`` keys, so a misspelled key in
``parameters.yml`` fails with the key and the valid ones instead of a ``KeyError`` deep inside.
"""

from __future__ import annotations

import html
import importlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.model.tracking import log_seed
from battleground.pipelines.registry import PipelineError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHURN_PARAMETERS", "batch_predict", "batch_score", "build_features", "build_model", "check_params",
    "generate_raw", "predict_population", "score_model", "train_model",
]

_ALLOWED_MODEL_PREFIXES = ("battleground.model.", "sklearn.", "lightgbm.", "xgboost.")
_NON_FEATURES = ("char_id", "cutoff")
# every key the ``churn`` parameters may hold (conf/base/parameters.yml documents each)
CHURN_PARAMETERS = (
    "env", "seed", "n_characters", "variant", "horizon_months", "train_cutoff", "test_cutoff", "predict_cutoff",
    "new_days", "label", "experiment", "registered_model_name", "preprocessing", "model", "comparison_metric",
    "deployment_score_thresh", "champion_margin", "task", "drop_columns",
)
TASKS = ("classification", "regression")


def check_params(params: Mapping[str, Any]) -> None:
    """Raise a ValueError naming an unknown ``churn`` parameter key (with the closest valid one)."""
    from battleground._suggest import suggest

    if not isinstance(params, Mapping):
        raise PipelineError(f"the churn parameters must be a mapping, got {type(params).__name__}")
    for key in params:
        if key not in CHURN_PARAMETERS:
            raise PipelineError(f"unknown churn parameter {key!r}{suggest(str(key), CHURN_PARAMETERS)}; "
                                f"valid keys: {list(CHURN_PARAMETERS)}")
    drop = params.get("drop_columns")
    if drop is not None and not (isinstance(drop, list | tuple) and all(isinstance(c, str) for c in drop)):
        raise PipelineError(f"churn.drop_columns={drop!r} must be a list of column names, e.g. [churned]")
    if params.get("task", "classification") not in TASKS:
        raise PipelineError(f"churn.task={params['task']!r} is unknown; valid: {list(TASKS)}")
    model = params.get("model")
    if model is not None:
        if not isinstance(model, Mapping) or "class" not in model:
            raise PipelineError(f"churn.model={model!r} needs a 'class' key (and optional 'params')")
        extra = [k for k in model if k not in ("class", "params")]
        if extra:
            raise PipelineError(f"churn.model has unknown keys {extra}; valid keys: ['class', 'params']")


def _require(params: Mapping[str, Any], *keys: str) -> None:
    check_params(params)
    missing = [k for k in keys if k not in params]
    if missing:
        raise PipelineError(f"the churn parameters lack {missing}; set them in parameters.yml")


@log_seed
def generate_raw(params: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The four raw churn tables (seeded synthetic data; ``variant`` picks ``game`` or ``game2``)."""
    from battleground.datasets import make_churn_tables

    _require(params, "n_characters")
    return make_churn_tables(int(params["n_characters"]), seed=int(params["seed"]),
                             variant=params.get("variant", "game"))


def build_features(tables: dict[str, pd.DataFrame], params: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test feature frames (one row per character) at the configured cut-offs."""
    from battleground.datasets import build_churn_features

    _require(params, "train_cutoff", "test_cutoff")
    horizon = int(params.get("horizon_months", 3))
    train = build_churn_features(tables, params["train_cutoff"], horizon_months=horizon)
    test = build_churn_features(tables, params["test_cutoff"], horizon_months=horizon)
    return train, test


def build_model(params: Mapping[str, Any]) -> Any:
    """A scikit-learn ``Pipeline``: the YAML ``preprocessing`` steps then ``model.class(**model.params)``.

    Raises ``ValueError`` when the class lives outside the allowed packages.
    """
    from sklearn.pipeline import Pipeline

    from battleground.model.data import build_preprocessing

    _require(params, "model")
    spec = params["model"]
    path = str(spec["class"])
    if not path.startswith(_ALLOWED_MODEL_PREFIXES):
        raise PipelineError(f"model.class={path!r} is not allowed; use a class from {list(_ALLOWED_MODEL_PREFIXES)}")
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"model.class={path!r} cannot be imported; check the module and class name") from exc
    steps = list(build_preprocessing(list(params.get("preprocessing") or [])).steps) if params.get(
        "preprocessing") else []
    return Pipeline([*steps, ("model", cls(**dict(spec.get("params") or {})))])


def _xy(frame: pd.DataFrame, label: str, params: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, Any]:
    """(features, label values or None): every column but the label, ids and ``drop_columns``."""
    drop = (label, *_NON_FEATURES, *list((params or {}).get("drop_columns") or []))
    X = frame.drop(columns=[c for c in drop if c in frame.columns])
    return X, frame[label].to_numpy() if label in frame.columns else None


def _task(params: Mapping[str, Any], model: Any = None) -> str:
    """``churn.task`` (classification by default), checked against the configured model's kind."""
    task = params.get("task", "classification")
    if task not in TASKS:
        raise PipelineError(f"churn.task={task!r} is unknown; valid: {list(TASKS)}")
    if model is not None:
        from sklearn.base import is_regressor

        final = model.steps[-1][1] if hasattr(model, "steps") else model
        if is_regressor(final) != (task == "regression"):
            kind = "a regressor" if is_regressor(final) else "a classifier"
            raise PipelineError(f"churn.model.class={params['model']['class']!r} is {kind} but churn.task={task!r}; "
                                f"set task: {'regression' if is_regressor(final) else 'classification'} or pick "
                                f"{'a classifier' if is_regressor(final) else 'a regressor'}")
    return str(task)


@log_seed
def train_model(features: pd.DataFrame, holdout: pd.DataFrame, params: Mapping[str, Any], settings_home: str) -> Any:
    """Fit the configured pipeline, log it to MLflow, register it as a candidate of
    ``<registered_model_name>`` and let the champion gate decide on ``@champion`` from its score on
    ``holdout`` (the test cut-off's features), compared with the current champion on the same rows.

    ``settings_home`` is the battleground home whose MLflow store (``BATTLEGROUND_MLFLOW_URI`` if set)
    the run goes to, the same store as ``battleground model train``. A refused candidate is logged,
    stays registered with the reason, and is still returned (the back-test reports on it).
    """
    import logging
    import os
    import time
    import warnings

    from battleground.model.eval import EvalClassifierModel, EvalRegressorModel
    from battleground.model.tracking import TrainingConfig, _mlflow, gate_run_model, use_experiment
    from battleground.settings import Settings

    seed = int(params["seed"])
    label = params.get("label", "churned")
    X, y = _xy(features, label, params)
    X_hold, y_hold = _xy(holdout, label, params)
    model = build_model(params)
    task = _task(params, model)
    regression = task == "regression"
    # the gate's config first: a wrong comparison metric or a missing threshold fails before any run is logged
    gate = {k: params[k] for k in ("deployment_score_thresh",) if k in params}  # regression: no default
    cfg = TrainingConfig.from_mapping({"train": {
        "registered_model_name": str(params.get("registered_model_name", "churn")), "task": task,
        "comparison_metric": str(params.get("comparison_metric", "rmse" if regression else "roc_auc")),
        **({"deployment_score_thresh": 0.6} if not regression else {}), **gate,
        "champion_margin": params.get("champion_margin", 0.0), "seed": seed}})
    if "random_state" in model.steps[-1][1].get_params():
        model.set_params(model__random_state=seed)
    start = time.perf_counter()
    model.fit(X, y)
    fit_seconds = time.perf_counter() - start
    evaluator: Any = EvalRegressorModel() if regression else EvalClassifierModel()
    report = evaluator.calculate(_positive_proba(model, X), y)
    hold = evaluator.calculate(_positive_proba(model, X_hold), y_hold)
    # classifiers: the F-beta-maximising threshold on the training rows labels rows at serving time
    threshold = None if regression else float(report.best_threshold)
    settings = Settings.from_env({**os.environ, "BATTLEGROUND_HOME": str(settings_home)})
    mlflow = _mlflow(settings)
    use_experiment(mlflow, str(params.get("experiment", "churn-pipelines")), settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.models import infer_signature

        from battleground.model._pyfunc import PredictionModel, ProbabilityModel

        with mlflow.start_run(run_name=f"pipeline-train-{params.get('env', 'base')}") as run:
            mlflow.log_params({"seed": seed, "model_class": params["model"]["class"],
                               **{f"model.{k}": v for k, v in dict(params["model"].get("params") or {}).items()}})
            mlflow.log_metrics({**{f"train_{k}": float(v) for k, v in report.metrics().items()},
                                **{f"test_{k}": float(v) for k, v in hold.metrics().items()},
                                "fit_seconds": fit_seconds})
            mlflow.set_tags({"model_type": params["model"]["class"].rsplit(".", 1)[-1], "seed": str(seed),
                             "input_schema": json.dumps([[c, str(X[c].dtype)] for c in X.columns]), "task": task,
                             **({} if threshold is None else {"decision_threshold": repr(threshold)})})
            sample = X.head(20)
            wrapper = PredictionModel(model) if regression else ProbabilityModel(model)
            info = mlflow.pyfunc.log_model(name="model", python_model=wrapper,
                                           signature=infer_signature(sample, _positive_proba(model, sample)))
    from battleground.model.artifacts import ModelCard, log_evaluation_artifacts

    target = (f"target: {label}, at the cut-off" if regression else
              f"label: churn within {params.get('horizon_months', 3)} months")
    window = (f"{params.get('variant', 'game')} tables; train population at {params.get('train_cutoff')}, test "
              f"at {params.get('test_cutoff')}; {target}")
    log_evaluation_artifacts(mlflow.MlflowClient(), run.info.run_id, model, X_hold, y_hold,
                             card=ModelCard(name=str(params.get("registered_model_name", "churn")),
                                            model_type=params["model"]["class"], run_id=run.info.run_id,
                                            data_window=window),
                             threshold=0.5 if threshold is None else threshold, seed=seed, task=task)
    decision = gate_run_model(settings, cfg, info.model_uri, X_hold, y_hold,
                              source=f"pipeline {params.get('env', 'base')}",
                              tags={"model_type": params["model"]["class"].rsplit(".", 1)[-1],
                                    "run_id": run.info.run_id}, strict=False)
    logging.getLogger("battleground.pipelines").warning("champion gate: %s", decision.summary())
    return model


def _report_text(title: str, rows: Mapping[str, float]) -> str:
    width = max(len(k) for k in rows)
    return "\n".join([title, "=" * len(title), *(f"{k:<{width}}  {v:.4f}" for k, v in rows.items())]) + "\n"


def _report_html(title: str, rows: Mapping[str, float], images: list[str]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in rows.items())
    imgs = "".join(f'<img src="{html.escape(p)}" alt="{html.escape(p)}" width="480">' for p in images)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1><table>{body}</table>{imgs}</body></html>")


def _regression_backtest(model: Any, X: pd.DataFrame, y: Any, new: Any, label: str,
                         plots_dir: str) -> tuple[str, str]:
    """:func:`score_model` for a regressor: RMSE, MAE, R² (RMSE and MAE for new characters too) and plots."""
    from battleground.model.eval import EvalRegressorModel
    from battleground.model.train import score

    pred = _positive_proba(model, X)
    rows = {k: v for k, v in EvalRegressorModel().calculate(pred, y).metrics().items() if k != "n"}
    for metric in ("rmse", "mae"):
        rows[f"{metric}_new_characters"] = score(metric, y[new], pred[new]) if new.any() else float("nan")
    rows.update({"mean_target": float(np.mean(y)), "mean_prediction": float(np.mean(pred)),
                 "n_rows": float(len(y)), "n_new_characters": float(new.sum())})
    plots = EvalRegressorModel().plots(pred, y, plots_dir, title=f"{label} back-test")
    title = f"{label} back-test report"
    return _report_text(title, rows), _report_html(title, rows, [str(p) for p in plots.values()])


def score_model(model: Any, features: pd.DataFrame, params: Mapping[str, Any],
                plots_dir: str) -> tuple[str, str]:
    """Back-test report: ROC AUC overall and for new characters (``account_age_days`` < ``new_days``),
    plus the evaluation plots (PNG, in ``plots_dir``); returns (text, HTML). With ``task: regression``:
    RMSE, MAE, R² (RMSE and MAE also for new characters) and the regression plots."""
    from sklearn.metrics import roc_auc_score

    from battleground.model.eval import EvalClassifierModel

    check_params(params)
    label = params.get("label", "churned")
    X, y = _xy(features, label, params)
    new = (features["account_age_days"] < int(params.get("new_days", 90))).to_numpy()
    if _task(params) == "regression":
        return _regression_backtest(model, X, y, new, label, plots_dir)
    proba = model.predict_proba(X)[:, 1]
    rows: dict[str, float] = {"roc_auc": float(roc_auc_score(y, proba))}
    rows["roc_auc_new_characters"] = (float(roc_auc_score(y[new], proba[new])) if len(set(y[new])) == 2
                                      else float("nan"))
    rows.update({k: float(v) for k, v in EvalClassifierModel().calculate(proba, y).metrics().items()
                 if k != "roc_auc"})
    rows["n_rows"] = float(len(y))
    rows["n_new_characters"] = float(new.sum())
    plots = EvalClassifierModel().plots(proba, y, plots_dir, title="churn back-test")
    title = "churn back-test report"
    return _report_text(title, rows), _report_html(title, rows, [str(p) for p in plots.values()])


def _positive_proba(model: Any, X: pd.DataFrame) -> Any:
    """P(class 1): ``predict_proba(X)[:, 1]`` of a fitted estimator, or ``predict(X)`` of a pyfunc (or
    of a regressor: the predicted values)."""
    import numpy as np

    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.predict(X), dtype=float).ravel()


def predict_population(model: Any, tables: dict[str, pd.DataFrame], params: Mapping[str, Any]) -> pd.DataFrame:
    """P(churn) from ``model`` for every character in the population at ``predict_cutoff``, from the
    tables as they stood then (:func:`battleground.datasets.tables_as_of`: no currency row, miss or
    churn run after the cut-off is seen, as in production); no labels are read. With ``task:
    regression`` the column is ``prediction`` (the predicted value) instead of ``churn_probability``."""
    import pandas as pd

    from battleground.datasets import build_churn_features, tables_as_of

    _require(params, "predict_cutoff")
    frame = build_churn_features(tables_as_of(tables, params["predict_cutoff"]), params["predict_cutoff"],
                                 with_label=False)
    X, _ = _xy(frame, params.get("label", "churned"), params)
    column = _prediction_column(params)
    return pd.DataFrame({"char_id": frame["char_id"].to_numpy(), column: _positive_proba(model, X),
                         "cutoff": str(params["predict_cutoff"])})


def _prediction_column(params: Mapping[str, Any]) -> str:
    return "prediction" if _task(params) == "regression" else "churn_probability"


def batch_predict(tables: dict[str, pd.DataFrame], params: Mapping[str, Any], settings_home: str) -> pd.DataFrame:
    """Score the population at ``predict_cutoff`` with ``<registered_model_name>@champion``: the
    model the champion gate promoted (signed files, checked on load), never merely the newest
    candidate this run trained. The rows name the model version that scored them."""
    import os

    from battleground.model.tracking import ModelNotFoundError, load_champion
    from battleground.pipelines.registry import PipelineInputError
    from battleground.settings import Settings

    check_params(params)
    name = str(params.get("registered_model_name", "churn"))
    settings = Settings.from_env({**os.environ, "BATTLEGROUND_HOME": str(settings_home)})
    try:
        champion = load_champion(settings, name)
    except ModelNotFoundError as exc:
        raise PipelineInputError(f"batch predict scores with {name}@champion, and there is none yet ({exc}); run "
                                 "the train pipeline (sub_churn_train_from_raw) until the gate promotes a model") from None
    out = predict_population(champion.model, tables, params)
    out["model_name"] = name
    out["model_version"] = champion.version
    return out


def batch_score(predictions: pd.DataFrame, tables: dict[str, pd.DataFrame], params: Mapping[str, Any]) -> str:
    """Score stored predictions once labels have arrived (labels rebuilt at the same cut-off); with
    ``task: regression`` RMSE, MAE and R² of ``prediction`` against the target."""
    from sklearn.metrics import roc_auc_score

    from battleground.datasets import build_churn_features
    from battleground.model.eval import EvalRegressorModel

    _require(params, "predict_cutoff")
    label = params.get("label", "churned")
    labels = build_churn_features(tables, params["predict_cutoff"], horizon_months=int(
        params.get("horizon_months", 3)))[["char_id", label]]
    joined = predictions.merge(labels, on="char_id", how="inner")
    if joined.empty:
        raise PipelineError("no prediction has a label yet: predictions and labels share no char_id")
    y = joined[label].to_numpy()
    column = _prediction_column(params)
    if column not in joined.columns:
        raise PipelineError(f"the predictions have no {column!r} column (columns: {list(predictions.columns)}); "
                            "run batch predict with the same churn.task")
    p = joined[column].to_numpy()
    if column == "prediction":
        report = EvalRegressorModel().calculate(p, y)
        rows = {"rmse": report.rmse, "mae": report.mae, "r2": report.r2, "mean_target": float(np.mean(y))}
    else:
        rows = {"roc_auc": float(roc_auc_score(y, p)), "churn_rate": float(y.mean())}
    # the same population at the same cut-off: every prediction finds its label (n_unscored 0)
    rows.update({"mean_prediction": float(p.mean()), "n_scored": float(len(y)),
                 "n_unscored": float(len(predictions) - len(joined))})
    title = f"{label} batch score" if column == "prediction" else "churn batch score"
    return _report_text(f"{title} ({params['predict_cutoff']})", rows)
