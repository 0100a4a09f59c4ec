"""Incremental refresh: cached per-day sums plus the last N days equal a full recompute (issue 18 §2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from test_engines import assert_same
from tests.experiment.ab_scenario import START, build

from battleground.experiment.events import open_event_store
from battleground.settings import Settings
from battleground.storage._incremental import definition_hash, refresh_sums
from battleground.storage._sums_sql import MetricQuery

METRICS = [
    MetricQuery("proportion", "purchase", None, 3, 14),
    MetricQuery("mean", "purchase", None, None, 14),
    MetricQuery("ratio", "click", "impression", 2, 7),
    MetricQuery("mean", "impression", None, 1.5, 0),
]


@pytest.fixture
def scenario(tmp_path: Path) -> Any:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    sc = build(settings, users=800, days=7, seed=9)
    return settings, sc.id, open_event_store(settings)


class Counting:
    """The store, counting the metric-sums queries that read every user (``active`` not set)."""

    def __init__(self, store: Any) -> None:
        self.store, self.full_scans, self.steps = store, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def sums_records(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("active") is None:
            self.full_scans += 1
        else:
            self.steps += 1
        return self.store.sums_records(*args, **kwargs)


@pytest.mark.parametrize("policy", ["exclude", "first", "keep"])
def test_refresh_equals_full_recompute(scenario: Any, policy: str) -> None:
    settings, exp_id, store = scenario
    counting = Counting(store)
    start = START + dt.timedelta(hours=6)
    variants = ("control", "treatment")
    for k, end in enumerate(START + dt.timedelta(days=d, hours=13) for d in (3, 4, 5, 7, 9)):
        got = refresh_sums(counting, settings.registry_url, exp_id, METRICS, start, end, variants,  # type: ignore[arg-type]
                           multiple_exposures=policy)
        want = store.experiment_sums(exp_id, METRICS, start, end, variants, multiple_exposures=policy)
        assert_same(got, want)
        assert want.metrics[0][0].users > 100
        assert counting.full_scans == 1, k  # only the first refresh reads every user
    assert counting.steps == 2 * (1 + 2 * 4)
    # a full recompute on demand, and a changed definition never meets the old sums
    again = refresh_sums(counting, settings.registry_url, exp_id, METRICS, start, end, variants,  # type: ignore[arg-type]
                         multiple_exposures=policy, full=True)
    assert_same(again, want)
    assert counting.full_scans == 2
    changed = [MetricQuery("proportion", "purchase", None, 1, 14), *METRICS[1:]]
    assert definition_hash(changed, policy, start) != definition_hash(METRICS, policy, start)
    got = refresh_sums(counting, settings.registry_url, exp_id, changed, start, end, variants,  # type: ignore[arg-type]
                       multiple_exposures=policy)
    assert_same(got, store.experiment_sums(exp_id, changed, start, end, variants, multiple_exposures=policy))
    assert counting.full_scans == 3


def test_days_must_be_whole(scenario: Any) -> None:
    settings, exp_id, store = scenario
    with pytest.raises(ValueError, match="days must be"):
        refresh_sums(store, settings.registry_url, exp_id, METRICS, days=0)
