"""The leaderboard for regressors: RMSE/MAE/R² per family, untuned default rows beside tuned ones,
k-fold CV grouped by entity (mean and sd), ranking in the metric's own direction; and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.model.regression_data import regression_frame
from typer.testing import CliRunner

from battleground.model.data import ModelInputError
from battleground.model.train import RegressionTrainer, leaderboard, score


def test_regression_board_ranks_by_rmse_and_shows_defaults(reg_sets) -> None:
    X, y, X_valid, y_valid = reg_sets
    crippled = {"lightgbm": {"n_estimators": 3, "num_leaves": 2}}  # a "tuned" model worse than its default
    board = leaderboard(X, y, X_valid, y_valid, models=["lightgbm", "linear", "random_forest"], params=crippled,
                        task="regression")
    table = board.table.set_index("model")
    assert board.metric == "rmse" and set(table.index) == {"lightgbm", "lightgbm (default)", "linear",
                                                           "random_forest"}
    assert board.table["rmse"].is_monotonic_increasing  # smallest error first
    assert board.table["model"].iloc[0] == "linear"  # a linear target: Ridge sits on the noise floor (1.0)
    assert table.loc["linear", "rmse"] == pytest.approx(1.0, abs=0.1)
    assert table.loc["lightgbm (default)", "rmse"] < table.loc["lightgbm", "rmse"]
    # the numbers are the metrics of the fitted trainers on the validation rows
    p = board.trainers["lightgbm (default)"].predict(X_valid)
    for metric in ("rmse", "mae", "r2"):
        assert table.loc["lightgbm (default)", metric] == score(metric, y_valid, p)
    by_r2 = leaderboard(X, y, X_valid, y_valid, models=["lightgbm", "linear"], params=crippled, metric="r2",
                        task="regression")
    assert by_r2.table["r2"].is_monotonic_decreasing and by_r2.table["model"].iloc[-1] == "lightgbm"


def test_regression_cv_is_grouped_by_entity(reg_sets) -> None:
    from sklearn.model_selection import GroupKFold

    X, y, X_valid, y_valid = reg_sets
    groups = np.arange(len(X)) // 4  # four rows per entity
    board = leaderboard(X, y, X_valid, y_valid, models=["linear"], cv=3, groups=groups, task="regression", seed=3)
    row = board.table.iloc[0]
    folds = []
    for fit, test in GroupKFold(3, shuffle=True, random_state=3).split(X, y, groups):
        assert not set(groups[fit]) & set(groups[test])
        model = RegressionTrainer("linear", random_state=3).fit(X.iloc[fit], y.iloc[fit])
        folds.append(score("rmse", y.iloc[test], model.predict(X.iloc[test])))
    assert row["cv_rmse_mean"] == pytest.approx(np.mean(folds), rel=1e-12)
    assert row["cv_rmse_sd"] == pytest.approx(np.std(folds, ddof=1), rel=1e-12) and row["cv_rmse_sd"] > 0
    with pytest.raises(ModelInputError, match="'logistic' is not a regressor"):
        leaderboard(X, y, X_valid, y_valid, models=["logistic"], task="regression")
    with pytest.raises(ModelInputError, match="metric='roc_auc' does not score regression"):
        leaderboard(X, y, X_valid, y_valid, models=["linear"], metric="roc_auc", task="regression")


def test_leaderboard_cli_for_a_regression_config(tmp_path: Path) -> None:
    from battleground.cli import app
    from battleground.model.tracking import split_from_config

    regression_frame(900, seed=2).to_csv(tmp_path / "rows.csv", index=False)
    config = {"train": {"task": "regression", "deployment_score_thresh": 2.0, "seed": 0},
              "data": {"input": "rows.csv", "label": "target", "drop_columns": [], "splits_dir": "splits"}}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    split_from_config(path)
    env = {"BATTLEGROUND_HOME": str(tmp_path / "home")}
    args = ["model", "leaderboard", "-c", str(path), "--models", "lightgbm,linear", "--cv", "3", "--trials", "2"]
    out = CliRunner().invoke(app, [*args, "--json"], env=env)
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert rows[0]["model"] in ("linear", "linear (default)") and {r["model"] for r in rows} == {
        "lightgbm", "lightgbm (default)", "linear", "linear (default)"}
    assert [r["rmse"] for r in rows] == sorted(r["rmse"] for r in rows)
    assert all(r["cv_rmse_sd"] > 0 and 0.8 < r["cv_rmse_mean"] < 3.0 for r in rows)
    shown = CliRunner().invoke(app, args, env=env)
    assert shown.exit_code == 0 and "±" in shown.output and "rmse, smallest first" in shown.output
    bad = CliRunner().invoke(app, ["model", "leaderboard", "-c", str(path), "--top-k", "2"], env=env)
    assert bad.exit_code == 1 and "for classification" in bad.output
