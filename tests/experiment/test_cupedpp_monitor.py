"""CUPED++ from the experiment's definition to every surface (issue 17): metadata
``regression_adjustment`` → per-arm covariate sums from the one SQL scan → ``regression_adjusted_test``
→ a "CUPED++" row with its variance reduction beside each plain row (report, dashboard, CLI)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from tests.storage.test_covariate_sums import covariate_events, per_user_covariates
from tests.storage.test_strata_sums import END, START

from battleground.errors import BattlegroundError
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.stats import CovariateSummary, regression_adjusted_test

_METRICS = [{"name": "rev", "kind": "mean", "numerator": "purchase", "primary": True},
            {"name": "buyer", "kind": "proportion", "numerator": "purchase"},
            {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"}]
_DECLARED = {"regression_adjustment": {"attributes": ["country", "platform"], "ridge": 0.0}}


def _register(settings: Settings, metadata: dict | None) -> tuple[int, object]:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment("cupedpp", metrics=_METRICS, start_at=START - dt.timedelta(days=30), end_at=END,
                                metadata=metadata)
    reg.start(exp.id)
    events = covariate_events(users=400)
    events["experiment"] = "cupedpp"
    ingest(open_event_store(settings), events)
    return exp.id, events


def _want(events: object, metric: str) -> object:
    """The same comparison computed from per-user values in pandas (ridge 0)."""
    u = per_user_covariates(events)  # type: ignore[arg-type]
    # the covariates in the order of the sums: the metrics' pre-periods (rev, buyer, ctr: no pre-period
    # clicks, 0), then each attribute and its missing flag
    z = np.column_stack([u["rev_pre"], u["buyer_pre"], np.zeros(len(u)), u["country"].fillna(0.0),
                         u["country"].isna(), u["platform"].fillna(0.0), u["platform"].isna()]).astype(float)
    arms = [CovariateSummary.from_arrays(u[metric][u["variant"] == v], z[(u["variant"] == v).to_numpy()], name=v)
            for v in ("control", "treatment")]
    return regression_adjusted_test(arms, control="control", ridge=0.0, relative=True).comparisons[0]


def test_monitor_shows_cupedpp_rows_with_the_variance_reduction(settings: Settings) -> None:
    exp_id, events = _register(settings, _DECLARED)
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(now=END)
    assert result.has_cupedpp
    assert result.cupedpp_covariates[:3] == ("rev (pre-period)", "buyer (pre-period)", "country")
    assert "ctr (pre-period)" not in result.cupedpp_covariates  # no pre-period clicks: constant, dropped
    rows = {(r.metric, r.variant): r for r in result.rows}
    assert rows[("rev", "control")].cupedpp is None and rows[("ctr", "treatment")].cupedpp is None
    for metric in ("rev", "buyer"):
        row = rows[(metric, "treatment")]
        pp = row.cupedpp
        want = _want(events, "rev" if metric == "rev" else "buyer")
        assert pp is not None and pp.method == "cuped++"
        assert pp.rel_lift == pytest.approx(want.estimate, rel=1e-9)
        assert (pp.rel_ci_lower, pp.rel_ci_upper) == pytest.approx(want.ci, rel=1e-9)
        assert pp.p_value == pytest.approx(want.p_value, rel=1e-9)
        assert row.cupedpp_variance_reduction == pytest.approx(want.variance_reduction, rel=1e-9)
    # the pre-period revenue and the country predict revenue: a much narrower interval than plain
    rev = rows[("rev", "treatment")]
    assert rev.cupedpp_variance_reduction is not None and rev.cupedpp_variance_reduction > 0.3
    assert rev.cupedpp.rel_ci_upper - rev.cupedpp.rel_ci_lower < 0.85 * (rev.rel_ci_upper - rev.rel_ci_lower)  # type: ignore[union-attr]
    # shown beside, not deciding: the verdict is the same without the declaration
    Registry(settings.registry_url).update(exp_id, metadata={"regression_adjustment": None})
    without = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(now=END)
    assert not without.has_cupedpp and without.decision.verdict == result.decision.verdict


def test_declaring_only_true_uses_the_metrics_pre_periods(settings: Settings) -> None:
    exp_id, _ = _register(settings, {"regression_adjustment": True})
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(now=END)
    assert result.cupedpp_covariates == ("rev (pre-period)", "buyer (pre-period)")


@pytest.mark.parametrize("bad", [{"attributes": ["purchase"]}, {"attributes": "exposure"}, {"ridge": -1},
                                 {"atributes": ["age"]}, "yes"])
def test_registry_refuses_a_bad_declaration(settings: Settings, bad: object) -> None:
    reg = Registry(settings.registry_url)
    with pytest.raises(BattlegroundError, match="regression_adjustment"):
        reg.create_experiment("bad", metrics=_METRICS, metadata={"regression_adjustment": bad})


def test_every_surface_shows_the_cupedpp_rows(settings: Settings) -> None:
    """Report (Markdown, HTML), dashboard table and page, CLI ``experiment status --json``."""
    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.experiment.report import render_report, table_rows
    from battleground.web._pages import templates
    from battleground.web._views import ExperimentDetail, _sizes

    exp_id, _ = _register(settings, _DECLARED)
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=exp_id)
    result = monitor.result(now=END)
    info = monitor.experiment()
    row = next(r for r in result.rows if r.metric == "rev" and r.variant == "treatment")
    assert row.cupedpp is not None and row.cupedpp_variance_reduction is not None
    shown = f"variance −{100 * row.cupedpp_variance_reduction:.1f} %"
    t = {(r["metric"], r["variant"]): r for r in table_rows(result)}
    pp = t[("rev", "treatment")]["cupedpp"]
    assert pp is not None and t[("rev", "control")]["cupedpp"] is None and shown in pp["flag"]
    html, md, _ = render_report(info, result, None, generated=END)
    assert "| rev (CUPED++) | treatment |" in md and pp["rel_text"] in md and shown in md
    assert "ridge regression on rev (pre-period), buyer (pre-period), country" in md
    assert 'class="badge">CUPED++</span>' in html and shown in html
    record = Registry(settings.registry_url).get(exp_id)
    detail = ExperimentDetail(record=record, info=info, result=result, daily=None, srm=None,
                              decision=result.decision, end=None, rows=table_rows(result),
                              sizes=_sizes(info, result.users), charts=[], needed="", audit=[])
    assert detail.table is not None
    web = next(r for r in detail.table.rows if r.adjustment == "CUPED++" and r.metric == "rev")
    assert web.p_value == pytest.approx(row.cupedpp.p_value) and shown in web.flag
    page = templates().env.get_template("web/experiment.html.j2").render(
        d=detail, exp=record, sample_chart="", plotly=False, title="cupedpp", nav="experiments",
        read_only=True, home=str(settings.home))
    assert 'class="badge">CUPED++</span>' in page and "CUPED++ rows: the same comparison" in page
    out = CliRunner().invoke(app, ["experiment", "status", str(exp_id), "--json"],
                             env={"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": ""})
    assert out.exit_code == 0, out.output
    cli = next(r for r in json.loads(out.output)["rows"] if r["metric"] == "rev (CUPED++)")
    assert cli["method"] == "cuped++" and cli["rel_lift"] == pytest.approx(row.cupedpp.rel_lift)
    assert cli["variance_reduction"] == pytest.approx(row.cupedpp_variance_reduction)
