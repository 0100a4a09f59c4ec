"""Evaluation artifacts of a regressor: predicted-vs-actual, residual plots, importance as RMSE rise,
bootstrap CIs of RMSE/MAE/R² and the model card (the classifier's builder), for each regressor family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battleground.model.artifacts import (
    REGRESSION_USE,
    ModelCard,
    evaluation_artifacts,
    metric_intervals,
)
from battleground.model.data import ModelInputError
from battleground.model.eval import EvalRegressorModel
from battleground.model.train import RegressionTrainer, score

CARD = ModelCard(name="value", model_type="lightgbm", data_window="rows 0-999 train, 1000-1499 test")


def test_regression_plots_write_three_pngs_and_html(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(10, 3, 400)
    p = y + rng.normal(0, 1, 400)
    paths = EvalRegressorModel().plots(p, y, tmp_path, title="toy")
    for name in ("predicted_vs_actual", "residuals", "residual_histogram"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 3 and "rmse" in html and "confusion matrix" not in html
    report = EvalRegressorModel().calculate(p, y)
    assert report.metrics() == {"n": 400.0, "rmse": report.rmse, "mae": report.mae, "r2": report.r2,
                                "mape": report.mape}


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "linear", "random_forest"])
def test_regression_artifacts_for_each_family(reg_sets, tmp_path: Path, kind: str) -> None:
    X, y, X_test, y_test = reg_sets
    params = None if kind == "linear" else {"n_estimators": 40}
    model = RegressionTrainer(kind, params=params).fit(X, y)
    paths = evaluation_artifacts(model, X_test, y_test, tmp_path, card=CARD, task="regression")
    names = {p.name for p in paths.values()}
    assert {"predicted_vs_actual.png", "residuals.png", "residual_histogram.png", "report.html",
            "feature_importance.png", "feature_importance.csv", "shap_summary.csv", "metric_intervals.json",
            "model_card.md"} <= names
    assert not {"roc.png", "confusion_matrix.png", "confusion_matrix.json"} & names
    pred = model.predict(X_test)
    ci = json.loads((tmp_path / "metric_intervals.json").read_text())
    assert set(ci) == {"rmse", "mae", "r2"}
    for metric in ci:
        assert ci[metric]["value"] == pytest.approx(score(metric, y_test, pred), rel=1e-12)
        assert ci[metric]["ci_low"] < ci[metric]["value"] < ci[metric]["ci_high"]
    # x1 (slope 3) moves the target most: shuffling it adds an error of variance 2·9, so RMSE rises from
    # r0 (1.0, the noise, for a perfect model) to sqrt(r0² + 18): by 3.36 at r0 = 1, less for a rougher fit
    importance = pd.read_csv(tmp_path / "feature_importance.csv")
    base = score("rmse", y_test, pred)
    assert importance["feature"].iloc[0] == "x1"
    assert importance["importance"].iloc[0] == pytest.approx(np.sqrt(base**2 + 18) - base, rel=0.2)
    assert importance.set_index("feature").loc["x1", "importance"] > importance.set_index("feature").loc[
        "x2", "importance"] > 0
    card = (tmp_path / "model_card.md").read_text()
    for section in ("# Model card: value", "## Intended use", REGRESSION_USE, "| rmse |", "| mae |", "| r2 |",
                    "permutation importance (Δ RMSE)", "data window: rows 0-999", "500 held-out rows, target mean",
                    "## SHAP"):
        assert section in card, section
    assert "## Threshold" not in card and "P(class 1)" not in card


def test_regression_intervals_cover_the_value_and_narrow_with_rows() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (200, 2000):
        y = rng.normal(0, 2, n)
        p = y + rng.normal(0, 1, n)  # rmse about 1, mae about 0.8, r2 about 0.8
        ci = metric_intervals(y, p, task="regression", n_boot=200)
        assert ci["rmse"][1] <= ci["rmse"][0] <= ci["rmse"][2]
        assert ci["rmse"][0] == score("rmse", y, p) and ci["mae"][0] == score("mae", y, p)
        assert ci["rmse"][0] == pytest.approx(1.0, abs=0.15) and ci["r2"][0] == pytest.approx(0.8, abs=0.08)
        widths.append(ci["rmse"][2] - ci["rmse"][1])
    assert widths[1] < 0.5 * widths[0]  # about 1/sqrt(10) as wide
    with pytest.raises(ModelInputError, match="task='ranking' is unknown"):
        metric_intervals([1.0], [1.0], task="ranking")
