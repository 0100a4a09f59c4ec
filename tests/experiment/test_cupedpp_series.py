"""CUPED++ on the daily series and in the sequential test (issue 17): with ``regression_adjustment``
declared, each day's cumulative row of a mean or proportion metric is the CUPED++-adjusted comparison
(the day's sums from the one daily scan), and mSPRT runs on it; checked against a direct computation
from per-user values in pandas, day by day."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from tests.experiment.test_cupedpp_monitor import _DECLARED, _METRICS
from tests.storage.test_covariate_sums import covariate_events, per_user_covariates
from tests.storage.test_strata_sums import END, START

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.stats import CovariateSummary, msprt, regression_adjusted_test


def _register(settings: Settings, sequential: bool) -> tuple[int, object]:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment("series", metrics=_METRICS, start_at=START - dt.timedelta(days=30), end_at=END,
                                metadata=_DECLARED, end_conditions={"sequential": sequential})
    reg.start(exp.id)
    events = covariate_events(users=400)
    events["experiment"] = "series"
    ingest(open_event_store(settings), events)
    return exp.id, events


def _direct(events: object, day: dt.date, metric: str, relative: bool) -> object:
    """The day's CUPED++ comparison from per-user values of the events up to the end of that day."""
    cut = events[events["timestamp"] < dt.datetime.combine(day + dt.timedelta(days=1), dt.time())]  # type: ignore[index]
    u = per_user_covariates(cut)
    z = np.column_stack([u["rev_pre"], u["buyer_pre"], np.zeros(len(u)), u["country"].fillna(0.0),
                         u["country"].isna(), u["platform"].fillna(0.0), u["platform"].isna()]).astype(float)
    arms = [CovariateSummary.from_arrays(u[metric][u["variant"] == v], z[(u["variant"] == v).to_numpy()], name=v)
            for v in ("control", "treatment")]
    return regression_adjusted_test(arms, control="control", ridge=0.0, relative=relative).comparisons[0]


@pytest.mark.parametrize("sequential", [False, True])
def test_daily_series_and_msprt_use_cupedpp(settings: Settings, sequential: bool) -> None:
    exp_id, events = _register(settings, sequential)
    monitor = Monitor(client=settings).put_experiment_id(experiment_id=exp_id)
    frame = monitor.get_daily_result()
    days = sorted({d.date() for d in frame["date"]})
    assert len(days) >= 5
    final = {}
    for metric in ("rev", "buyer"):
        previous = None
        rows = frame[(frame["metric"] == metric) & (frame["variant"] == "treatment")].set_index("date")
        for day in days:
            got = rows.loc[np.datetime64(day)]
            ab, re = _direct(events, day, metric, False), _direct(events, day, metric, True)
            assert got["abs_lift"] == pytest.approx(ab.estimate, rel=1e-9)
            assert got["rel_lift"] == pytest.approx(re.estimate, rel=1e-9)
            if not sequential:  # Welch on the adjusted difference, the interval on the adjusted lift
                assert got["p_value"] == pytest.approx(ab.p_value, rel=1e-9)
                assert (got["rel_ci_lower"], got["rel_ci_upper"]) == pytest.approx(re.ci, rel=1e-9)
                continue
            previous = msprt(re.estimate, re.se, tau2=monitor.mixing_sd**2, alpha=monitor.alpha, previous=previous)
            assert got["method"] == "msprt"
            assert got["p_value"] == pytest.approx(previous.p_value, rel=1e-9)
            assert (got["rel_ci_lower"], got["rel_ci_upper"]) == pytest.approx(
                (previous.ci_lower, previous.ci_upper), rel=1e-9)
        final[metric] = previous
    # the CUPED++ series ends where the CUPED++ row beside the result stands
    result = monitor.result(now=END)
    last = {(r.metric, r.variant): r for r in result.rows}[("rev", "treatment")]
    assert last.cupedpp is not None and last.cupedpp.rel_lift == pytest.approx(
        frame[(frame["metric"] == "rev") & (frame["variant"] == "treatment")]["rel_lift"].iloc[-1], rel=1e-9)
    if sequential:  # the decision's rows are the sequential test on the adjusted estimate
        assert last.method == "msprt" and last.p_value == pytest.approx(final["rev"].p_value, rel=1e-9)
    # the ratio metric keeps its plain comparison (its own CUPED is shown beside)
    plain = Monitor(client=settings).put_experiment_id(experiment_id=exp_id)
    Registry(settings.registry_url).update(exp_id, metadata={"regression_adjustment": None})
    unadjusted = plain.get_daily_result()
    ctr = [(frame, "ctr"), (unadjusted, "ctr")]
    a, b = (f[(f["metric"] == m) & (f["variant"] == "treatment")]["p_value"].to_numpy() for f, m in ctr)
    assert a == pytest.approx(b, rel=1e-12)
    rev_plain = unadjusted[(unadjusted["metric"] == "rev") & (unadjusted["variant"] == "treatment")]
    assert not math.isclose(rev_plain["rel_lift"].iloc[-1], last.cupedpp.rel_lift, rel_tol=1e-6)
