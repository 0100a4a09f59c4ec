"""Offline A/A on an experiment's own data (issue 17): the store's per-user values against pandas on the
same events, the re-splits' false-positive rates and verdicts, the errors, and `experiment aa`."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from ab_scenario import START, build, per_user
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment._metric_sums import metric_query
from battleground.experiment._offline_aa import AaInputError, _default_share, verdict
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import offline_aa
from battleground.settings import Settings
from battleground.stats import aa_resplits

# the per-user column of ab_scenario.per_user behind each metric (x; y for the ratio)
COLUMN = {"conversion": ("conversion", None), "revenue": ("revenue", None), "ctr": ("clicks", "impressions"),
          "errors": ("errors", None)}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One 2,500-user experiment read (never changed) by several tests."""
    home = tmp_path_factory.mktemp("aa") / ".battleground"
    return build(Settings.from_env({"BATTLEGROUND_HOME": str(home)}), users=2500, seed=2)


def _values(sc, **window):
    store = open_event_store(sc.settings)
    defs = [metric_query(m) for m in sc.experiment.metrics]
    return store.per_user_values(sc.id, defs, **window), [m.name for m in sc.experiment.metrics]


def _check_against_pandas(pu, names, want: pd.DataFrame) -> None:
    assert pu.users == len(want)
    for arm in ("control", "treatment"):
        got = pu.variants == arm
        w = want[want["variant"] == arm]
        assert got.sum() == len(w)
        for j, name in enumerate(names):
            xcol, ycol = COLUMN[name]
            # as multisets: the engine returns rows in no particular order
            assert np.sort(pu.x[got, j]) == pytest.approx(np.sort(w[xcol].to_numpy(float)), abs=1e-9), name
            if ycol:
                assert np.sort(pu.y[got, j]) == pytest.approx(np.sort(w[ycol].to_numpy(float))), name
            else:
                assert not pu.y[got, j].any()


def test_per_user_values_match_pandas_and_add_up_to_the_sums(shared) -> None:
    sc, settings = shared, shared.settings
    pu, names = _values(sc)
    _check_against_pandas(pu, names, per_user(sc.events))
    store = open_event_store(settings)
    sums = store.experiment_sums(sc.id, [metric_query(m) for m in sc.experiment.metrics],
                                 variants=sc.experiment.variant_names)
    for j, arms in enumerate(sums.metrics):
        for s in arms:
            got = pu.variants == s.variant
            assert s.users == got.sum() and s.mean == pytest.approx(pu.x[got, j].mean(), rel=1e-12)
    # a window: only exposures (and events) inside it
    end = START + dt.timedelta(days=2)
    early, _ = _values(sc, start=START, end=end)
    _check_against_pandas(early, names, per_user(sc.events, START, end))
    assert 0 < early.users < pu.users


def test_per_user_values_on_postgres(postgres_settings: Settings) -> None:
    sc = build(postgres_settings, users=400, days=3, seed=5)
    pu, names = _values(sc)
    _check_against_pandas(pu, names, per_user(sc.events))


def test_per_user_values_of_an_experiment_without_exposures(settings: Settings) -> None:
    sc = build(settings, users=50, seed=1)
    pu, _ = _values(sc, start=START.replace(year=2030))
    assert pu.users == 0 and pu.x.shape == (0, 4)


def test_offline_aa_rates_verdicts_and_determinism(shared) -> None:
    sc, settings = shared, shared.settings
    r = offline_aa(settings, "checkout-button", resplits=400, seed=11)
    assert [m.metric for m in r.metrics] == ["conversion", "revenue", "ctr", "errors"]
    assert r.users == len(per_user(sc.events)) and r.share == 0.5 and r.arm is None
    for m in r.metrics:
        assert m.resplits == 400 and m.users == r.users
        # a calibrated test on ~2,500 users: the rate is within 3 Monte-Carlo SEs (1.1 points) of 5 %
        assert abs(m.false_positive_rate - 0.05) < 3.5 * m.mc_se, (m.metric, m.false_positive_rate)
    again = offline_aa(settings, sc.id, resplits=400, seed=11)
    assert [m.false_positive_rate for m in again.metrics] == [m.false_positive_rate for m in r.metrics]
    np.testing.assert_array_equal(again.metrics[1].p_values, r.metrics[1].p_values)
    other = offline_aa(settings, sc.id, resplits=400, seed=12, metrics=["revenue"])
    assert not np.array_equal(other.metrics[0].p_values, r.metrics[1].p_values)
    # one arm only, one metric, an uneven share
    control = offline_aa(settings, sc.id, resplits=50, arm="control", share=0.2, metrics=["ctr", "conversion"])
    u = per_user(sc.events)
    assert control.users == int((u["variant"] == "control").sum()) and control.share == 0.2
    assert [m.metric for m in control.metrics] == ["ctr", "conversion"]
    d = control.to_dict()
    assert "p_values" not in d["metrics"][0] and sum(d["metrics"][0]["p_value_deciles"]) == 50
    json.dumps(d)


def test_offline_aa_does_not_depend_on_row_order() -> None:
    """The experiment-level function sorts users canonically; the same values in another order give
    the same p-values (checked here on the sort itself, which is what it applies)."""
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=500)
    y = rng.poisson(3, 500).astype(float) + 1
    perm = rng.permutation(500)
    a, b = np.lexsort((y, x)), np.lexsort((y[perm], x[perm]))
    ra = aa_resplits(x[a], denominator=y[a], kind="ratio", resplits=30, seed=1)
    rb = aa_resplits(x[perm][b], denominator=y[perm][b], kind="ratio", resplits=30, seed=1)
    np.testing.assert_array_equal(ra.p_values, rb.p_values)


def test_offline_aa_adversarial_data(settings: Settings) -> None:
    """A metric nobody triggers has no variance (no verdict, not "calibrated"); one whale makes the
    mean's test conservative (it can only be significant when the whale's side is large)."""
    sc = build(settings, users=800, errors=(0.0, 0.0), seed=6)
    whale = pd.DataFrame({"event_id": ["whale"], "experiment": sc.id, "variant": "control", "user_id": "1",
                          "event_type": "purchase", "timestamp": [START + pd.Timedelta(days=6, hours=23)],
                          "value": pd.array([5e7], dtype="Float64")})
    user1 = sc.events[(sc.events.user_id == "1") & (sc.events.event_type == "exposure")]
    whale["variant"] = user1["variant"].iloc[0]
    ingest(open_event_store(settings), whale)
    r = offline_aa(settings, sc.id, resplits=300, seed=3)
    by = {m.metric: m for m in r.metrics}
    assert by["errors"].false_positive_rate != by["errors"].false_positive_rate  # NaN: all zeros
    assert verdict(by["errors"]) == "no_variance" and r.to_dict()["metrics"][3]["false_positive_rate"] is None
    assert by["revenue"].false_positive_rate < 0.02 and verdict(by["revenue"]) == "conservative"
    assert verdict(by["conversion"]) == "calibrated"


def test_offline_aa_errors_name_the_value(shared) -> None:
    settings = shared.settings
    with pytest.raises(AaInputError, match=r"metric 'revenu' .*did you mean 'revenue'"):
        offline_aa(settings, "checkout-button", metrics=["revenu"])
    with pytest.raises(AaInputError, match=r"arm 'contrl' .*did you mean 'control'"):
        offline_aa(settings, "checkout-button", arm="contrl")
    with pytest.raises(AaInputError, match=r"share must be in \(0, 1\), got 1.5"):
        offline_aa(settings, "checkout-button", share=1.5)
    with pytest.raises(AaInputError, match="experiment is required"):
        offline_aa(settings)
    with pytest.raises(Exception, match="resplits must be >= 1"):
        offline_aa(settings, "checkout-button", resplits=0)


def test_default_share_follows_the_weights() -> None:
    def info(*weights: float) -> SimpleNamespace:
        return SimpleNamespace(variants=[SimpleNamespace(weight=w, is_control=i == 0) for i, w in enumerate(weights)])

    assert _default_share(info(0.8, 0.2)) == pytest.approx(0.2)
    assert _default_share(info(0.3, 0.3)) == pytest.approx(0.5)  # weights of a partial rollout
    assert _default_share(info(0.2, 0.3, 0.5)) == 0.5  # 3+ arms: an even re-split


def test_cli_experiment_aa(shared) -> None:
    settings = shared.settings
    env = {"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": "", "COLUMNS": "200"}
    runner = CliRunner()
    out = runner.invoke(app, ["experiment", "aa", "checkout-button", "--resplits", "200", "--seed", "4"], env=env)
    assert out.exit_code == 0, out.output
    assert "offline A/A" in out.output and "conversion" in out.output and "200 re-splits" in out.output
    got = runner.invoke(app, ["experiment", "aa", "checkout-button", "--resplits", "200", "--seed", "4",
                              "--metric", "ctr", "--json"], env=env)
    assert got.exit_code == 0, got.output
    payload = json.loads(got.output)
    assert payload["resplits"] == 200 and [m["metric"] for m in payload["metrics"]] == ["ctr"]
    direct = offline_aa(settings, "checkout-button", resplits=200, seed=4, metrics=["ctr"])
    assert payload["metrics"][0]["false_positive_rate"] == direct.metrics[0].false_positive_rate
    bad = runner.invoke(app, ["experiment", "aa", "checkout-button", "--metric", "nope"], env=env)
    assert bad.exit_code == 1 and "not registered" in bad.output
