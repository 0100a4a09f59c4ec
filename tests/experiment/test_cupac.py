"""CUPAC with the champion (issue 17): a model scores each exposed user from pre-exposure features, the
prediction becomes a CUPED++ covariate read from the SQL scan; features dated at or after the exposure
are refused, naming the feature and the timestamps."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from tests.experiment.test_cupedpp_monitor import _register
from tests.storage.test_covariate_sums import per_user_covariates
from tests.storage.test_strata_sums import END

from battleground.experiment import cupac_covariate
from battleground.experiment.monitoring import FeatureLeakageError, Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings


def _features(events: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per exposed user (all but 40 of them): a "spend score" that tracks their revenue and a noise
    feature, both dated a day before the user's exposure, plus 10 users never exposed."""
    rng = np.random.default_rng(seed)
    u = per_user_covariates(events).reset_index()
    u = u.iloc[40:]
    out = pd.DataFrame({"user_id": u["user_id"], "spend_score": u["rev"] + rng.normal(0, 3, len(u)),
                        "noise": rng.normal(size=len(u)), "feature_ts": u["t0"] - dt.timedelta(days=1)})
    strangers = pd.DataFrame({"user_id": [f"x{i}" for i in range(10)], "spend_score": 1.0, "noise": 0.0,
                              "feature_ts": pd.Timestamp("2022-01-01")})
    return pd.concat([out, strangers], ignore_index=True)


class _Linear:
    """A fitted model in miniature: predict(frame) = 0.9·spend_score + 0.1·noise."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return 0.9 * frame["spend_score"].to_numpy() + 0.1 * frame["noise"].to_numpy()


def test_cupac_scores_users_and_its_prediction_reduces_variance(settings: Settings) -> None:
    exp_id, events = _register(settings, None)
    features = _features(events)
    r = cupac_covariate(settings, exp_id, features, model=_Linear())
    assert (r.users_scored, r.users_without_features, r.rows_ignored) == (360, 40, 10)
    assert r.events_written == 360 and r.attribute == "cupac" and r.model == "<given>"
    # the prediction alone, as the covariate: most of revenue's variance goes
    assert r.variance_reduction["rev/treatment"] > 0.5
    assert set(r.variance_reduction) == {"rev/treatment", "buyer/treatment"}
    # re-running writes nothing new (idempotent ingest) and the declaration is made once
    again = cupac_covariate(settings, exp_id, features, model=_Linear())
    assert again.events_written == 0
    assert again.variance_reduction["rev/treatment"] == pytest.approx(r.variance_reduction["rev/treatment"], rel=1e-12)
    meta = Registry(settings.registry_url).get(exp_id).metadata
    assert meta["regression_adjustment"] == {"attributes": ["cupac"]}
    # Monitor's CUPED++ rows now adjust by the prediction beside the metrics' pre-periods
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(now=END)
    assert "cupac" in result.cupedpp_covariates and "cupac missing" in result.cupedpp_covariates
    row = next(x for x in result.rows if x.metric == "rev" and x.variant == "treatment")
    assert row.cupedpp_variance_reduction is not None
    assert row.cupedpp_variance_reduction >= r.variance_reduction["rev/treatment"] - 0.02


def test_a_feature_dated_after_exposure_is_refused(settings: Settings) -> None:
    exp_id, events = _register(settings, None)
    features = _features(events)
    late = features.index[5]
    features.loc[late, "feature_ts"] = features.loc[late, "feature_ts"] + dt.timedelta(days=1, minutes=1)
    user = features.loc[late, "user_id"]
    with pytest.raises(FeatureLeakageError, match=rf"leakage: feature 'spend_score' of user '{user}' is dated "
                                                  r"2022-05-\d\d \d\d:\d1:00, not before the user's first exposure "
                                                  r"2022-05-\d\d \d\d:\d0:00"):
        cupac_covariate(settings, exp_id, features, model=_Linear())
    assert Registry(settings.registry_url).get(exp_id).metadata == {}  # nothing declared, nothing written
    # one timestamp per feature: the error names the feature whose timestamp is late
    features["feature_ts"] = features["feature_ts"].where(features.index != late, features["feature_ts"] - dt.timedelta(days=2))
    features["noise_ts"] = features["feature_ts"]
    features.loc[features.index[7], "noise_ts"] = None
    user = features.loc[features.index[7], "user_id"]
    with pytest.raises(FeatureLeakageError, match=f"feature 'noise' of user '{user}' has no timestamp") as err:
        cupac_covariate(settings, exp_id, features, model=_Linear(),
                        feature_times={"spend_score": "feature_ts", "noise": "noise_ts"})
    assert err.value.feature == "noise" and err.value.user_id == user


def test_the_champion_is_loaded_from_the_registry(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a model given, ``load_champion`` supplies it; only its input schema's columns reach it."""
    from battleground.model import tracking

    seen: dict[str, object] = {}

    class _Schema(_Linear):
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            seen["columns"] = list(frame.columns)
            return frame["spend_score"].to_numpy()

    def fake(settings_or_uri: object, name: str, alias: str) -> tracking.Champion:
        seen["asked"] = (name, alias)
        return tracking.Champion(model=_Schema(), name=name, version="7", alias=alias, run_id="r", model_type="x",
                                 metrics={}, input_schema=(("spend_score", "double"),))

    monkeypatch.setattr(tracking, "load_champion", fake)
    _, events = _register(settings, None)
    r = cupac_covariate(settings, "cupedpp", _features(events), model_name="rev-model")
    assert seen == {"asked": ("rev-model", "champion"), "columns": ["spend_score"]}
    assert (r.model, r.version) == ("rev-model@champion", "7")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"attribute": "purchase"}, "attribute must be an event type no metric counts"),
    ({"feature_times": "when"}, r"features lack the columns \['when'\]"),
    ({"user_column": "uid"}, "must be a DataFrame with a 'uid' column"),
])
def test_bad_inputs_say_what_to_fix(settings: Settings, kwargs: dict, match: str) -> None:
    exp_id, events = _register(settings, None)
    with pytest.raises(ValueError, match=match):
        cupac_covariate(settings, exp_id, _features(events), model=_Linear(), **kwargs)


def test_one_row_per_user(settings: Settings) -> None:
    exp_id, events = _register(settings, None)
    f = _features(events)
    with pytest.raises(ValueError, match="one row per user"):
        cupac_covariate(settings, exp_id, pd.concat([f, f.iloc[:1]]), model=_Linear())


def test_cli_cupac_scores_with_the_champion_and_refuses_leakage(settings: Settings, tmp_path: object,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.model import tracking

    def fake(settings_or_uri: object, name: str, alias: str) -> tracking.Champion:
        return tracking.Champion(model=_Linear(), name=name, version="3", alias=alias, run_id="r", model_type="x",
                                 metrics={}, input_schema=(("spend_score", "double"), ("noise", "double")))

    monkeypatch.setattr(tracking, "load_champion", fake)
    exp_id, events = _register(settings, None)
    path = Path(str(tmp_path)) / "features.csv"
    features = _features(events)
    features.to_csv(path, index=False)
    env = {"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": ""}
    out = CliRunner().invoke(app, ["experiment", "cupac", str(exp_id), "--features", str(path), "--json"], env=env)
    assert out.exit_code == 0, out.output
    found = json.loads(out.output)
    assert found["users_scored"] == 360 and found["version"] == "3"
    rev = next(r for r in found["variance_reduction"] if r["comparison"] == "rev/treatment")
    assert rev["variance_reduction"] > 0.5
    status = CliRunner().invoke(app, ["experiment", "status", str(exp_id), "--json"], env=env)
    assert any(r["metric"] == "rev (CUPED++)" for r in json.loads(status.output)["rows"])
    features.loc[features.index[0], "feature_ts"] = pd.Timestamp("2030-01-01")
    features.to_csv(path, index=False)
    bad = CliRunner().invoke(app, ["experiment", "cupac", str(exp_id), "--features", str(path),
                                   "--attribute", "cupac2"], env=env)
    assert bad.exit_code == 1 and "leakage: feature 'spend_score'" in bad.output and "2030-01-01" in bad.output
