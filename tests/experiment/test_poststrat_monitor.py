"""Post-stratification from the experiment's definition to Monitor's result (issue 17): metadata
``post_stratify_by`` → per-stratum sums from the one SQL scan → ``post_stratified_test`` → a
"post-stratified" row beside each plain row."""

from __future__ import annotations

import pytest
from tests.storage.test_strata_sums import END, START, _per_user, strata_events

from battleground.errors import BattlegroundError
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.stats import MeanSummary, RatioSummary, Stratum, post_stratified_test

_METRICS = [{"name": "rev", "kind": "mean", "numerator": "purchase", "primary": True},
            {"name": "buyer", "kind": "proportion", "numerator": "purchase"},
            {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"}]


def _register(settings: Settings, metadata: dict | None) -> tuple[int, object]:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment("strata", metrics=_METRICS, start_at=START, end_at=END, metadata=metadata)
    reg.start(exp.id)
    events = strata_events(users=400)
    ingest(open_event_store(settings), events)
    return exp.id, events


def test_monitor_shows_post_stratified_rows(settings: Settings) -> None:
    exp_id, events = _register(settings, {"post_stratify_by": ["country"]})
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result()
    assert result.post_stratify_by == ("country",) and result.has_post_stratified
    rows = {(r.metric, r.variant): r for r in result.rows}
    assert rows[("rev", "control")].post_stratified is None  # the control has nothing to compare with
    u = _per_user(events)
    strata = {k: g for k, g in u.groupby(u["country"].fillna(-1.0))}

    def arm(g, v, col):
        a = g[g["variant"] == v][col]
        return MeanSummary(len(a), float(a.mean()), float(a.var(ddof=1)))

    want = post_stratified_test([Stratum(str(k), arm(g, "control", "rev"), arm(g, "treatment", "rev"))
                                 for k, g in strata.items()])
    ps = rows[("rev", "treatment")].post_stratified
    assert ps is not None and ps.method == "post-stratified"
    assert ps.rel_lift == pytest.approx(want.estimate, rel=1e-9)
    assert (ps.rel_ci_lower, ps.rel_ci_upper) == pytest.approx(want.ci, rel=1e-9)
    assert ps.p_value == pytest.approx(want.p_value, rel=1e-9)
    plain = rows[("rev", "treatment")]
    # revenue grows with the country code, so the strata explain much of its variance: a narrower CI
    assert ps.rel_ci_upper - ps.rel_ci_lower < 0.8 * (plain.rel_ci_upper - plain.rel_ci_lower)
    assert want.variance_reduction > 0.3

    def ratio_arm(g, v):
        a = g[g["variant"] == v]
        return RatioSummary(len(a), a["clk"].sum(), a["imp"].sum(), (a["clk"] ** 2).sum(), (a["imp"] ** 2).sum(),
                            (a["clk"] * a["imp"]).sum())

    want_ctr = post_stratified_test([Stratum(str(k), ratio_arm(g, "control"), ratio_arm(g, "treatment"))
                                     for k, g in strata.items()])
    ctr = rows[("ctr", "treatment")].post_stratified
    assert ctr is not None and ctr.rel_lift == pytest.approx(want_ctr.estimate, rel=1e-9)
    buyer = rows[("buyer", "treatment")].post_stratified
    assert buyer is not None and buyer.method == "post-stratified"
    # the decision is the plain rows' (post-stratification is shown beside, as CUPED is): the verdict
    # is the same with the declaration removed
    with_ps = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(now=END)
    Registry(settings.registry_url).update(exp_id, metadata={"post_stratify_by": None})
    without = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(now=END)
    assert with_ps.has_post_stratified and not without.has_post_stratified
    assert without.decision.verdict == with_ps.decision.verdict
    for va, vb in zip(without.decision.variants, with_ps.decision.variants, strict=True):
        assert (va.verdict, va.clause) == (vb.verdict, vb.clause)
        # two scans may add floats in another order (a parallel engine): the same numbers to rounding
        assert [(m.metric, m.outcome, m.significant) for m in va.metrics] == \
            [(m.metric, m.outcome, m.significant) for m in vb.metrics]
        assert [m.p_value for m in va.metrics] == pytest.approx([m.p_value for m in vb.metrics], rel=1e-9)


def test_no_declaration_no_post_stratified_rows(settings: Settings) -> None:
    exp_id, _ = _register(settings, None)
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result()
    assert not result.has_post_stratified and result.post_stratify_by == ()


@pytest.mark.parametrize("bad", [[], "exposure", ["country", "country"], [1], ["purchase"], {"a": 1}])
def test_registry_refuses_a_bad_declaration(settings: Settings, bad: object) -> None:
    reg = Registry(settings.registry_url)
    with pytest.raises(BattlegroundError, match="post_stratify_by"):
        reg.create_experiment("strata", metrics=_METRICS, metadata={"post_stratify_by": bad})


def test_every_surface_shows_the_post_stratified_rows(settings: Settings) -> None:
    """Report (Markdown, HTML), dashboard table and page, CLI ``experiment status --json``."""
    import json

    from typer.testing import CliRunner

    from battleground.cli import app
    from battleground.experiment.report import render_report, table_rows
    from battleground.web._pages import templates
    from battleground.web._views import ExperimentDetail, _sizes

    exp_id, _ = _register(settings, {"post_stratify_by": "country"})
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=exp_id)
    result = monitor.result(now=END)
    info = monitor.experiment()
    t = {(r["metric"], r["variant"]): r for r in table_rows(result)}
    ps = t[("rev", "treatment")]["post_stratified"]
    assert ps is not None and t[("rev", "control")]["post_stratified"] is None
    html, md, _ = render_report(info, result, None, generated=END)
    assert "| rev (post-stratified) | treatment |" in md and ps["rel_text"] in md
    assert "within strata of country" in md
    assert 'class="badge">post-stratified</span>' in html and "within strata of country" in html
    record = Registry(settings.registry_url).get(exp_id)
    detail = ExperimentDetail(record=record, info=info, result=result, daily=None, srm=None,
                              decision=result.decision, end=None, rows=table_rows(result),
                              sizes=_sizes(info, result.users), charts=[], needed="", audit=[])
    assert detail.table is not None
    row = next(r for r in detail.table.rows if r.adjustment == "post-stratified" and r.metric == "rev")
    assert row.p_value == pytest.approx(result.rows[[r.metric for r in result.rows].index("rev") + 1]
                                        .post_stratified.p_value)  # type: ignore[union-attr]
    page = templates().env.get_template("web/experiment.html.j2").render(
        d=detail, exp=record, sample_chart="", plotly=False, title="strata", nav="experiments",
        read_only=True, home=str(settings.home))
    assert 'class="badge">post-stratified</span>' in page and "within strata of country" in page
    out = CliRunner().invoke(app, ["experiment", "status", str(exp_id), "--json"],
                             env={"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": ""})
    assert out.exit_code == 0, out.output
    records = json.loads(out.output)["rows"]
    cli = next(r for r in records if r["metric"] == "rev (post-stratified)")
    assert cli["method"] == "post-stratified" and cli["rel_lift"] == pytest.approx(ps_rel(result))


def ps_rel(result: object) -> float:
    row = next(r for r in result.rows if r.metric == "rev" and r.variant == "treatment")  # type: ignore[attr-defined]
    return float(row.post_stratified.rel_lift)
