"""The one champion gate: threshold, margin over the champion, ties, refusals kept with their reason,
alias history, and the digest record the model server trusts."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from battleground.model.gate import (
    TAG_DIGEST,
    TAG_REASON,
    TAG_STATUS,
    UntrustedModelError,
    champion_gate,
    champion_history,
    paired_bootstrap,
    register_candidate,
)
from battleground.settings import Settings


def log_model(settings: Settings, model, X) -> str:
    """Log ``model`` (anything with predict_proba) as our pyfunc; returns its model URI."""
    import warnings

    from mlflow.models import infer_signature

    from battleground.model._pyfunc import ProbabilityModel
    from battleground.model.tracking import _mlflow, use_experiment

    mlflow = _mlflow(settings)
    use_experiment(mlflow, "gate-tests", settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            mlflow.set_tag("input_schema", json.dumps([[c, str(X[c].dtype)] for c in X.columns]))
            sample = X.head(5)
            info = mlflow.pyfunc.log_model(name="model", python_model=ProbabilityModel(model),
                                           signature=infer_signature(sample, model.predict_proba(sample)[:, 1]))
    return str(info.model_uri)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Settings:
    """One MLflow store for the module (a fresh store costs seconds); each test uses its own model name."""
    return Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path_factory.mktemp("gate") / ".battleground")})


@pytest.fixture(scope="module")
def models(churn_sets):
    from sklearn.dummy import DummyClassifier

    from battleground.model.train import Trainer

    X_train, y_train, _, _ = churn_sets
    good = Trainer("lightgbm", params={"n_estimators": 40}).fit(X_train, y_train)
    dummy = DummyClassifier(strategy="prior").fit(X_train, y_train)
    return good, dummy


def _gate(settings, uri, X, y, *, threshold=0.6, margin=0.0, name="churn"):
    version = register_candidate(settings, uri, name, source="test")
    return champion_gate(settings, name, version, X, y, metric="roc_auc", threshold=threshold, margin=margin,
                         source="test", n_boot=50)


def test_gate_promotes_good_refuses_dummy_ties_and_keeps_history(home, churn_sets, models, caplog) -> None:
    settings = home
    from battleground.model.tracking import _mlflow, load_champion

    _, _, X, y = churn_sets
    good, dummy = models
    client = _mlflow(settings).MlflowClient()
    first = _gate(settings, log_model(settings, good, X), X, y)
    assert first.promoted and first.champion_version is None and first.candidate_score > 0.7
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    # a DummyClassifier (AUC 0.5) fails the threshold; with no threshold it still loses to the champion
    below = _gate(settings, log_model(settings, dummy, X), X, y)
    assert not below.promoted and below.candidate_score == pytest.approx(0.5)
    assert "below deployment_score_thresh 0.6000" in below.reason
    worse = _gate(settings, log_model(settings, dummy, X), X, y, threshold=0.0)
    assert not worse.promoted and worse.champion_version == "1"
    assert worse.delta == pytest.approx(0.5 - first.candidate_score)
    assert worse.ci_low <= worse.delta <= worse.ci_high < 0
    # the same model again is a tie: the incumbent stays (Δ = 0 is not > margin 0)
    with caplog.at_level(logging.WARNING, logger="battleground.model.gate"):
        tie = _gate(settings, log_model(settings, good, X), X, y)
    assert not tie.promoted and tie.delta == 0.0 and "does not beat champion v1" in tie.reason
    assert "refused" in caplog.text
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    # refused candidates stay registered, with the reason as a tag; only the promoted one has a digest
    for v, d in (("2", below), ("3", worse), ("4", tie)):
        mv = client.get_model_version("churn", v)
        assert mv.tags[TAG_STATUS] == "refused" and mv.tags[TAG_REASON] == d.reason and TAG_DIGEST not in mv.tags
    assert len(client.get_model_version("churn", "1").tags[TAG_DIGEST]) == 64
    entries, current = champion_history(settings, "churn")
    assert current == "1"
    assert [(e.version, e.action, e.champion_before) for e in entries] == [
        ("1", "promoted", None), ("2", "refused", "1"), ("3", "refused", "1"), ("4", "refused", "1")]
    assert entries[0].at <= entries[-1].at and entries[0].score == pytest.approx(first.candidate_score)
    assert load_champion(settings).version == "1"


def test_gate_margin_and_bad_holdout(home, churn_sets, models) -> None:
    settings = home
    from battleground.errors import ModelError

    _, _, X, y = churn_sets
    good, _ = models
    _gate(settings, log_model(settings, good, X), X, y, name="m")
    with pytest.raises(ModelError, match="need both classes"):
        champion_gate(settings, "m", "1", X.head(3), np.zeros(3), metric="roc_auc", threshold=0.5, source="t")
    with pytest.raises(ModelError, match=r"margin=-0\.1"):
        champion_gate(settings, "m", "1", X, y, metric="roc_auc", threshold=0.5, margin=-0.1, source="t")
    already = champion_gate(settings, "m", "1", X, y, metric="roc_auc", threshold=0.5, source="t", n_boot=10)
    assert not already.promoted and "already holds" in already.reason


def test_gate_records_the_ab_test_that_promoted_a_version(home, churn_sets, models) -> None:
    """``experiment_id`` travels with the decision: the version's ``battleground.experiment`` tag, the
    decision and its history entry; a refused version records it too, and a bad id fails first."""
    from battleground.errors import ModelError
    from battleground.model.gate import TAG_EXPERIMENT
    from battleground.model.tracking import _mlflow

    settings = home
    _, _, X, y = churn_sets
    good, dummy = models
    client = _mlflow(settings).MlflowClient()
    v1 = register_candidate(settings, log_model(settings, good, X), "ab", source="test")
    first = champion_gate(settings, "ab", v1, X, y, metric="roc_auc", threshold=0.6, source="test", n_boot=20,
                          experiment_id=7)
    assert first.promoted and first.experiment == "7" and "promoted (A/B test 7)" in first.summary()
    assert client.get_model_version("ab", v1).tags[TAG_EXPERIMENT] == "7"
    v2 = register_candidate(settings, log_model(settings, dummy, X), "ab", source="test")
    refused = champion_gate(settings, "ab", v2, X, y, metric="roc_auc", threshold=0.6, source="test", n_boot=20,
                            experiment_id="12")
    assert not refused.promoted and client.get_model_version("ab", v2).tags[TAG_EXPERIMENT] == "12"
    entries, current = champion_history(settings, "ab")
    assert current == v1 and [(e.version, e.action, e.experiment) for e in entries] == [(v1, "promoted", "7"), (v2, "refused", "12")]
    for bad in ("checkout", 0, True, ""):
        with pytest.raises(ModelError, match=r"experiment_id must be the registry id of the A/B test .* got"):
            champion_gate(settings, "ab", v2, X, y, metric="roc_auc", threshold=0.6, source="test", experiment_id=bad)
    # a gate call without one records none (and older history entries without the field still load)
    plain = champion_gate(settings, "ab", v1, X, y, metric="roc_auc", threshold=0.6, source="test", n_boot=10)
    assert plain.experiment is None and champion_history(settings, "ab")[0][-1].experiment is None
    from typer.testing import CliRunner

    from battleground.cli import app

    shown = CliRunner().invoke(app, ["model", "history", "ab"], env={"BATTLEGROUND_HOME": str(settings.home), "COLUMNS": "200"})
    assert shown.exit_code == 0 and "A/B test 7)" in shown.output and "A/B test 12)" in shown.output, shown.output


def test_history_prints_json_and_csv(home, churn_sets, models) -> None:
    """``model history NAME --json/--csv``: every decision's raw fields (timestamp as ISO text) and, in
    JSON, the version ``@champion`` names now; the two flags together are refused."""
    import csv
    import io

    from typer.testing import CliRunner

    from battleground.cli import app

    settings = home
    _, _, X, y = churn_sets
    good, dummy = models
    first = _gate(settings, log_model(settings, good, X), X, y, name="hist")
    refused = _gate(settings, log_model(settings, dummy, X), X, y, name="hist")
    env = {"BATTLEGROUND_HOME": str(settings.home)}
    shown = CliRunner().invoke(app, ["model", "history", "hist", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.output)
    assert payload["name"] == "hist" and payload["champion"] == "1" and payload["moved_outside_gate"] is False
    rows = payload["history"]
    assert [(r["version"], r["action"], r["champion_before"]) for r in rows] == [("1", "promoted", None),
                                                                                 ("2", "refused", "1")]
    assert rows[0]["score"] == pytest.approx(first.candidate_score) and rows[1]["reason"] == refused.reason
    assert rows[0]["at"].endswith("+00:00") and rows[0]["metric"] == "roc_auc" and rows[0]["source"] == "test"
    shown = CliRunner().invoke(app, ["model", "history", "hist", "--csv"], env=env)
    assert shown.exit_code == 0, shown.output
    table = list(csv.DictReader(io.StringIO(shown.output)))
    assert [(r["version"], r["action"]) for r in table] == [("1", "promoted"), ("2", "refused")]
    assert float(table[1]["score"]) == pytest.approx(refused.candidate_score) and table[0]["at"] == rows[0]["at"]
    both = CliRunner().invoke(app, ["model", "history", "hist", "--json", "--csv"], env=env)
    assert both.exit_code != 0


def test_gate_turns_lower_is_better_metrics_around(home, churn_sets, models) -> None:
    """log_loss and brier: ``deployment_score_thresh`` is a maximum, and a candidate must *lower* the
    champion's value by more than the margin (comparing them as higher-is-better would keep the worse)."""
    from battleground.model.train import score

    settings = home
    _, _, X, y = churn_sets
    good, dummy = models
    good_loss = score("log_loss", y, good.predict_proba(X)[:, 1])
    dummy_loss = score("log_loss", y, dummy.predict_proba(X)[:, 1])
    assert good_loss < dummy_loss  # the fitted model is the better one on this metric

    def gate(model, metric, threshold, margin=0.0):
        version = register_candidate(settings, log_model(settings, model, X), "lower", source="test")
        return champion_gate(settings, "lower", version, X, y, metric=metric, threshold=threshold, margin=margin,
                             source="test", n_boot=30)

    first = gate(dummy, "log_loss", threshold=10.0)
    assert first.promoted and first.candidate_score == pytest.approx(dummy_loss) and not first.higher_is_better
    better = gate(good, "log_loss", threshold=10.0)
    assert better.promoted and better.delta == pytest.approx(good_loss - dummy_loss) and better.delta < 0
    assert better.ci_low <= better.delta <= better.ci_high < 0 and "lower by" in better.reason
    worse = gate(dummy, "log_loss", threshold=10.0)
    assert not worse.promoted and worse.delta > 0 and "does not beat champion v2" in worse.reason
    # the threshold is the most log loss allowed: the better model fails a maximum below its loss
    capped = gate(good, "log_loss", threshold=good_loss / 2)
    assert not capped.promoted and capped.below_threshold and "above deployment_score_thresh" in capped.reason
    # a margin: lower by less than it keeps the champion (the same model again: Δ = 0)
    brier = gate(good, "brier", threshold=1.0, margin=0.001)
    assert not brier.promoted and brier.delta == 0.0
    entries, current = champion_history(settings, "lower")
    assert current == "2" and [e.action for e in entries] == ["promoted", "promoted", "refused", "refused", "refused"]


def test_paired_bootstrap_regression_metrics() -> None:
    """rmse/mae/r2 on targets: Δ is new − old, negative for a better rmse, and no class is needed."""
    rng = np.random.default_rng(3)
    y = rng.normal(10.0, 2.0, 500)
    close, far = y + rng.normal(0, 0.5, 500), y + rng.normal(0, 2.0, 500)
    d, lo, hi = paired_bootstrap(y, close, far, "rmse", n_boot=200)
    assert d == pytest.approx(np.sqrt(np.mean((close - y) ** 2)) - np.sqrt(np.mean((far - y) ** 2)))
    assert lo <= d <= hi < 0
    d, lo, hi = paired_bootstrap(y, close, far, "r2", n_boot=200)
    assert 0 < lo <= d <= hi
    assert paired_bootstrap(y, close, close, "mae", n_boot=20) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_signs_and_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.clip(y * 0.6 + rng.random(400) * 0.4, 0, 1)
    noise = rng.random(400)
    d, lo, hi = paired_bootstrap(y, good, noise, "roc_auc", n_boot=100)
    assert 0 < lo <= d <= hi
    assert paired_bootstrap(y, good, good, "roc_auc", n_boot=20) == (0.0, 0.0, 0.0)


def test_alias_moved_behind_the_gate_is_refused_by_server_and_loader(settings, churn_sets, models, caplog) -> None:
    from fastapi.testclient import TestClient

    from battleground.model.serve import create_app
    from battleground.model.tracking import _mlflow, load_champion

    _, _, X, y = churn_sets
    good, dummy = models
    _gate(settings, log_model(settings, good, X), X, y)
    client = _mlflow(settings).MlflowClient()
    rogue = register_candidate(settings, log_model(settings, dummy, X), "churn", source="rogue")
    records = json.loads(X.head(2).to_json(orient="records"))
    with TestClient(create_app(settings, poll_seconds=0), base_url="http://127.0.0.1") as http:
        client.set_registered_model_alias("churn", "champion", rogue)  # plain MLflow, not the gate
        with caplog.at_level(logging.ERROR, logger="battleground.model.serve"):
            http.post("/admin/reload")  # 403 without a token; the poller's refresh is what matters
            assert not http.app.state.holder.refresh()
        assert "champion load refused" in caplog.text and "no champion-gate record" in caplog.text
        info = http.get("/model").json()
        assert info["version"] == "1" and len(info["sha256"]) == 64
        assert info["refused_loads"][0]["alias"] == rogue
        assert "UntrustedModelError" in info["refused_loads"][0]["error"]
        assert http.post("/predict", json=records).json()["version"] == "1"
    with pytest.raises(UntrustedModelError, match="no champion-gate record"):
        load_champion(settings)
    with pytest.raises(UntrustedModelError):
        create_app(settings, poll_seconds=0)
    # a forged record (right tag, no key) and changed files are refused too
    client.set_model_version_tag("churn", rogue, TAG_DIGEST, "0" * 64)
    client.set_model_version_tag("churn", rogue, "battleground.gate.signature", "f" * 64)
    with pytest.raises(UntrustedModelError, match="signature does not match"):
        load_champion(settings)
    client.set_registered_model_alias("churn", "champion", "1")
    model_id = client.get_model_version("churn", "1").source.rstrip("/").rsplit("/", 1)[-1]
    stored = next(p for p in (settings.home / "mlartifacts").rglob("python_model.pkl") if model_id in str(p))
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(UntrustedModelError, match="files changed"):
        load_champion(settings)


def test_serve_cli_unknown_model_is_one_line(home, monkeypatch) -> None:
    settings = home
    from typer.testing import CliRunner

    from battleground.cli import app

    monkeypatch.setenv("BATTLEGROUND_HOME", str(settings.home))
    res = CliRunner().invoke(app, ["serve", "--model-name", "nosuch"])
    assert res.exit_code == 1
    assert "no model 'nosuch' with alias 'champion'" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 2
