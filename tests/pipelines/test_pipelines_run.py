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


def test_pipelines_cli_runs_base_names_in_game2_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from battleground.cli import app

    monkeypatch.setenv("BATTLEGROUND_HOME", str(settings.home))
    runner = CliRunner()
    listed = runner.invoke(app, ["pipeline", "list"])
    assert listed.exit_code == 0 and "sub_churn_batch_score_from_raw_game2" in listed.output
    for name in ("sub_churn_train_from_raw", "sub_churn_score_from_raw"):
        res = runner.invoke(app, ["pipeline", "run", "-p", name, "--env", "game2_env", "--n-characters", "400"])
        assert res.exit_code == 0, res.output
        assert f"{name} ran in game2_env" in res.output
    folder = settings.home / "pipelines" / "game2_env"
    report = (folder / "08_reporting" / "score_report_game2.txt").read_text()
    assert report.startswith("churn back-test report") and "roc_auc_new_characters" in report
    assert (folder / "08_reporting" / "score_report_game2.html").exists()
    assert not (settings.home / "pipelines" / "base").exists()  # game2 never touches base's files
    bad = runner.invoke(app, ["pipeline", "run", "-p", "sub_churn_trian"])
    assert bad.exit_code == 1 and "sub_churn_train_from_raw" in bad.output


def test_pipelines_parameter_typos_are_refused(settings: Settings, tmp_path: Path) -> None:
    import shutil

    with pytest.raises(ValueError, match=r"unknown churn parameter 'n_character' \(did you mean 'n_characters'\?\)"):
        run_pipeline("sub_churn_raw", settings, params={"n_character": 300})
    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).parents[2] / "src/battleground/pipelines/conf", conf)
    params = conf / "base" / "parameters.yml"
    params.write_text(params.read_text().replace("  train_cutoff:", "  trian_cutoff:"))
    with pytest.raises(ValueError, match=r"unknown churn parameter 'trian_cutoff' \(did you mean 'train_cutoff'\?\); "
                                         r"valid keys: \['env', 'seed'"):
        run_pipeline("sub_churn_train_from_raw", settings, params=SMALL, conf_source=conf)


def test_batch_predict_sees_only_the_past(settings: Settings) -> None:
    import numpy as np
    import pandas as pd

    from battleground.datasets import make_churn_tables
    from battleground.pipelines import nodes

    tables = make_churn_tables(600, seed=4)
    params = {"predict_cutoff": "2022-10-01", "label": "churned"}
    cut = pd.Timestamp(params["predict_cutoff"])

    class MeanOfBalances:  # a stand-in model: any function of the features
        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            p = 1 / (1 + np.exp(-X["hard_balance"].fillna(0).to_numpy() / 100 + X["missed_months"].to_numpy()))
            return np.c_[1 - p, p]

    before = nodes.predict_population(MeanOfBalances(), tables, params)
    future = {k: v.copy() for k, v in tables.items()}
    later = future["currency"]["date"] >= cut
    future["currency"].loc[later, "hard_balance"] = 0.0  # rewrite everything after the cut-off
    miss = future["sub_miss"]
    future["sub_miss"] = pd.concat([miss, pd.DataFrame({"sub_id": tables["characters"]["char_id"].head(50),
                                                        "start_date": cut, "end_date": cut + pd.DateOffset(months=3)})])
    after = nodes.predict_population(MeanOfBalances(), future, params)
    pd.testing.assert_frame_equal(before, after)
    assert "churned" not in before.columns and before["churn_probability"].between(0, 1).all()


def test_pipelines_run_with_kedro_own_tools(tmp_path: Path) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from typer.testing import CliRunner

    from battleground.cli import app

    project = tmp_path / "churn-project"
    res = CliRunner().invoke(app, ["pipeline", "kedro-project", str(project)])
    assert res.exit_code == 0, res.output
    assert (project / "conf" / "game2_env" / "catalog.yml").exists()
    assert (project / ".telemetry").read_text() == "consent: false\n"
    # what `cd churn-project && kedro run --env game2_env -p sub_churn_train_from_raw_game2` does
    params = project / "conf" / "base" / "parameters.yml"
    params.write_text(params.read_text().replace("n_characters: 4000", "n_characters: 400"))
    bootstrap_project(project)
    runtime = {"data_dir": str(tmp_path / "data"), "home": str(tmp_path / "home")}
    with KedroSession.create(project_path=project, env="game2_env", runtime_params=runtime) as session:
        session.run(pipeline_name="sub_churn_train_from_raw_game2")
    assert (tmp_path / "data" / "06_models" / "churn_model_game2.pkl").exists()
    assert (tmp_path / "home" / "mlflow.db").exists() and not (project / "mlruns").exists()


def test_pipeline_with_a_worse_model_does_not_move_the_champion(settings: Settings, tmp_path: Path) -> None:
    """The audit's case: a DummyClassifier (AUC 0.5) after a model that passed the gate."""
    import shutil

    from battleground.model.gate import champion_history
    from battleground.model.tracking import _mlflow

    run_pipeline("sub_churn_train_from_raw", settings, params=SMALL)
    client = _mlflow(settings).MlflowClient()
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).parents[2] / "src/battleground/pipelines/conf", conf)
    params = conf / "base" / "parameters.yml"
    params.write_text(params.read_text().replace(
        "class: battleground.model.train.Trainer\n    params: {model: logistic}",
        "class: sklearn.dummy.DummyClassifier\n    params: {strategy: prior}").replace(
        "deployment_score_thresh: 0.6", "deployment_score_thresh: 0.0"))
    run_pipeline("sub_churn_train", settings, params=SMALL, conf_source=conf)
    mv = client.get_model_version("churn", "2")
    assert mv.tags["battleground.gate.status"] == "refused"
    assert "does not beat champion v1" in mv.tags["battleground.gate.reason"]
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    entries, current = champion_history(settings, "churn")
    assert current == "1" and [(e.version, e.action, e.source) for e in entries] == [
        ("1", "promoted", "pipeline base"), ("2", "refused", "pipeline base")]
    run = client.get_run(mv.run_id)
    assert "test_roc_auc" in run.data.metrics  # held-out metrics on pipeline runs, not only training ones


def test_kedro_own_entry_point_refuses_game2_twins_outside_game2_env(tmp_path: Path) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.model.tracking import ConfigError

    project = tmp_path / "churn-project"
    assert CliRunner().invoke(app, ["pipeline", "kedro-project", str(project)]).exit_code == 0
    bootstrap_project(project)
    runtime = {"data_dir": str(tmp_path / "data"), "home": str(tmp_path / "home")}
    for env in (None, "base"):  # `kedro run -p sub_churn_raw_game2` and the same with --env base
        with KedroSession.create(project_path=project, env=env, runtime_params=runtime) as session, \
                pytest.raises(ConfigError, match="runs only in game2_env"):
            session.run(pipeline_names=["sub_churn_raw_game2"])
    assert not (tmp_path / "data").exists()  # refused before any node ran
