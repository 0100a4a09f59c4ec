"""CUPED where users see results: a hand-made typed result whose rows carry an adjusted comparison is
shown beside the unadjusted one in the report (HTML, Markdown), the dashboard page and the CLI table
helper; without one, nothing CUPED appears."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from battleground.experiment._decide import decide
from battleground.experiment.monitoring import (
    ExperimentInfo,
    MonitorResult,
    MonitorRow,
    VariantInfo,
)
from battleground.experiment.register import Registry
from battleground.experiment.report import render_report, table_rows
from battleground.settings import Settings
from battleground.stats import MetricSpec, analyze_metrics
from battleground.storage.sums import MetricSums

START = dt.datetime(2022, 3, 1)
INFO = ExperimentInfo(
    id=1, name="cuped-demo", status="stopped", description=None, hypothesis=None, owner=None,
    start_at=START, end_at=None, started_at=START,
    variants=(VariantInfo("control", 0.5, True), VariantInfo("treatment", 0.5, False)),
    metrics=(MetricSpec("revenue", "mean", primary=True),),
)


def _rows(sum_t: float, sum2_c: float, sum2_t: float) -> list:  # type: ignore[type-arg]
    sums = {"revenue": [MetricSums("control", 1000, 400, 10_000.0, sum2_c),
                        MetricSums("treatment", 1000, 420, sum_t, sum2_t)]}
    return analyze_metrics(INFO.metrics, sums, control="control")


def typed(with_cuped: bool) -> MonitorResult:
    plain = _rows(10_400.0, 400_000.0, 420_000.0)  # mean 10 vs 10.4, sd ≈ 17.3
    # the adjusted comparison: the same lift with a third of the variance
    adjusted = _rows(10_400.0, 100_000.0 + 133_333.0, 108_160.0 + 140_000.0)
    rows = tuple(MonitorRow.of(p, cuped=a if with_cuped else None) for p, a in zip(plain, adjusted, strict=True))
    return MonitorResult(experiment_id=1, rows=rows, srm=None, data_quality=(),
                         decision=decide(INFO, list(rows), now=START))


def test_report_shows_adjusted_beside_unadjusted() -> None:
    result = typed(True)
    t = table_rows(result)[1]
    assert t["cuped"] is not None and t["cuped"]["p_text"] != t["p_text"]
    assert t["cuped"]["rel_text"].startswith("+4.00% [") and t["rel_text"].startswith("+4.00% [")
    html, md, _ = render_report(INFO, result, None, generated=START)
    assert "| revenue (CUPED) | treatment |" in md and md.index("| revenue | treatment |") < md.index("(CUPED)")
    assert t["cuped"]["rel_text"] in md and t["rel_text"] in md
    assert 'class="badge">CUPED</span>' in html and "adjusted for the pre-exposure covariate" in html
    _, plain_md, _ = render_report(INFO, typed(False), None, generated=START)
    assert "CUPED" not in plain_md and "nan" not in plain_md.lower()


def test_dashboard_page_shows_adjusted_beside_unadjusted(settings: Settings) -> None:
    from battleground.web._pages import templates
    from battleground.web._views import ExperimentDetail, _sizes

    record = Registry(settings.registry_url).create_experiment(
        "cuped-demo", metrics=[{"name": "revenue", "kind": "mean", "numerator": "purchase", "primary": True}])
    result = typed(True)
    detail = ExperimentDetail(
        record=record, info=INFO, result=result, daily=None, srm=None, decision=result.decision, end=None,
        rows=table_rows(result), sizes=_sizes(INFO, result.users), charts=[], needed="", audit=[],
    )
    page = templates().env.get_template("web/experiment.html.j2").render(
        d=detail, exp=record, sample_chart="", plotly=False, title="cuped-demo", nav="experiments",
        read_only=True, home=str(settings.home))
    assert detail.table is not None
    cuped = next(r for r in detail.table.rows if r.adjustment == "CUPED")
    plain = next(r for r in detail.table.rows if not r.adjustment and not r.is_control)
    assert cuped.p_value == result.rows[1].cuped.p_value and cuped.p_text != plain.p_text  # type: ignore[union-attr]
    assert 'class="badge">CUPED</span>' in page and cuped.p_text in page and plain.p_text in page
    assert "CUPED rows: the same comparison adjusted" in page and "p (Holm)" in page
    assert dataclasses.replace(detail, result=typed(False), rows=table_rows(typed(False))).result.has_cuped is False


def test_cuped_row_from_a_relative_result_and_pre_period_check() -> None:
    from types import SimpleNamespace

    from battleground.experiment._decide import pre_period_check
    from battleground.experiment.monitoring import cuped_row

    plain = _rows(10_400.0, 400_000.0, 420_000.0)[1]
    adj = cuped_row(plain, SimpleNamespace(estimate=0.04, ci_lower=0.01, ci_upper=0.07, p_value=0.004), 10.0)
    assert type(adj) is type(plain) and adj.method == "cuped" and adj.p_value == 0.004
    assert (adj.abs_lift, adj.abs_ci_lower, adj.abs_ci_upper) == pytest.approx((0.4, 0.1, 0.7))
    assert adj.value == pytest.approx(10.4) and adj.metric == "revenue" and adj.variant == "treatment"
    row = MonitorRow.of(plain, cuped=adj)
    assert row.cuped is adj and row.to_dict()["cuped"]["p_value"] == 0.004
    assert pre_period_check("revenue", "treatment", 1e-5).status == "warn"
    ok = pre_period_check("revenue", "treatment", float("nan"))
    assert ok.status == "ok" and "not estimable" in ok.detail and "nan" not in ok.detail
