"""Evaluation artifacts of a model run: plots, confusion matrix, feature importance, SHAP, model card.

:func:`evaluation_artifacts` writes into one folder (``roc.png``, ``pr.png``, ``calibration.png``,
``report.html``, ``confusion_matrix.png``/``.json`` at the model's own threshold,
``feature_importance.csv``/``.png`` (permutation importance on the held-out rows, any model),
``shap_summary.csv``/``.png`` (mean |SHAP| per feature, only when the optional ``shap`` package is
installed: extra ``explain``), ``metric_intervals.json`` and ``model_card.md`` (data window,
features, metrics with bootstrap CIs, threshold, intended use). :func:`log_evaluation_artifacts` also logs the folder to an MLflow run.

``task='regression'`` (a regressor) writes ``predicted_vs_actual.png``, ``residuals.png`` and
``residual_histogram.png`` instead of the classification plots and confusion matrix; importance is
the rise in RMSE when a column is shuffled, and the card's metrics are RMSE, MAE and R² with CIs.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CHURN_USE", "REGRESSION_USE", "ModelCard", "evaluation_artifacts", "feature_importance",
           "log_evaluation_artifacts", "metric_intervals", "shap_summary"]

log = logging.getLogger("battleground.model.artifacts")
_MAX_ROWS = 2000  # rows used for permutation importance and SHAP (bounded work)
CHURN_USE = ("Rank live characters by the probability that their subscription churns within the label horizon, "
             "to target retention offers. Not for decisions about individuals without review; re-validate "
             "before use on another game or period.")
REGRESSION_USE = ("Estimate the target for live characters at the cut-off, for planning and ranking. The error "
                  "bands above hold for rows like the held-out ones; not for decisions about individuals without "
                  "review; re-validate before use on another game or period.")
TASKS = ("classification", "regression")


def _check_task(task: str) -> None:
    from battleground.model.data import ModelInputError

    if task not in TASKS:
        raise ModelInputError(f"task={task!r} is unknown; valid tasks: {list(TASKS)}")


@dataclass(frozen=True)
class ModelCard:
    """What the model card says besides the numbers."""

    name: str
    model_type: str
    data_window: str
    intended_use: str | None = None  # None: the task's default (CHURN_USE / REGRESSION_USE)
    version: str | None = None
    run_id: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def _proba(model: Any, X: pd.DataFrame) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.predict(X), dtype=float).ravel()


def _fitted(model: Any) -> Any:
    """The fitted estimator inside an MLflow pyfunc wrapper (or the model itself)."""
    inner = getattr(getattr(model, "_model_impl", None), "python_model", None)
    return getattr(inner, "model", model) if inner is not None else model


def metric_intervals(y: Any, p: Any, *, threshold: float = 0.5, beta: float = 0.5, n_boot: int = 200,
                     seed: int = 0, task: str = "classification") -> dict[str, tuple[float, float, float]]:
    """``{metric: (value, 2.5 %, 97.5 %)}`` for ROC AUC, PR AUC, Brier and F-beta at ``threshold``
    (percentile bootstrap over rows; resamples with one class are skipped); for ``task='regression'``
    (``p`` the predicted values) RMSE, MAE and R²."""
    from battleground.model.train import score

    _check_task(task)
    regression = task == "regression"
    yy = np.asarray(y, dtype=float) if regression else np.asarray(y).astype(int)
    pp = np.asarray(p, dtype=float)
    names = ["rmse", "mae", "r2"] if regression else ["roc_auc", "pr_auc", "brier", "fbeta"]

    def values(a: np.ndarray, b: np.ndarray) -> list[float]:
        return [score(n, a, b, beta=beta, threshold=threshold) for n in names]

    point = values(yy, pp)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(int(n_boot)):
        idx = rng.integers(0, yy.size, yy.size)
        if regression or yy[idx].min() != yy[idx].max():
            draws.append(values(yy[idx], pp[idx]))
    arr = np.asarray(draws) if draws else np.full((1, len(names)), np.nan)
    lo, hi = np.nanquantile(arr, [0.025, 0.975], axis=0)
    return {n: (point[i], float(lo[i]), float(hi[i])) for i, n in enumerate(names)}


def feature_importance(model: Any, X: pd.DataFrame, y: Any, *, n_repeats: int = 3, seed: int = 0,
                       task: str = "classification") -> pd.DataFrame:
    """Permutation importance (drop in ROC AUC when a column is shuffled; for ``task='regression'`` the
    rise in RMSE) on at most 2,000 rows: ``feature``, ``importance``, ``sd``, most important first.
    Works for any model."""
    import pandas as pd
    from sklearn.inspection import permutation_importance

    from battleground.model.train import score

    _check_task(task)
    # higher is better for permutation_importance: the negated RMSE, so importance = RMSE rise
    metric, sign = ("rmse", -1.0) if task == "regression" else ("roc_auc", 1.0)

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(X), min(len(X), _MAX_ROWS), replace=False))
    Xs, ys = X.iloc[idx], np.asarray(y)[idx]

    class _Wrapped:  # permutation_importance wants fit-ed estimator semantics only through the scorer
        def fit(self, *args: Any) -> _Wrapped:
            return self

    def scorer(_: Any, XX: pd.DataFrame, yy: Any) -> float:
        return sign * score(metric, yy, _proba(model, XX))

    result = permutation_importance(_Wrapped(), Xs, ys, scoring=scorer, n_repeats=n_repeats, random_state=seed)
    frame = pd.DataFrame({"feature": list(X.columns), "importance": result.importances_mean,
                          "sd": result.importances_std})
    return frame.sort_values("importance", ascending=False, ignore_index=True)


def _tree_contributions(est: Any, X: pd.DataFrame) -> np.ndarray | None:
    """SHAP values (rows × features) of a LightGBM/XGBoost/forest estimator on ``X``, or None."""
    import shap

    try:
        values = shap.TreeExplainer(est).shap_values(X)
    except Exception:  # categorical splits shap cannot parse: the booster's own exact TreeSHAP
        if hasattr(est, "booster_"):
            return np.asarray(est.booster_.predict(X, pred_contrib=True))[:, :-1]
        if hasattr(est, "get_booster"):
            import xgboost as xgb

            dm = xgb.DMatrix(X, enable_categorical=True)
            return np.asarray(est.get_booster().predict(dm, pred_contribs=True))[:, :-1]
        return None
    arr = np.asarray(values[1] if isinstance(values, list) else values)
    return arr[..., 1] if arr.ndim == 3 else arr


def shap_summary(model: Any, X: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame | None:
    """Mean |SHAP| per feature (``feature``, ``mean_abs_shap``) on at most 2,000 rows, or ``None``
    when ``shap`` is not installed or the model is neither tree-based nor linear.

    A calibrated model is explained through its first calibrated base model (calibration is monotone,
    so the ranking of features holds); a linear model on its preprocessed (one-hot) columns.
    """
    try:
        import shap
    except ImportError:
        return None
    import pandas as pd
    from sklearn.pipeline import Pipeline

    est = _fitted(model)
    rng = np.random.default_rng(seed)
    X = X.iloc[np.sort(rng.choice(len(X), min(len(X), _MAX_ROWS), replace=False))]
    for _ in range(6):  # unwrap Trainer / calibration / Pipeline layers down to the estimator
        if hasattr(est, "_check") and hasattr(est, "estimator_"):  # our Trainer
            X, est = est._check(X), est.estimator_
        elif hasattr(est, "calibrated_classifiers_"):
            est = est.calibrated_classifiers_[0].estimator
        elif isinstance(est, Pipeline):
            for _, step in est.steps[:-1]:
                X = step.transform(X)
            est = est.steps[-1][1]
            if not isinstance(X, pd.DataFrame):
                X = pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
        else:
            break
    values: np.ndarray | None
    if hasattr(est, "coef_"):
        explainer = shap.LinearExplainer(est, np.asarray(X, dtype=float))
        values = np.asarray(explainer.shap_values(np.asarray(X, dtype=float)))
    elif type(est).__module__.split(".")[0] in ("lightgbm", "xgboost") or hasattr(est, "estimators_"):
        values = _tree_contributions(est, X)
    else:
        values = None
    if values is None:
        return None
    frame = pd.DataFrame({"feature": [str(c) for c in X.columns], "mean_abs_shap": np.abs(values).mean(axis=0)})
    return frame.sort_values("mean_abs_shap", ascending=False, ignore_index=True)


def _bar(frame: pd.DataFrame, column: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = frame.head(20).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(top) + 1.2))
    ax.barh(top["feature"].astype(str), top[column])
    ax.set_title(title)
    ax.set_xlabel(column)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _confusion_png(cm: Sequence[Sequence[int]], threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(np.asarray(cm), cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i][j]), ha="center", va="center")
    ax.set_xticks([0, 1], ["predicted 0", "predicted 1"])
    ax.set_yticks([0, 1], ["actual 0", "actual 1"])
    ax.set_title(f"confusion matrix at threshold {threshold:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _threshold_section(threshold: float, cm: Sequence[Sequence[int]]) -> list[str]:
    """The classifier card's threshold and confusion matrix."""
    return ["## Threshold", "",
            f"Class label 1 when P(class 1) >= {threshold:.4f} (tuned for F-beta on validation rows, stored "
            "with the model and used by predict and serving). At that threshold:", "",
            "| | predicted 0 | predicted 1 |", "|---|---|---|",
            f"| actual 0 | {cm[0][0]} | {cm[0][1]} |", f"| actual 1 | {cm[1][0]} | {cm[1][1]} |", ""]


def _card(card: ModelCard, X: pd.DataFrame, rows: str, intended_use: str,
          intervals: Mapping[str, tuple[float, float, float]], extra: Sequence[str],
          importance: pd.DataFrame, importance_unit: str, shap_frame: pd.DataFrame | None) -> str:
    """The Markdown card of either task: ``rows`` describes the held-out rows, ``extra`` are sections
    of the task's own (the classifier's threshold)."""
    lines = [f"# Model card: {card.name}" + (f" v{card.version}" if card.version else ""), "",
             f"- model type: `{card.model_type}`" + (f"; MLflow run `{card.run_id}`" if card.run_id else ""),
             f"- data window: {card.data_window}",
             f"- evaluated on {rows}", "",
             "## Intended use", "", card.intended_use or intended_use, "",
             "## Metrics (held-out rows, 95 % bootstrap CI)", "", "| metric | value | 95 % CI |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {lo:.4f} … {hi:.4f} |" for k, (v, lo, hi) in intervals.items()]
    lines += ["", *extra,
              f"## Features ({X.shape[1]})", "", f"| feature | dtype | permutation importance ({importance_unit}) |",
              "|---|---|---|"]
    imp = dict(zip(importance["feature"], importance["importance"], strict=True))
    lines += [f"| {c} | {X[c].dtype} | {imp.get(c, float('nan')):.4f} |" for c in X.columns]
    if shap_frame is not None:
        lines += ["", "## SHAP (mean |SHAP| per feature, top 10)", ""]
        lines += [f"- {r.feature}: {r.mean_abs_shap:.4f}" for r in shap_frame.head(10).itertuples()]
    if card.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in card.notes)]
    return "\n".join(lines) + "\n"


def evaluation_artifacts(model: Any, X: pd.DataFrame, y: Any, folder: str | Path, *, card: ModelCard,
                         threshold: float = 0.5, beta: float = 0.5, seed: int = 0,
                         task: str = "classification") -> dict[str, Path]:
    """Write every evaluation artifact of ``model`` on the held-out ``(X, y)`` into ``folder``
    (``task='regression'``: the regressor's plots and card; ``threshold`` and ``beta`` do not apply)."""
    from battleground.model.eval import EvalClassifierModel, EvalRegressorModel

    _check_task(task)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    p = _proba(model, X)
    regression = task == "regression"
    thr = float(min(max(threshold, 1e-6), 1 - 1e-6))
    extra: list[str] = []
    if regression:
        reg = EvalRegressorModel()
        paths = reg.plots(p, y, out, title=card.name)
        yy = np.asarray(y, dtype=float)
        rows = f"{yy.size} held-out rows, target mean {yy.mean():.4g} (sd {yy.std(ddof=1) if yy.size > 1 else 0:.4g})"
    else:
        evaluator = EvalClassifierModel(beta=beta, threshold=thr)
        paths = evaluator.plots(p, y, out, title=card.name)
        report = evaluator.calculate(p, y)
        cm = report.confusion_matrix
        paths["confusion_matrix_json"] = out / "confusion_matrix.json"
        paths["confusion_matrix_json"].write_text(json.dumps({"threshold": thr, "labels": [0, 1],
                                                              "matrix": [list(r) for r in cm]}), encoding="utf-8")
        paths["confusion_matrix"] = out / "confusion_matrix.png"
        _confusion_png(cm, thr, paths["confusion_matrix"])
        rows = f"{report.n} held-out rows, positive rate {report.prevalence:.3f}"
        extra = _threshold_section(thr, cm)
    importance = feature_importance(model, X, y, seed=seed, task=task)
    unit = "Δ RMSE" if regression else "Δ ROC AUC"
    paths["feature_importance_csv"] = out / "feature_importance.csv"
    importance.to_csv(paths["feature_importance_csv"], index=False)
    paths["feature_importance"] = out / "feature_importance.png"
    _bar(importance, "importance", paths["feature_importance"], f"permutation importance ({unit})")
    shap_frame = None
    try:
        shap_frame = shap_summary(model, X, seed=seed)
    except Exception as exc:  # explanations are a bonus: never fail an evaluation over them
        log.warning("SHAP summary skipped: %s", exc)
    if shap_frame is not None:
        paths["shap_summary_csv"] = out / "shap_summary.csv"
        shap_frame.to_csv(paths["shap_summary_csv"], index=False)
        paths["shap_summary"] = out / "shap_summary.png"
        _bar(shap_frame, "mean_abs_shap", paths["shap_summary"], "SHAP summary (mean |SHAP|)")
    intervals = metric_intervals(y, p, threshold=thr, beta=beta, seed=seed, task=task)
    paths["metric_intervals"] = out / "metric_intervals.json"
    paths["metric_intervals"].write_text(json.dumps({k: {"value": v, "ci_low": lo, "ci_high": hi}
                                                     for k, (v, lo, hi) in intervals.items()}), encoding="utf-8")
    paths["model_card"] = out / "model_card.md"
    paths["model_card"].write_text(_card(card, X, rows, REGRESSION_USE if regression else CHURN_USE, intervals,
                                         extra, importance, unit, shap_frame), encoding="utf-8")
    return paths


def log_evaluation_artifacts(client: Any, run_id: str, model: Any, X: pd.DataFrame, y: Any, *, card: ModelCard,
                             threshold: float = 0.5, beta: float = 0.5, seed: int = 0,
                             folder: str | Path | None = None, task: str = "classification") -> dict[str, Path]:
    """:func:`evaluation_artifacts` into ``folder`` (a temporary one if None), logged to MLflow run
    ``run_id`` under ``evaluation/``, and each interval as metrics ``test_<metric>_ci_low``/``_ci_high``;
    the returned paths are only valid when ``folder`` is given."""
    import time

    from mlflow.entities import Metric

    with tempfile.TemporaryDirectory(prefix="bg-eval-") as tmp:
        target = Path(folder) if folder is not None else Path(tmp)
        paths = evaluation_artifacts(model, X, y, target, card=card, threshold=threshold, beta=beta, seed=seed,
                                     task=task)
        client.log_artifacts(run_id, str(target), artifact_path="evaluation")
        intervals = json.loads(paths["metric_intervals"].read_text(encoding="utf-8"))
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(f"test_{name}_{end}", float(ci[end]), now, 0)
                                      for name, ci in intervals.items() for end in ("ci_low", "ci_high")
                                      if np.isfinite(ci[end])])
    return paths
