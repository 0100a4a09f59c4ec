"""Every pipeline runs by name in both environments; config alone changes the model class."""

from __future__ import annotations

from pathlib import Path

import pytest

from battleground.pipelines.registry import PIPELINE_NAMES, env_for, load_config, run_pipeline
from battleground.settings import Settings

SMALL = {"n_characters": 400}


@pytest.mark.parametrize("env", ["base", "game2_env"])
def test_pipelines_every_name_runs(settings: Settings, env: str) -> None:
    suffix = "" if env == "base" else "_game2"
    order = ["sub_churn_train_from_raw", "sub_churn_raw", "sub_churn_standard_features", "sub_churn_train",
             "sub_churn_score", "sub_churn_batch_predict", "sub_churn_batch_score", "sub_churn_score_from_raw",
             "sub_churn_batch_score_from_raw"]
    assert {f"{n}{suffix}" for n in order} <= set(PIPELINE_NAMES)
    for name in order:
        result = run_pipeline(f"{name}{suffix}", settings, params=SMALL)
        assert result.env == env
        assert result.data_dir == settings.home / "pipelines" / env
        for path in result.outputs.values():
            assert Path(path).exists(), path
            if env == "game2_env":
                assert "game2" in Path(path).name
    report = (result.data_dir / "08_reporting" / f"score_report{suffix}.txt").read_text()
    auc = float(next(line.split()[1] for line in report.splitlines() if line.startswith("roc_auc ")))
    assert 0.5 < auc <= 1.0
    assert "roc_auc_new_characters" in report
    html = (result.data_dir / "08_reporting" / f"score_report{suffix}.html").read_text()
    assert "<table>" in html and ".png" in html
    batch = (result.data_dir / "08_reporting" / f"batch_score_report{suffix}.txt").read_text()
    assert "n_scored" in batch


def test_pipelines_config_changes_model_class(settings: Settings, tmp_path: Path) -> None:
    import pickle
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).parents[2] / "src/battleground/pipelines/conf", conf)
    params = conf / "base" / "parameters.yml"
    params.write_text(params.read_text().replace(
        "class: battleground.model.train.Trainer\n    params: {model: logistic}",
        "class: sklearn.ensemble.RandomForestClassifier\n    params: {n_estimators: 20}"))
    result = run_pipeline("sub_churn_train_from_raw", settings, params=SMALL, conf_source=conf)
    model = pickle.loads(Path(result.outputs["churn_model"]).read_bytes())
    assert type(model.steps[-1][1]).__name__ == "RandomForestClassifier"
    assert model.steps[-1][1].n_estimators == 20


def test_pipelines_bad_names_and_envs() -> None:
    with pytest.raises(ValueError, match="sub_churn_nope"):
        env_for("sub_churn_nope")
    with pytest.raises(ValueError, match="game2_env"):
        env_for("sub_churn_train_game2", "base")
    with pytest.raises(ValueError, match="env='prod'"):
        env_for("sub_churn_train", "prod")
    assert env_for("sub_churn_train", "game2_env") == "game2_env"


def test_pipelines_game2_overrides_base(tmp_path: Path) -> None:
    _, base = load_config("base", tmp_path)
    _, game2 = load_config("game2_env", tmp_path)
    assert base["churn"]["variant"] == "game" and game2["churn"]["variant"] == "game2"
    assert game2["churn"]["horizon_months"] == base["churn"]["horizon_months"]  # inherited from base


def test_pipelines_upstream_missing_is_clear(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="features_test"):
        run_pipeline("sub_churn_score", settings)
