"""Bad input (issue 4): each error names the key or value and lists the valid ones; nothing is registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from battleground.cli.model import app
from battleground.model.tracking import ConfigError, TrainingConfig


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"trian": {"max_search_iters": 3}}, r"unknown top-level section 'trian' \(did you mean 'train'\?\); valid "
                                             r"sections: \['train', 'data'\]"),
        ({"train": {}, "date": {}}, r"unknown top-level section 'date' \(did you mean 'data'\?\)"),
        ({"train": {"max_search_iter": 3}}, r"unknown config key 'max_search_iter' \(did you mean "
                                            r"'max_search_iters'\?\); valid keys: \['supported_models'"),
        ({"train": {}, "data": {"splits_dri": "x"}}, r"unknown data key 'splits_dri' \(did you mean 'splits_dir'\?\); "
                                                    r"valid keys: \['input'"),
        ({"train": {}, "data": {"synthetic": {"n_character": 9}}},
         r"unknown data.synthetic key 'n_character' \(did you mean 'n_characters'\?\); valid keys"),
        ({"train": {"supported_models": ["LGBMClassifer"]}},
         r"supported_models: model='LGBMClassifer' is unknown \(did you mean 'LGBMClassifier'\?\); valid models"),
        ({"train": {"tuned_models": ["svm"]}}, r"tuned_models: model='svm' is unknown.*valid models: \['lightgbm'"),
        ({"train": {"search_space": {"lightgbm": {"n_estimator": [10, 50]}}}},
         r"search_space: search_space.lightgbm has unknown parameter 'n_estimator' for model 'lightgbm' \(did you "
         r"mean 'n_estimators'\?\); valid parameters: \["),
        ({"train": {"comparison_metric": "f1"}}, r"comparison_metric='f1' is unknown; valid: \['fbeta_score'"),
        ({"train": {"deployment_score_thresh": "high"}}, r"deployment_score_thresh='high' must be a number"),
        ({"train": {"n_workers": 1.5}}, r"n_workers=1.5 must be an integer"),
        ({"train": {}, "data": {"synthetic": {"cutoffs": []}}}, r"cutoffs=\[\] must be a non-empty list of dates"),
        ({"train": {}, "data": {"split_method": "random"}}, r"split_method='random' is unknown; valid: \['stratified'"),
        ({"train": {"experiment_tracker": "wandb"}}, r"experiment_tracker='wandb' is not supported: set "
                                                     r"experiment_tracker: mlflow"),
    ],
)
def test_config_errors_name_the_key_and_list_valid_ones(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        TrainingConfig.from_mapping(raw)


def test_model_errors_name_the_value(churn_sets) -> None:
    from battleground.model.data import CreateDataSet, split_data
    from battleground.model.train import Trainer, tune

    X, y, Xv, yv = churn_sets
    with pytest.raises(ValueError, match=r"model='xgb' is unknown.*valid models: \['lightgbm', 'xgboost'"):
        Trainer("xgb").fit(X, y)
    with pytest.raises(ValueError, match=r"unknown parameter 'n_estimator' for model 'lightgbm' \(did you mean "
                                         r"'n_estimators'\?\); valid parameters: \['boosting_type'"):
        Trainer("lightgbm", params={"n_estimator": 5}).fit(X, y)
    with pytest.raises(ValueError, match=r"unknown parameter 'CC' for model 'logistic' \(did you mean 'C'\?\)"):
        tune("logistic", X, y, Xv, yv, search_space={"logistic": {"CC": [0.1, 1.0]}}, n_trials=1)
    # LightGBM's own aliases are real parameters, not typos
    assert Trainer("lightgbm", params={"num_leaf": 7, "n_estimators": 5}).fit(X, y).predict_proba(X).shape[1] == 2
    with pytest.raises(ValueError, match=r"y_train must have exactly two classes, got \[0\]"):
        tune("lightgbm", X, np.zeros(len(X), dtype=int), Xv, yv, n_trials=1)
    with pytest.raises(ValueError, match=r"unknown columns \['pric'\] \(did you mean 'price'\?\); valid columns"):
        CreateDataSet(feature_list=["pric"], n_characters=300).load_train_set()
    with pytest.raises(ValueError, match=r"cutoff='2019-01-01' leaves no living characters; pick a date after"):
        CreateDataSet(train_dt=["2019-01-01"], n_characters=300).load_train_set()
    with pytest.raises(ValueError, match=r"infer_dt value '2022-13-01' is not a date"):
        CreateDataSet(infer_dt=["2022-13-01"], n_characters=300).load_test_set()
    frame = X.assign(churned=y.to_numpy())
    with pytest.raises(ValueError, match=r"time_column='cutof'.*\(did you mean 'cutoff'\?\); columns"):
        split_data(frame.assign(cutoff=1), method="time", time_column="cutof")


def test_bad_inputs_through_the_cli_register_nothing(tmp_path: Path) -> None:
    import mlflow

    from battleground.datasets import build_churn_features, make_churn_tables
    from battleground.settings import Settings

    env = {"BATTLEGROUND_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    base = {"train": {"supported_models": ["LogisticRegression"], "max_search_iters": 1,
                      "deployment_score_thresh": 0.0, "seed": 1},
            "data": {"synthetic": {"n_characters": 300}, "splits_dir": "splits", "artifacts_dir": "artifacts"}}

    def run(command: str, config: dict, name: str) -> str:
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(config))
        res = runner.invoke(app, [command, "--config", str(path)], env=env)
        assert res.exit_code == 1, res.output
        assert "Traceback" not in res.output
        return _flat(res.output)

    # an empty window: no character is alive at the cut-off
    out = run("split", {**base, "data": {**base["data"], "synthetic": {"n_characters": 300,
                                                                        "cutoffs": ["2019-01-01"]}}}, "window")
    assert "cutoff='2019-01-01' leaves no living characters" in out
    # an unknown label column
    out = run("split", {**base, "data": {**base["data"], "label": "churn"}}, "label")
    assert "label='churn' is not a column; columns: ['char_id'" in out
    # a single-class target, from a features file
    feats = build_churn_features(make_churn_tables(300, seed=1), "2022-09-01").assign(churned=0)
    feats.to_parquet(tmp_path / "one_class.parquet")
    out = run("split", {**base, "data": {**base["data"], "input": "one_class.parquet"}}, "one_class")
    assert "label 'churned' has a single class [0]; need two" in out
    # a single-class training split reaching `train`
    (tmp_path / "splits").mkdir()
    feats.to_parquet(tmp_path / "splits" / "train.parquet")
    feats.assign(churned=np.arange(len(feats)) % 2).to_parquet(tmp_path / "splits" / "valid.parquet")
    out = run("train", base, "train_one_class")
    assert "y_train must have exactly two classes, got [0]" in out
    # an unknown model name and a misspelled key
    out = run("train", {**base, "train": {**base["train"], "supported_models": ["SVC"]}}, "svc")
    assert "model='SVC' is unknown" in out and "valid models: ['lightgbm'" in out
    out = run("evaluate", {**base, "train": {**base["train"], "deploymnt_score_thresh": 0.1}}, "typo")
    assert "unknown config key 'deploymnt_score_thresh' (did you mean 'deployment_score_thresh'?)" in out
    # evaluate with nothing trained
    out = run("evaluate", base, "untrained")
    assert "has no model runs; run `battleground model train`" in out

    client = mlflow.MlflowClient(Settings.from_env(env).mlflow_uri)
    assert client.search_registered_models() == []
    assert pd.read_parquet(tmp_path / "splits" / "train.parquet")["churned"].eq(0).all()  # nothing overwritten
