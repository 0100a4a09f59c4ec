"""``Registry.start/stop(at=...)``: a simulation records its own calendar (the demo's fortnight)."""

from __future__ import annotations

import datetime as dt

import pytest

from battleground.errors import ExperimentError
from battleground.experiment.register import Registry
from battleground.settings import Settings


def test_start_and_stop_record_the_given_times(settings: Settings) -> None:
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment("simulated", start_at="2022-03-05")
    started = registry.start(exp.id, at=dt.datetime(2022, 3, 5))
    assert started.started_at == dt.datetime(2022, 3, 5)
    with pytest.raises(ExperimentError, match=r"at must be an ISO date.*'yesterday'"):
        registry.stop(exp.id, "done", at="yesterday")
    assert registry.get(exp.id).status == "running"  # bad input leaves the experiment untouched
    stopped = registry.stop(exp.id, "done", at=dt.datetime(2022, 3, 17, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    assert stopped.stopped_at == dt.datetime(2022, 3, 17) and stopped.status == "stopped"
    later = registry.create_experiment("now")
    assert registry.start(later.id).started_at > dt.datetime(2026, 1, 1)  # default: the wall clock
