"""Evaluation artifacts: plots, confusion matrix at the model's threshold, importance, SHAP, model card."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from battleground.model.artifacts import (
    ModelCard,
    evaluation_artifacts,
    metric_intervals,
    shap_summary,
)
from battleground.model.train import Trainer

CARD = ModelCard(name="churn", model_type="lightgbm", data_window="train 2022-06-01, test 2022-12-01")


@pytest.mark.parametrize("kind,calibration", [("lightgbm", None), ("logistic", None), ("lightgbm", "sigmoid"),
                                              ("random_forest", None)])
def test_evaluation_artifacts_for_each_model_family(churn_sets, tmp_path: Path, kind: str,
                                                    calibration: str | None) -> None:
    X_train, y_train, X_test, y_test = churn_sets
    params = {"n_estimators": 30} if kind != "logistic" else None
    model = Trainer(kind, params=params, calibration=calibration).fit(X_train, y_train)
    paths = evaluation_artifacts(model, X_test, y_test, tmp_path, card=CARD, threshold=0.4)
    names = {p.name for p in paths.values()}
    assert {"roc.png", "pr.png", "calibration.png", "confusion_matrix.png", "feature_importance.png",
            "shap_summary.png", "model_card.md", "report.html"} <= names
    for p in paths.values():
        assert p.stat().st_size > 0
    cm = json.loads((tmp_path / "confusion_matrix.json").read_text())
    hard = (model.predict_proba(X_test)[:, 1] >= 0.4).astype(int)
    y = np.asarray(y_test)
    assert cm["threshold"] == 0.4
    assert cm["matrix"] == [[int(((y == 0) & (hard == 0)).sum()), int(((y == 0) & (hard == 1)).sum())],
                            [int(((y == 1) & (hard == 0)).sum()), int(((y == 1) & (hard == 1)).sum())]]
    importance = (tmp_path / "feature_importance.csv").read_text().splitlines()
    assert importance[0] == "feature,importance,sd" and len(importance) == X_test.shape[1] + 1
    card = (tmp_path / "model_card.md").read_text()
    for section in ("## Intended use", "## Metrics (held-out rows, 95 % bootstrap CI)", "## Threshold",
                    "P(class 1) >= 0.4000", "## Features", "data window: train 2022-06-01", "## SHAP"):
        assert section in card
    assert all(c in card for c in X_test.columns)


def test_shap_is_optional(churn_sets, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    X_train, y_train, X_test, y_test = churn_sets
    model = Trainer("lightgbm", params={"n_estimators": 10}).fit(X_train, y_train)
    summary = shap_summary(model, X_test)
    assert summary is not None and summary["mean_abs_shap"].iloc[0] > 0
    monkeypatch.setitem(sys.modules, "shap", None)  # not installed
    assert shap_summary(model, X_test) is None
    paths = evaluation_artifacts(model, X_test, y_test, tmp_path, card=CARD)
    assert "shap_summary" not in paths and "## SHAP" not in (tmp_path / "model_card.md").read_text()


def test_metric_intervals_cover_the_value() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1)
    for value, lo, hi in metric_intervals(y, p, threshold=0.5).values():
        assert lo <= value <= hi and hi - lo < 0.2


def test_pipeline_run_logs_test_metrics_plots_and_a_model_card(settings) -> None:
    from battleground.model.tracking import _mlflow
    from battleground.pipelines.registry import run_pipeline

    run_pipeline("sub_churn_train_from_raw", settings, params={"n_characters": 500})
    client = _mlflow(settings).MlflowClient()
    exp = client.get_experiment_by_name("churn-pipelines")
    run = client.search_runs([exp.experiment_id])[0]
    assert "test_roc_auc" in run.data.metrics and "train_roc_auc" in run.data.metrics
    files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"roc.png", "pr.png", "calibration.png", "confusion_matrix.png", "feature_importance.csv",
            "shap_summary.csv", "model_card.md"} <= files
    local = client.download_artifacts(run.info.run_id, "evaluation/model_card.md")
    assert "test at 2022-10-01" in Path(local).read_text()


def test_leaderboard_prints_json_and_csv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from battleground.cli import app

    monkeypatch.setenv("BATTLEGROUND_HOME", str(tmp_path / "home"))
    args = ["model", "leaderboard", "--models", "logistic", "--n-characters", "400"]
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {r["model"] for r in rows} >= {"logistic"} and all("roc_auc" in r for r in rows)
    out = CliRunner().invoke(app, [*args, "--csv"])
    assert out.exit_code == 0 and out.output.splitlines()[0].startswith("model,")
