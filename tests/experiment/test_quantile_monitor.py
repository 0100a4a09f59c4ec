"""Quantile metrics end to end (issue 17): declared in the registry, computed in the scan, shown by
Monitor, the report, ``experiment status`` and the dashboard; bad declarations refused with the fix."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.storage.test_strata_sums import END, START, _per_user, strata_events

from battleground.errors import BattlegroundError
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.stats import quantile_bound_levels, quantile_test
from battleground.storage.sums import QuantileSums

METRICS = [{"name": "rev", "kind": "mean", "numerator": "purchase", "primary": True},
           {"name": "rev_p90", "kind": "quantile", "numerator": "purchase", "quantile": 0.9},
           {"name": "rev_p50", "kind": "quantile", "numerator": "purchase", "quantile": 0.5, "guardrail": True}]


def _registered(settings: Settings, *, sequential: bool = False) -> tuple[Registry, int, pd.DataFrame]:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment("strata", metrics=METRICS, start_at=START - dt.timedelta(days=30), end_at=END,
                                end_conditions={"sequential": sequential})
    reg.start(exp.id)
    events = strata_events(seed=4, users=400)
    ingest(open_event_store(settings), events)
    return reg, exp.id, events


def _arm(x: np.ndarray, nu: float, v: str) -> QuantileSums:
    """The arm as Monitor's scan gives it: numpy's quantiles at ν and at the bound levels of n* = n (the
    metric-sums scan's users tell the quantile scan which n to ask the bounds at)."""
    n_star = len(x)
    lo, hi = quantile_bound_levels(nu, n_star)
    q = np.quantile(x, [nu, lo, hi])
    return QuantileSums(v, len(x), 0, nu, *map(float, q), n_star)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_monitor_rows_are_the_quantile_test_on_numpys_order_statistics(
        backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    reg, exp_id, events = _registered(s)
    assert [(m.kind, m.quantile) for m in reg.get(exp_id).metrics] == [("mean", None), ("quantile", 0.9),
                                                                        ("quantile", 0.5)]
    result = Monitor(client=s).put_experiment_id(experiment_id=exp_id).result(START, END)
    u = _per_user(events)
    rows = {(r.metric, r.variant): r for r in result.rows}
    for name, nu in (("rev_p90", 0.9), ("rev_p50", 0.5)):
        c, t = (_arm(u.loc[u["variant"] == v, "rev"].to_numpy(), nu, v) for v in ("control", "treatment"))
        a, rel = quantile_test(c, t), quantile_test(c, t, relative=True)
        row, ctrl = rows[(name, "treatment")], rows[(name, "control")]
        assert row.kind == "quantile" and row.method == "z" and ctrl.value == pytest.approx(c.quantile, rel=1e-12)
        assert (row.value, row.abs_lift, row.abs_ci_lower, row.abs_ci_upper) == pytest.approx(
            (t.quantile, a.estimate, a.ci_lower, a.ci_upper), rel=1e-9)
        assert (row.rel_lift, row.rel_ci_lower, row.rel_ci_upper, row.p_value) == pytest.approx(
            (rel.estimate, rel.ci_lower, rel.ci_upper, a.p_value), rel=1e-9)
        assert row.users == ctrl.users == 200
    assert result.quantiles == (("rev_p90", "p90"), ("rev_p50", "p50"))
    assert "rev_p90 (p90 of the per-user value), rev_p50 (p50 of the per-user value)" in result.quantile_note
    # no CUPED row for a quantile: its test reads order statistics, not the mean sums
    assert rows[("rev_p90", "treatment")].cuped is None


def test_sequential_experiment_gives_quantiles_msprt_at_the_current_look(settings: Settings) -> None:
    _, exp_id, events = _registered(settings, sequential=True)
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(START, END)
    u = _per_user(events)
    row = next(r for r in result.rows if r.metric == "rev_p90" and r.variant == "treatment")
    c, t = (_arm(u.loc[u["variant"] == v, "rev"].to_numpy(), 0.9, v) for v in ("control", "treatment"))
    s = quantile_test(c, t, relative=True, sequential=True)
    assert row.method == "msprt" and (row.rel_ci_lower, row.rel_ci_upper, row.p_value) == pytest.approx(
        (s.ci_lower, s.ci_upper, s.p_value), rel=1e-9)
    assert next(r for r in result.rows if r.metric == "rev" and r.variant == "treatment").method == "msprt"


def test_report_status_and_dashboard_show_quantile_metrics(settings: Settings) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.experiment.report import render_report
    from battleground.web import create_app

    _, exp_id, _ = _registered(settings)
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=exp_id)
    result = monitor.result(START, END)
    html, md, _ = render_report(monitor.experiment(), result, None, generated=END)
    note = "rev_p90 (p90 of the per-user value)"
    assert note in md and note in html and "| rev_p90 | treatment |" in md
    out = CliRunner().invoke(app, ["experiment", "status", str(exp_id)], env={"BATTLEGROUND_HOME": str(settings.home),
                                                                             "COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "rev_p90 " in out.output and note in " ".join(out.output.split())
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/experiments/{exp_id}")
    assert page.status_code == 200 and "p90 over users" in page.text and "rev_p50 (p50 of the per-user value)" in page.text


@pytest.mark.parametrize(("metric", "match"), [
    ({"name": "q", "kind": "quantile", "numerator": "purchase"}, r"quantile level in \(0, 1\).*None.*give quantile="),
    ({"name": "q", "kind": "quantile", "numerator": "purchase", "quantile": 90}, r"quantile level in \(0, 1\).*90"),
    ({"name": "q", "kind": "quantile", "numerator": "purchase", "quantile": True}, r"quantile level"),
    ({"name": "m", "kind": "mean", "numerator": "purchase", "quantile": 0.9},
     r"only quantile metrics have a quantile level.*drop quantile= or use kind='quantile'"),
])
def test_registry_refuses_impossible_quantile_declarations(settings: Settings, metric: dict[str, Any],
                                                           match: str) -> None:
    reg = Registry(settings.registry_url)
    with pytest.raises(BattlegroundError, match=match):
        reg.create_experiment("bad", metrics=[metric])
    assert reg.list() == []  # nothing stored
    exp = reg.create_experiment("ok", metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase"}])
    with pytest.raises(BattlegroundError, match=match):
        reg.add_metric(exp.id, metric)
    assert [m.name for m in reg.get(exp.id).metrics] == ["rev"]
    added = reg.add_metric(exp.id, "p99", kind="quantile", numerator="purchase", quantile=0.99)
    assert [(m.kind, m.quantile) for m in added.metrics] == [("mean", None), ("quantile", 0.99)]


def test_all_zero_quantile_is_not_estimable_and_decides_nothing(settings: Settings) -> None:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment("zeros", metrics=[{"name": "p90", "kind": "quantile", "numerator": "refund",
                                                   "quantile": 0.9, "primary": True}],
                                start_at=START - dt.timedelta(days=30), end_at=END)
    reg.start(exp.id)
    ingest(open_event_store(settings), strata_events(seed=4, users=200, experiment="zeros"))  # no refunds at all
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp.id).result(START, END)
    row = next(r for r in result.rows if not r.is_control)
    assert row.value == 0.0 and math.isnan(row.p_value) and not row.significant
    assert result.decision.verdict not in ("ship", "dont_ship")
