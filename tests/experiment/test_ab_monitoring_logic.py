"""Monitor's logic (results frame, daily series, sequential peeking, end conditions, reports) on an
in-memory backend; the same Monitor runs on the real registry and event store in
test_monitoring_store.py and test_report.py."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest

from battleground.experiment.monitoring import (
    ExperimentInfo,
    ExperimentSource,
    Monitor,
    VariantInfo,
    check_experiments,
)
from battleground.experiment.report import MakeReport, render_report
from battleground.stats import MetricSpec, StatsInputError, welch_t_test
from battleground.storage.sums import MetricSums

START = dt.datetime(2022, 3, 1)


class MemoryBackend:
    """Daily per-user data in memory; sums computed the way the event store does (per user first)."""

    def __init__(self, info: ExperimentInfo, days: int, users_per_day: dict[str, int], rates: dict[str, float], seed: int = 1) -> None:
        self.info = info
        self.stopped: list[str] = []
        self.records: list[str] = []
        rng = np.random.default_rng(seed)
        self.data: list[dict[str, dict[str, np.ndarray]]] = []
        for _ in range(days):
            day = {}
            for v, n in users_per_day.items():
                conv = (rng.random(n) < rates[v]).astype(float)
                revenue = conv * rng.gamma(2.0, 10.0, n)
                day[v] = {"conversion": conv, "revenue": revenue}
            self.data.append(day)

    def resolve_id(self, key: Any) -> int:
        if key in (self.info.id, self.info.name):
            return self.info.id
        raise LookupError(f"no experiment {key!r}")

    def running_ids(self) -> list[int]:
        return [self.info.id] if self.info.status == "running" else []

    def all_ids(self) -> list[int]:
        return [self.info.id]

    def experiment(self, experiment_id: int) -> ExperimentInfo:
        return self.info

    def _sums(self, first: int, last: int) -> dict[str, list[MetricSums]]:
        out: dict[str, list[MetricSums]] = {}
        for m in self.info.metrics:
            arms = []
            for v in self.info.variants:
                x = np.concatenate([self.data[d][v.name][m.name] for d in range(first, last)])
                arms.append(MetricSums(v.name, x.size, int((x > 0).sum()), float(x.sum()), float(x @ x)))
            out[m.name] = arms
        return out

    def _window(self, start: dt.datetime | None, end: dt.datetime | None) -> tuple[int, int]:
        first = 0 if start is None else max((start - START).days, 0)
        last = len(self.data) if end is None else min((end - START).days, len(self.data))
        return first, last

    def metric_sums(self, info: ExperimentInfo, start: Any, end: Any) -> dict[str, list[MetricSums]]:
        return self._sums(*self._window(start, end))

    def daily_metric_sums(self, info: ExperimentInfo, start: Any, end: Any) -> list[tuple[dt.date, dict[str, list[MetricSums]]]]:
        first, last = self._window(start, end)
        return [((START + dt.timedelta(days=d)).date(), self._sums(first, d + 1)) for d in range(first, last)]

    def stop(self, experiment_id: int, reason: str) -> None:
        self.stopped.append(reason)
        self.info = ExperimentInfo(**{**self.info.__dict__, "status": "stopped"})

    def record(self, experiment_id: int, message: str) -> None:
        self.records.append(message)


def make_info(**kw: Any) -> ExperimentInfo:
    base: dict[str, Any] = dict(
        id=7, name="checkout-button", status="running", description="Green checkout button",
        hypothesis="A green button raises conversion", owner="ana", start_at=START, end_at=None,
        started_at=START,
        variants=(VariantInfo("control", 0.5, True), VariantInfo("green", 0.5, False)),
        metrics=(MetricSpec("conversion", "proportion", primary=True), MetricSpec("revenue", "mean")),
    )
    base.update(kw)
    return ExperimentInfo(**base)


def monitor_for(backend: MemoryBackend) -> Monitor:
    assert isinstance(backend, ExperimentSource)
    return Monitor(source=backend)


def test_seed_calls_and_result_frame() -> None:
    backend = MemoryBackend(make_info(), 10, {"control": 500, "green": 500}, {"control": 0.10, "green": 0.13})
    monitor = monitor_for(backend)
    with pytest.raises(StatsInputError, match="put_experiment_id"):
        monitor.get_abtest_result()
    assert monitor.put_experiment_id(expeirment_id="checkout-button") is monitor  # the seed's spelling
    frame = monitor.get_abtest_result(start_dt="2022-03-01", end_dt="2022-03-10")
    assert list(frame["metric"]) == ["conversion", "conversion", "revenue", "revenue"]
    assert list(frame["variant"]) == ["control", "green", "control", "green"]
    assert (frame["users"] == 5000).all()
    green = frame[(frame.metric == "conversion") & (frame.variant == "green")].iloc[0]
    x_c = np.concatenate([d["control"]["conversion"] for d in backend.data])
    x_t = np.concatenate([d["green"]["conversion"] for d in backend.data])
    assert green.value == pytest.approx(x_t.mean())
    assert green.abs_lift == pytest.approx(x_t.mean() - x_c.mean())
    assert green.rel_lift == pytest.approx((x_t.mean() - x_c.mean()) / x_c.mean())
    rev = frame[(frame.metric == "revenue") & (frame.variant == "green")].iloc[0]
    r_c = np.concatenate([d["control"]["revenue"] for d in backend.data])
    r_t = np.concatenate([d["green"]["revenue"] for d in backend.data])
    assert rev.p_value == pytest.approx(welch_t_test(r_c, r_t).p_value, rel=1e-9)
    result = monitor.result(start_dt="2022-03-01", end_dt="2022-03-10")
    assert frame.srm_status.iloc[0] == "ok" and result.srm is not None and result.srm.df == 1
    assert result.to_frame().equals(frame) and not frame.attrs  # nothing travels in attrs
    # A window: only the first 3 days.
    early = monitor.get_abtest_result(start_dt="2022-03-01", end_dt="2022-03-03")
    assert (early["users"] == 1500).all()


def test_daily_series_is_cumulative() -> None:
    backend = MemoryBackend(make_info(), 5, {"control": 300, "green": 300}, {"control": 0.1, "green": 0.1})
    monitor = monitor_for(backend).put_experiment_id(experiment_id=7)
    daily = monitor.get_daily_result()
    ctrl = daily[(daily.metric == "conversion") & (daily.variant == "control")]
    assert list(ctrl["users"]) == [300, 600, 900, 1200, 1500]
    assert ctrl["date"].dt.strftime("%Y-%m-%d").tolist()[0] == "2022-03-01"
    last = daily[daily.date == daily.date.max()].reset_index(drop=True)
    full = monitor.get_abtest_result()
    assert np.allclose(last["p_value"].fillna(-1), full["p_value"].fillna(-1))


def test_sequential_p_is_running_minimum_and_stops_on_boundary() -> None:
    info = make_info(sequential=True)
    backend = MemoryBackend(info, 14, {"control": 2000, "green": 2000}, {"control": 0.10, "green": 0.14})
    monitor = monitor_for(backend).put_experiment_id(experiment_id=7)
    daily = monitor.get_daily_result()
    green = daily[(daily.metric == "conversion") & (daily.variant == "green")]
    p = green["p_value"].to_numpy()
    assert (np.diff(p) <= 1e-15).all() and green["method"].iloc[0] == "msprt"
    assert monitor.get_abtest_result()["p_value"].iloc[1] == pytest.approx(p[-1])
    report = monitor.check_end_conditions()
    assert report.met and report.stopped and "sequential boundary crossed" in report.reasons[0]
    assert backend.stopped and "conversion" in backend.stopped[0]


def test_end_conditions_sample_size_and_duration() -> None:
    info = make_info(target_sample_size=3000, max_duration_days=30)
    backend = MemoryBackend(info, 7, {"control": 500, "green": 500}, {"control": 0.1, "green": 0.1})
    monitor = monitor_for(backend).put_experiment_id(experiment_id=7)
    r = monitor.check_end_conditions(now=START + dt.timedelta(days=7))
    assert r.met and r.stopped and r.reasons[0].startswith("target sample size reached")
    info2 = make_info(target_sample_size=10**6, max_duration_days=5)
    backend2 = MemoryBackend(info2, 3, {"control": 50, "green": 50}, {"control": 0.1, "green": 0.1})
    m2 = monitor_for(backend2).put_experiment_id(experiment_id=7)
    early = m2.check_end_conditions(now=START + dt.timedelta(days=4), stop=True)
    assert not early.met and not early.stopped and backend2.stopped == []
    late = m2.check_end_conditions(now=START + dt.timedelta(days=6))
    assert late.met and "maximum duration passed" in late.reasons[0]


def test_srm_alert_is_recorded_but_does_not_stop() -> None:
    info = make_info(target_sample_size=10**6)
    backend = MemoryBackend(info, 5, {"control": 1000, "green": 800}, {"control": 0.1, "green": 0.1})
    monitor = monitor_for(backend).put_experiment_id(experiment_id=7)
    r = monitor.check_end_conditions(now=START + dt.timedelta(days=5))
    assert r.srm_status == "alert" and not r.met and not r.stopped
    assert backend.records and "SRM alert" in backend.records[0]
    html, md, decision = render_report(info, monitor.result(), monitor.get_daily_result())
    assert decision.verdict == "data_quality"
    assert "do not trust these results" in md and "do not trust these results" in html


def test_report_render_ship_and_inconclusive() -> None:
    # 15,000 of a planned 20,000 users per variant: a fixed-horizon test decides nothing yet
    early = make_info(target_sample_size=20000)
    m0 = monitor_for(MemoryBackend(early, 10, {"control": 1500, "green": 1500}, {"control": 0.10, "green": 0.13}))
    m0.put_experiment_id(experiment_id=7)
    _, md0, d0 = render_report(early, m0.result(), m0.get_daily_result())
    assert d0.verdict == "collecting" and "## Decision: collecting data (75 % of plan)" in md0
    assert "ship" not in d0.headline
    info = make_info(target_sample_size=15000)
    win = MemoryBackend(info, 10, {"control": 1500, "green": 1500}, {"control": 0.10, "green": 0.13})
    m = monitor_for(win).put_experiment_id(experiment_id=7)
    html, md, decision = render_report(info, m.result(), m.get_daily_result())
    assert decision.verdict == "ship" and decision.headline == "ship green"
    assert "## Decision: ship green" in md and "| conversion | green |" in md
    assert html.count("<script") >= 2 and "Plotly.newPlot" in html  # inlined plotly.js + charts
    assert "cdn.plot.ly" not in html.split("</head>")[1] and "A green button raises conversion" in html
    info = make_info(target_sample_size=20000)
    flat = MemoryBackend(info, 4, {"control": 300, "green": 300}, {"control": 0.10, "green": 0.10}, seed=5)
    m2 = monitor_for(flat).put_experiment_id(experiment_id=7)
    _, md2, d2 = render_report(info, m2.result(), m2.get_daily_result())
    assert d2.verdict == "collecting" and "Sample size still needed" in md2
    assert "more users per variant to reach the planned 20,000" in md2
    assert not math.isnan(m2.get_abtest_result().p_value.iloc[1])


def test_make_report_and_check_experiments_on_a_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    info = make_info(target_sample_size=2000)
    backend = MemoryBackend(info, 5, {"control": 500, "green": 500}, {"control": 0.10, "green": 0.13})
    out = tmp_path / "r" / "report.html"
    res = MakeReport(source=backend).create_report("checkout-button", out=out)
    # the report links the one plotly.js written beside it (4.8 MB once per folder, not per report)
    assert res.html_path == str(out) and out.stat().st_size < 1_000_000
    assert (tmp_path / "r" / "plotly.min.js").stat().st_size > 1_000_000
    assert (tmp_path / "r" / "report.md").read_text().startswith("# A/B report: checkout-button")
    assert MakeReport(source=backend, out_dir=tmp_path).create_report().html_path.endswith("experiment-7.html")
    reports = check_experiments(source=backend)
    assert len(reports) == 1 and reports[0].stopped and backend.info.status == "stopped"
    assert check_experiments(source=backend) == []  # nothing running any more


def test_three_arms_one_verdict_per_variant_through_monitor_and_report() -> None:
    # a converts better, b converts worse: b's harm must not sink a (it did: "don't ship" for all)
    info = make_info(
        target_sample_size=3000,
        variants=(VariantInfo("control", 1 / 3, True), VariantInfo("a", 1 / 3, False), VariantInfo("b", 1 / 3, False)),
        metrics=(MetricSpec("conversion", "proportion", primary=True), MetricSpec("revenue", "mean", guardrail=True)),
    )
    backend = MemoryBackend(info, 10, {"control": 400, "a": 400, "b": 400}, {"control": 0.10, "a": 0.15, "b": 0.05})
    monitor = monitor_for(backend).put_experiment_id(experiment_id=7)
    result = monitor.result()
    d = result.decision
    assert d.verdict == "ship" and d.best == "a" and d.headline == "ship a"
    verdicts = {v.variant: (v.verdict, v.clause) for v in d.variants}
    assert verdicts == {"a": ("ship", "success"), "b": ("dont_ship", "deterioration")}
    _, md, decision = render_report(info, result, monitor.get_daily_result())
    assert decision == d and "## Decision: ship a" in md
    assert "| a | ship | the success-metric clause |" in md and "| b | dont ship | the deterioration clause |" in md
    # 'significant' on the page is the adjusted p it shows: flag and p (Holm) agree on every row
    from battleground.experiment.report import table_rows

    success = [r for r in table_rows(result) if r["padj_text"]]
    assert len(success) == 2
    for r in success:
        if r["flag"] != "significantly worse":
            assert (r["flag"] == "significant: improved") == (float(r["padj_text"]) < 0.05), r


def test_a_source_plugs_in_data_quality_checks_and_views_forward_them() -> None:
    from battleground.experiment._decide import multiple_exposure_check
    from battleground.web._views import ReadOnlySource

    class WithMultipleExposure(MemoryBackend):
        def data_quality(self, info: ExperimentInfo, start: Any, end: Any) -> list[Any]:
            return [multiple_exposure_check(120, 10_000)]

    info = make_info(target_sample_size=1000)
    backend = WithMultipleExposure(info, 5, {"control": 1000, "green": 1000}, {"control": 0.10, "green": 0.16})
    for source in (backend, ReadOnlySource(backend)):
        result = Monitor(source=source).put_experiment_id(experiment_id=7).result()
        assert [c.name for c in result.data_quality] == ["srm", "sequential_srm", "multiple_exposure"]
        assert result.decision.verdict == "data_quality"
        assert "multiple_exposure: 120 of 10,000 users (1.20%)" in result.decision.reasons[0]
    assert Monitor(source=MemoryBackend(info, 5, {"control": 1000, "green": 1000},
                                        {"control": 0.10, "green": 0.16})).put_experiment_id(
        experiment_id=7).result().decision.verdict == "ship"
