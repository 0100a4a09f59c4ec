"""The list's summary cache: reused while the events and the record are unchanged, recomputed when
either changes (and for a maximum duration, every minute)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import battleground.web._experiment_views as views
from battleground.web._experiment_list import SummaryCache


@dataclasses.dataclass(frozen=True)
class Rec:
    id: int
    status: str
    end_conditions: Any = dataclasses.field(default_factory=lambda: SimpleNamespace(max_duration_days=None))
    end_at: Any = None
    updated_at: Any = None
    name: str = "x"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status}


def test_cache_follows_each_experiments_events_and_record(monkeypatch: Any) -> None:
    calls: list[int] = []

    def summary(monitor: Any, record: Any) -> Any:
        calls.append(record.id)
        return SimpleNamespace(id=record.id, error=None, status=record.status)

    monkeypatch.setattr(views, "experiment_summary", summary)
    store = SimpleNamespace(n=10)
    store.experiment_counts = lambda: {1: store.n, 2: 4}
    monitor = SimpleNamespace(backend=SimpleNamespace(inner=SimpleNamespace(store=store)))
    cache = SummaryCache()
    recs = [Rec(1, "running"), Rec(2, "draft")]
    cache.summaries(monitor, recs)
    cache.summaries(monitor, recs)
    assert calls == [1, 2]  # the second page view read no sums
    store.n = 11  # an event of experiment 1 arrived: only its line is recomputed
    cache.summaries(monitor, recs)
    assert calls == [1, 2, 1]
    out = cache.summaries(monitor, [Rec(1, "stopped"), Rec(2, "draft")])  # a record changed
    assert calls == [1, 2, 1, 1] and out[0].status == "stopped"


def test_failures_are_not_cached(monkeypatch: Any) -> None:
    calls: list[int] = []

    def summary(monitor: Any, record: Any) -> Any:
        calls.append(record.id)
        return SimpleNamespace(id=record.id, error="store locked")

    monkeypatch.setattr(views, "experiment_summary", summary)
    store = SimpleNamespace(experiment_counts=lambda: {1: 5})
    monitor = SimpleNamespace(backend=SimpleNamespace(inner=SimpleNamespace(store=store)))
    cache = SummaryCache()
    cache.summaries(monitor, [Rec(1, "running")])
    cache.summaries(monitor, [Rec(1, "running")])
    assert calls == [1, 1]
