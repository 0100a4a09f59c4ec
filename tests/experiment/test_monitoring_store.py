"""Monitoring end to end: the real registry, assigner and event store (DuckDB and PostgreSQL), checked
against pandas on the same events and the pure statistics functions; end conditions; the CLI."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from ab_scenario import START, build, expected, per_user, row
from typer.testing import CliRunner

from battleground import stats
from battleground.cli import app
from battleground.experiment.monitoring import Monitor, check_experiments
from battleground.settings import Settings

REL = 1e-9
COLUMNS = ("abs_lift", "abs_ci_lower", "abs_ci_upper", "p_value", "p_value_adjusted", "rel_lift",
           "rel_ci_lower", "rel_ci_upper")


def assert_matches(frame: pd.DataFrame, want: dict) -> None:
    assert len(frame) == len(want)
    for (metric, variant), numbers in want.items():
        r = row(frame, metric, variant)
        assert r["users"] == numbers["users"] and r["events"] == numbers["events"], (metric, variant)
        assert r["value"] == pytest.approx(numbers["value"], rel=REL), (metric, variant)
        if variant == "treatment":
            for col in COLUMNS:
                assert r[col] == pytest.approx(numbers[col], rel=1e-7, abs=1e-13, nan_ok=True), (metric, col)


def test_results_match_pandas_and_pure_stats(settings: Settings) -> None:
    sc = build(settings)
    monitor = Monitor(client=settings)
    assert monitor.put_experiment_id(expeirment_id="checkout-button") is monitor  # the seed's spelling
    frame = monitor.get_abtest_result(start_dt="2022-03-01", end_dt="2022-03-07")
    assert list(frame["metric"]) == ["conversion"] * 2 + ["revenue"] * 2 + ["ctr"] * 2 + ["errors"] * 2
    assert list(frame["variant"]) == ["control", "treatment"] * 4
    assert_matches(frame, expected(sc.events))
    ctr = row(frame, "ctr", "treatment")  # CTR, a ratio metric by the delta method
    u = per_user(sc.events)
    t = u[u.variant == "treatment"]
    assert ctr["kind"] == "ratio" and ctr["value"] == pytest.approx(t.clicks.sum() / t.impressions.sum())
    assert set(frame["method"][~frame["is_control"]]) == {"welch"}
    # The lift is real: conversion 10 % → 15 % is significant, CI above 0.
    conv = row(frame, "conversion", "treatment")
    assert conv["significant"] and conv["abs_ci_lower"] > 0 and conv["primary"]
    # A window: events (and users) from the first three days only.
    early = monitor.get_abtest_result(start_dt="2022-03-01", end_dt="2022-03-03")
    assert_matches(early, expected(sc.events, START, START + dt.timedelta(days=3)))
    assert early["users"].max() < frame["users"].max()


def test_results_on_postgres(postgres_settings: Settings) -> None:
    sc = build(postgres_settings, users=1500, days=5, seed=3)
    frame = Monitor(client=postgres_settings).put_experiment_id(experiment_id=sc.id).get_abtest_result()
    assert_matches(frame, expected(sc.events))
    daily = Monitor(client=postgres_settings).put_experiment_id(experiment_id=sc.id).get_daily_result()
    assert daily["date"].nunique() == 5  # one block per day of the experiment
    last = daily[daily["date"] == daily["date"].max()].reset_index(drop=True)
    assert np.allclose(last["p_value"].fillna(-1), frame["p_value"].fillna(-1), rtol=1e-9)


def test_daily_cumulative_series(settings: Settings) -> None:
    sc = build(settings, users=2000, days=5, seed=1)
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=sc.id)
    daily = monitor.get_daily_result()
    dates = sorted(daily["date"].unique())
    assert [pd.Timestamp(d).date() for d in dates] == [(START + dt.timedelta(days=k)).date() for k in range(5)]
    u = per_user(sc.events)
    first = sc.events[sc.events.event_type == "exposure"].set_index("user_id")["timestamp"]
    for k, day in enumerate(dates):
        cutoff = START + dt.timedelta(days=k + 1)
        block = daily[daily["date"] == day]
        ctrl = row(block, "conversion", "control")
        assert ctrl["users"] == int(((first < cutoff) & (u.loc[first.index, "variant"] == "control")).sum())
        # Day k's cumulative numbers are the fixed-window result up to the end of that day.
        assert_matches(block.drop(columns="date"), expected(sc.events, START, cutoff))
    assert (np.diff(daily[(daily.metric == "ctr") & (daily.variant == "treatment")]["users"]) > 0).all()


def test_srm_status_in_the_frame(settings: Settings) -> None:
    sc = build(settings, users=4000, drop_treatment=0.2, seed=2)
    frame = Monitor(client=settings).put_experiment_id(experiment_id=sc.id).get_abtest_result()
    users = [int(row(frame, "conversion", v)["users"]) for v in ("control", "treatment")]
    srm = stats.srm_test(users, [0.5, 0.5])
    assert srm.status == "alert" and (frame["srm_status"] == "alert").all()
    assert frame["srm_p_value"].iloc[0] == pytest.approx(srm.p_value, rel=1e-12)
    typed = Monitor(client=settings).put_experiment_id(experiment_id=sc.id).result()
    assert typed.srm is not None and typed.srm.chi2 == pytest.approx(srm.chi2)
    assert typed.decision.verdict == "data_quality" and typed.data_quality[0].status == "fail"
    ok = build(settings, name="balanced", users=2000, seed=4)
    assert (Monitor(client=settings).put_experiment_id(experiment_id=ok.id).get_abtest_result()["srm_status"] == "ok").all()


def test_guardrail_breach(settings: Settings) -> None:
    sc = build(settings, users=4000, errors=(0.02, 0.06), seed=5)
    frame = Monitor(client=settings).put_experiment_id(experiment_id=sc.id).get_abtest_result()
    errors = row(frame, "errors", "treatment")
    assert errors["guardrail"] and errors["significant"] and errors["abs_lift"] > 0
    assert errors["guardrail_breach"]
    assert not frame[frame.metric != "errors"]["guardrail_breach"].any()
    assert_matches(frame, expected(sc.events))


def _daily_relative(sc_events: pd.DataFrame, days: int) -> tuple[np.ndarray, np.ndarray]:
    est, se = [], []
    for k in range(days):
        u = per_user(sc_events, START, START + dt.timedelta(days=k + 1))
        c, t = u[u.variant == "control"], u[u.variant == "treatment"]
        r = stats.compare_means((c.conversion.sum(), len(c)), (t.conversion.sum(), len(t)),
                                proportion=True, relative=True)
        est.append(r.estimate)
        se.append(r.se)
    return np.array(est), np.array(se)


def test_sequential_experiment_uses_msprt(settings: Settings) -> None:
    sc = build(settings, users=3000, days=6, sequential=True, conversion=(0.10, 0.12), seed=6)
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=sc.id)
    frame = monitor.get_abtest_result()
    conv = row(frame, "conversion", "treatment")
    assert set(frame["method"][~frame["is_control"]]) == {"msprt"}
    est, se = _daily_relative(sc.events, 6)
    path = stats.msprt_path(est, se, tau2=monitor.mixing_sd**2)
    assert conv["p_value"] == pytest.approx(path.p_value[-1], rel=1e-7)
    assert conv["rel_ci_lower"] == pytest.approx(path.ci_lower[-1], rel=1e-7)
    assert conv["rel_ci_upper"] == pytest.approx(path.ci_upper[-1], rel=1e-7)
    assert conv["rel_lift"] == pytest.approx(est[-1], rel=1e-9)
    # Always valid: wider than the fixed-horizon interval on the same data.
    fixed = expected(sc.events)[("conversion", "treatment")]
    assert conv["rel_ci_upper"] - conv["rel_ci_lower"] > fixed["rel_ci_upper"] - fixed["rel_ci_lower"]
    daily = monitor.get_daily_result()
    p = daily[(daily.metric == "conversion") & (daily.variant == "treatment")]["p_value"].to_numpy()
    assert np.allclose(p, path.p_value, rtol=1e-7) and (np.diff(p) <= 0).all()


def _audit(sc, action: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e.detail for e in sc.registry.audit_log(sc.id) if e.action == action]


def test_end_condition_target_sample_size(settings: Settings) -> None:
    sc = build(settings, users=2400, target_sample_size=1000)
    waiting = build(settings, name="still-small", users=400, target_sample_size=1000, seed=9)
    reports = {r.name: r for r in check_experiments(settings)}
    assert reports["checkout-button"].met and reports["checkout-button"].stopped
    assert reports["checkout-button"].reasons[0].startswith("target sample size reached")
    assert not reports["still-small"].met and not reports["still-small"].stopped
    assert sc.registry.get(sc.id).status == "stopped" and waiting.registry.get(waiting.id).status == "running"
    (stop,) = _audit(sc, "stop")
    assert "target sample size reached" in stop["reason"]
    assert sc.registry.get(sc.id).stop_reason == stop["reason"]
    assert [r.name for r in check_experiments(settings)] == ["still-small"]  # cron-safe: runs again


def test_end_condition_max_duration(settings: Settings) -> None:
    sc = build(settings, users=600, max_duration_days=14)
    early = check_experiments(settings, sc.id, now=START + dt.timedelta(days=10))
    assert not early[0].met and sc.registry.get(sc.id).status == "running"
    (late,) = check_experiments(settings, "checkout-button")  # now: long after 2022-03-15
    assert late.met and late.stopped and late.reasons[0].startswith("maximum duration passed: 14 days")
    assert "maximum duration passed" in _audit(sc, "stop")[0]["reason"]


def test_end_condition_sequential_boundary(settings: Settings) -> None:
    # conversion +10 points: clear even after Holm over the three success metrics
    sc = build(settings, users=4000, sequential=True, conversion=(0.10, 0.20), seed=8)
    dry = check_experiments(settings, sc.id, stop=False)[0]
    assert dry.met and not dry.stopped and sc.registry.get(sc.id).status == "running"
    (r,) = check_experiments(settings, sc.id)
    assert r.stopped and r.reasons[0].startswith("sequential boundary crossed: ship treatment")
    assert "success metric conversion improved in treatment" in r.reasons[0]
    assert "always-valid p" in _audit(sc, "stop")[0]["reason"]
    flat = build(settings, name="flat", users=2000, sequential=True, conversion=(0.10, 0.10), seed=10)
    assert not check_experiments(settings, flat.id)[0].met


def test_srm_alert_recorded_but_not_stopping(settings: Settings) -> None:
    sc = build(settings, users=4000, drop_treatment=0.2, target_sample_size=100_000, seed=2)
    (r,) = check_experiments(settings)
    assert r.srm_status == "alert" and r.srm_p_value < 0.001 and not r.met and not r.stopped
    assert sc.registry.get(sc.id).status == "running"
    (note,) = _audit(sc, "srm_alert")
    assert note["message"].startswith("SRM alert: users per variant")


# ---------------------------------------------------------------------------------------------------
# CLI: battleground experiment status | check
# ---------------------------------------------------------------------------------------------------


def _env(settings: Settings) -> dict[str, str]:
    return {"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": "", "COLUMNS": "200"}


def test_cli_status(settings: Settings) -> None:
    build(settings, users=2000, drop_treatment=0.2, seed=2)
    result = CliRunner().invoke(app, ["experiment", "status", "checkout-button"], env=_env(settings))
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("checkout-button", "Welch", "conversion", "revenue", "ctr", "errors", "treatment",
                 "SRM ALERT", "do not trust these results"):
        assert text in out, text
    window = CliRunner().invoke(app, ["experiment", "status", "1", "--start", "2022-03-01", "--end", "2022-03-02"],
                                env=_env(settings))
    assert window.exit_code == 0 and window.output != out
    missing = CliRunner().invoke(app, ["experiment", "status", "nope"], env=_env(settings))
    assert missing.exit_code == 1 and "no experiment 'nope'" in missing.output


def test_cli_check(settings: Settings) -> None:
    sc = build(settings, users=2400, target_sample_size=1000)
    dry = CliRunner().invoke(app, ["experiment", "check", "--dry-run"], env=_env(settings))
    assert dry.exit_code == 0 and "would stop" in dry.output and "target sample size reached" in dry.output
    assert sc.registry.get(sc.id).status == "running"
    result = CliRunner().invoke(app, ["experiment", "check"], env=_env(settings))
    assert result.exit_code == 0 and "stopped" in result.output
    assert sc.registry.get(sc.id).status == "stopped"
    again = CliRunner().invoke(app, ["experiment", "check"], env=_env(settings))
    assert again.exit_code == 0 and "no running experiments" in again.output


# --------------------------------------------------------------------------------------------------
# The experiment source: exposure check and CUPED from the same scan (both backends)
# --------------------------------------------------------------------------------------------------


def _cuped_world(s: Settings) -> tuple[Monitor, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Users with spend before their exposure (the covariate) and after it, correlated; one user exposed
    to both variants. Returns the monitor and the per-variant (post, pre) arrays of the analysed users."""
    from battleground.experiment.events import ingest
    from battleground.experiment.register import Registry
    from battleground.storage.events import open_event_store

    registry = Registry(s.registry_url)
    exp = registry.create_experiment("cuped-src", metrics=[{"name": "spend", "kind": "mean", "numerator": "purchase"}],
                                     start_at=START)
    registry.start(exp.id)
    rng = np.random.default_rng(5)
    rows, arrays = [], {}
    t0 = START + dt.timedelta(days=15)
    for v, lift in (("control", 0.0), ("treatment", 1.0)):
        pre = rng.gamma(2.0, 5.0, 300)
        post = pre * 0.8 + rng.normal(0, 2, 300) + 5 + lift
        arrays[v] = (post, pre)
        for i in range(300):
            u = f"{v}-{i}"
            rows += [(u, v, "purchase", t0 - dt.timedelta(days=3), float(pre[i])),
                     (u, v, "exposure", t0, None), (u, v, "purchase", t0 + dt.timedelta(days=1), float(post[i]))]
    rows += [("both", "control", "exposure", t0, None), ("both", "treatment", "exposure", t0, None)]
    ingest(open_event_store(s), pd.DataFrame({
        "event_id": [f"e{i}" for i in range(len(rows))], "experiment": "cuped-src", "user_id": [r[0] for r in rows],
        "variant": [r[1] for r in rows], "event_type": [r[2] for r in rows], "timestamp": [r[3] for r in rows],
        "value": pd.Series([r[4] for r in rows], dtype=object)}))
    return Monitor(client=s).put_experiment_id(experiment_id="cuped-src"), arrays


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_cuped_and_exposure_check_from_the_source(backend: str, settings: Settings,
                                                  request: pytest.FixtureRequest) -> None:
    from battleground.experiment._metric_sums import cuped_comparisons, exposure_check

    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    monitor, arrays = _cuped_world(s)
    info = monitor.experiment()
    found = monitor.backend.experiment_sums(info, None, None)
    check = exposure_check(found)
    assert (check.exposed_users, check.multiple_exposure_users, check.policy) == (601, 1, "exclude")
    assert check.share == pytest.approx(1 / 601) and check.status == "ok"
    (cmp,) = cuped_comparisons([(m.name, m.kind) for m in info.metrics], found, control="control")
    (post_c, pre_c), (post_t, pre_t) = arrays["control"], arrays["treatment"]
    want = stats.cuped_test((post_c, pre_c), (post_t, pre_t), relative=True)
    plain = stats.compare_means(post_c, post_t, relative=True)
    for got, ref in ((cmp.adjusted, want), (cmp.unadjusted, plain)):
        for f in ("estimate", "se", "p_value", "ci_lower", "ci_upper"):
            assert getattr(got, f) == pytest.approx(getattr(ref, f), rel=1e-9), f
    assert cmp.adjusted.se < 0.7 * cmp.unadjusted.se  # the covariate explains most of the variance
    assert cmp.pre_period_p_value == pytest.approx(stats.compare_means(pre_c, pre_t).p_value, rel=1e-9)
    # The seed frame comes from the same sums, the excluded user in no arm.
    frame = monitor.get_abtest_result()
    assert list(frame["users"]) == [300, 300]
    keep = Monitor(client=s, multiple_exposures="keep").put_experiment_id(experiment_id="cuped-src")
    assert list(keep.get_abtest_result()["users"]) == [301, 301]
    with pytest.raises(ValueError, match="multiple_exposures must be one of"):
        Monitor(client=s, multiple_exposures="all").put_experiment_id(experiment_id="cuped-src")


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_monitor_is_exact_when_the_mean_dwarfs_the_spread(backend: str, settings: Settings,
                                                          request: pytest.FixtureRequest) -> None:
    """Revenue near 1e8 with sd 1: raw Σx² would lose every digit of the variance; the store's shifted
    sums reach the Welch test intact, through Monitor, on both backends (scipy's p to 1e-9)."""
    from scipy import stats as sps

    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry

    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    registry = Registry(s.registry_url)
    exp = registry.create_experiment(
        "huge-mean", metrics=[{"name": "revenue", "kind": "mean", "numerator": "buy", "primary": True}],
        start_at="2022-03-01",
    )
    registry.start(exp.id)
    x = 1e8 + np.random.default_rng(1).normal(size=400)
    t0 = dt.datetime(2022, 3, 1)
    rows = []
    for i, value in enumerate(x):
        variant, user, at = ("control", "treatment")[i % 2], f"u{i}", t0 + dt.timedelta(minutes=i)
        rows.append({"event_id": f"x{i}", "experiment": "huge-mean", "variant": variant, "user_id": user,
                     "event_type": "exposure", "timestamp": at})
        rows.append({"event_id": f"b{i}", "experiment": "huge-mean", "variant": variant, "user_id": user,
                     "event_type": "buy", "timestamp": at + dt.timedelta(seconds=30), "value": float(value)})
    ingest(open_event_store(s), rows)
    monitor = Monitor(client=s)
    monitor.put_experiment_id(exp.id)
    treatment = next(r for r in monitor.result(now=dt.datetime(2030, 1, 1)).rows if not r.is_control)
    want = sps.ttest_ind(x[1::2], x[0::2], equal_var=False)
    assert treatment.p_value == pytest.approx(want.pvalue, rel=1e-9)
    assert treatment.abs_lift == pytest.approx(x[1::2].mean() - x[0::2].mean(), rel=1e-6)
