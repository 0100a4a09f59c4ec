"""Dimension breakdowns from the experiment's definition to Monitor and the CLI (issue 17): metadata
``breakdown_by`` → per-slice sums from the one SQL scan (DuckDB and PostgreSQL) → ``breakdown_test``."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from tests.storage.test_strata_sums import END, START, _per_user, strata_events

from battleground.errors import BattlegroundError
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.stats import MeanSummary, RatioSummary, breakdown_test

_METRICS = [{"name": "rev", "kind": "mean", "numerator": "purchase", "primary": True},
            {"name": "buyer", "kind": "proportion", "numerator": "purchase"},
            {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"}]


def _events() -> pd.DataFrame:
    """The post-stratification data set plus a large treatment effect on revenue in country 2 only."""
    events = strata_events(users=600)
    u = _per_user(events)
    lucky = u[(u["variant"] == "treatment") & (u["country"] == 2.0)]
    extra = pd.DataFrame([{"event_id": f"x-{i}", "experiment": "strata", "variant": "treatment", "user_id": uid,
                           "event_type": "purchase", "timestamp": row.t0 + dt.timedelta(hours=1), "value": 120.0,
                           "covariate": None} for i, (uid, row) in enumerate(lucky.iterrows())])
    return pd.concat([events, extra], ignore_index=True)


def _register(settings: Settings, metadata: dict | None) -> tuple[int, pd.DataFrame]:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment("strata", metrics=_METRICS, start_at=START, end_at=END, metadata=metadata)
    reg.start(exp.id)
    events = _events()
    ingest(open_event_store(settings), events)
    return exp.id, events


def _want(events: pd.DataFrame) -> dict[str, object]:
    u = _per_user(events)
    u["slice"] = u["country"].map(lambda v: "(none)" if pd.isna(v) else format(v, "g"))
    rev, ctr = {}, {}
    for k, g in u.groupby("slice", sort=False):
        rev[k] = {v: MeanSummary(len(a), float(a.mean()), float(a.var(ddof=1)))
                  for v, a in g.groupby("variant")["rev"]}
        ctr[k] = {v: RatioSummary(len(a), a["clk"].sum(), a["imp"].sum(), (a["clk"] ** 2).sum(),
                                  (a["imp"] ** 2).sum(), (a["clk"] * a["imp"]).sum()) for v, a in g.groupby("variant")}
    return {"rev": breakdown_test(rev, control="control", relative=True),
            "ctr": breakdown_test(ctr, control="control", relative=True)}


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_monitor_breakdown_matches_the_stats_on_raw_data(backend: str, settings: Settings,
                                                         request: pytest.FixtureRequest) -> None:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    exp_id, events = _register(s, {"breakdown_by": ["country"]})
    got = Monitor(client=s).put_experiment_id(experiment_id=exp_id).breakdown("country")
    assert got.attribute == "country" and got.correction == "holm" and got.relative
    assert list(got.users) == ["0", "1", "2", "(none)"]
    assert sum(got.users.values()) == 600
    want = _want(events)
    by = {m.metric: m.result for m in got.metrics}
    assert set(by) == {"rev", "buyer", "ctr"}
    for metric in ("rev", "ctr"):
        w = {x.slice: x for x in want[metric].slices}  # type: ignore[attr-defined]
        for x in by[metric].slices:
            y = w[x.slice]
            assert (x.n_control, x.n_treatment) == (y.n_control, y.n_treatment)
            assert x.estimate == pytest.approx(y.estimate, rel=1e-9)
            assert x.adjusted_p_value == pytest.approx(y.adjusted_p_value, rel=1e-9)
            assert x.heterogeneity_p_value == pytest.approx(y.heterogeneity_p_value, rel=1e-9)
            assert x.heterogeneous == y.heterogeneous
    # the revenue effect lives in country 2: its slice is significant and flagged against the rest
    rev2 = next(x for x in by["rev"].slices if x.slice == "2")
    assert rev2.significant and rev2.heterogeneous and rev2.estimate > rev2.rest_estimate  # type: ignore[operator]
    assert ("rev", "2", "treatment") in got.flagged
    assert not any(x.heterogeneous for x in by["ctr"].slices)  # no effect on clicks anywhere
    # BH when asked
    bh = Monitor(client=s, correction="bh").put_experiment_id(experiment_id=exp_id).breakdown("country")
    assert bh.correction == "bh" and bh.metrics[0].result.correction == "bh"


def test_breakdown_by_an_undeclared_attribute_is_refused(settings: Settings) -> None:
    exp_id, _ = _register(settings, {"breakdown_by": "country", "post_stratify_by": "platform"})
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=exp_id)
    assert monitor.breakdown("platform").attribute == "platform"  # post-stratification attributes count too
    with pytest.raises(BattlegroundError, match=r"by='countri' is not an attribute.*did you mean 'country'"):
        monitor.breakdown("countri")


@pytest.mark.parametrize("bad", [[], "exposure", ["country", "country"], [1], ["purchase"], {"a": 1}])
def test_registry_refuses_a_bad_breakdown_declaration(settings: Settings, bad: object) -> None:
    reg = Registry(settings.registry_url)
    with pytest.raises(BattlegroundError, match="breakdown_by"):
        reg.create_experiment("strata", metrics=_METRICS, metadata={"breakdown_by": bad})
    exp = reg.create_experiment("fine", metrics=_METRICS, metadata={"breakdown_by": ["country"]})
    with pytest.raises(BattlegroundError, match="breakdown_by"):
        reg.update(exp.id, metadata={"breakdown_by": bad})


def test_cli_breakdown_json_and_table(settings: Settings) -> None:
    from typer.testing import CliRunner

    from battleground.cli import app

    exp_id, _ = _register(settings, {"breakdown_by": ["country"]})
    env = {"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": ""}
    out = CliRunner().invoke(app, ["experiment", "breakdown", str(exp_id), "--by", "country", "--json"], env=env)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["attribute"] == "country" and doc["correction"] == "holm"
    rows = {(r["metric"], r["slice"]): r for r in doc["slices"]}
    want = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).breakdown("country")
    w = next(x for x in want.metrics[0].result.slices if x.slice == "2")
    assert rows[("rev", "2")]["heterogeneous"] is True
    assert rows[("rev", "2")]["adjusted_p_value"] == pytest.approx(w.adjusted_p_value)
    table = CliRunner().invoke(app, ["experiment", "breakdown", str(exp_id), "--by", "country", "--correction", "bh"],
                               env=env)
    assert table.exit_code == 0, table.output
    assert "breakdown by country" in table.output and "heterogeneous" in table.output and "bh" in table.output
    bad = CliRunner().invoke(app, ["experiment", "breakdown", str(exp_id), "--by", "platform"], env=env)
    assert bad.exit_code != 0 and "not an attribute this experiment declares" in bad.output


def test_dashboard_page_shows_the_breakdown_table(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    exp_id, _ = _register(settings, {"breakdown_by": ["country"]})
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        page = c.get(f"/experiments/{exp_id}")
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert 'id="breakdown-table"' in html and "adjusted (holm)" in html
    table = html[html.index('id="breakdown-table"'):html.index("</table>", html.index('id="breakdown-table"'))]
    assert '<span class="badge warn">heterogeneous</span>' in table  # country 2's revenue
    assert table.count("<tr>") == 1 + 3 * 4  # the header, then 3 metrics × 4 slices (one treatment)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        Registry(settings.registry_url).update(exp_id, metadata={"breakdown_by": None})
        assert 'id="breakdown-table"' not in c.get(f"/experiments/{exp_id}").text


_HOSTILE = "</script><script>alert('a')</script>\"'><svg onload=alert('a')><img src=x onerror=alert('a')>"


def _hostile_experiment(settings: Settings) -> int:
    """The breakdown data with the country attribute logged under a hostile event type name and a
    hostile metric name: every one of them is data, never markup."""
    reg = Registry(settings.registry_url)
    metrics = [{**_METRICS[0], "name": "rev" + _HOSTILE}, *_METRICS[1:]]
    exp = reg.create_experiment("strata", metrics=metrics, start_at=START, end_at=END,
                                metadata={"breakdown_by": [_HOSTILE]})
    reg.start(exp.id)
    events = _events()
    events.loc[events["event_type"] == "country", "event_type"] = _HOSTILE
    ingest(open_event_store(settings), events)
    return exp.id


def test_report_shows_the_breakdowns_and_escapes_names(settings: Settings) -> None:
    from battleground.experiment.report import MakeReport

    exp_id = _hostile_experiment(settings)
    want = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).breakdown(_HOSTILE)
    rendered = MakeReport(client=settings).render(exp_id)
    html, md = rendered.html, rendered.markdown
    assert "<h2>Breakdowns</h2>" in html and "## Breakdowns" in md
    table = html[html.index('<table class="breakdowns">'):html.index("</table>", html.index('<table class="breakdowns">'))]
    assert table.count("<tr>") == 1 + 3 * 4  # the header, then 3 metrics × 4 slices (one treatment)
    assert '<span class="badge warn">heterogeneous</span>' in table  # country 2's revenue
    assert "<script" not in table and "<svg" not in table and "<img" not in table and "onerror" not in table.replace(
        "onerror=alert(&#39;a&#39;)", "")
    assert "&lt;script&gt;alert(&#39;a&#39;)&lt;/script&gt;" in table
    w = next(x for x in want.metrics[0].result.slices if x.slice == "2")
    assert f"| {_HOSTILE} | rev{_HOSTILE} | 2 | treatment |" in md and f"{w.adjusted_p_value:.3g}" in md
    assert "heterogeneous" in md
    # without a declaration there is no section
    Registry(settings.registry_url).update(exp_id, metadata={"breakdown_by": None})
    again = MakeReport(client=settings).render(exp_id)
    assert "Breakdowns" not in again.html and "## Breakdowns" not in again.markdown


def test_api_results_carry_the_breakdowns(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    exp_id = _hostile_experiment(settings)
    want = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).breakdown(_HOSTILE)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        res = c.get(f"/api/experiments/{exp_id}/results")
    assert res.status_code == 200, res.text[:500]
    doc = res.json()
    assert len(doc["breakdowns"]) == 1
    b = doc["breakdowns"][0]
    assert b["attribute"] == _HOSTILE and b["correction"] == "holm" and b["relative"] is True
    assert b["users"] == pytest.approx(want.users)
    rows = {(r["metric"], r["slice"], r["variant"]): r for r in b["slices"]}
    assert len(rows) == 3 * 4
    for m in want.metrics:
        for x in m.result.slices:
            got = rows[(m.metric, x.slice, x.variant)]
            assert got["heterogeneous"] is x.heterogeneous and got["n_treatment"] == x.n_treatment
            assert got["estimate"] == (None if x.estimate is None else pytest.approx(x.estimate, rel=1e-12))
            assert got["adjusted_p_value"] == (None if x.adjusted_p_value is None
                                               else pytest.approx(x.adjusted_p_value, rel=1e-12))
    assert rows[("rev" + _HOSTILE, "2", "treatment")]["heterogeneous"] is True
    # the OpenAPI description names the field
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        assert "breakdowns" in c.get("/api/openapi.json").text
