"""``EventStore.state()``: a token that changes when the stored events do and only then, so readers
(the dashboard's sums cache) can key on it. DuckDB's is a stat of its files (no connection); the
other stores count their events."""

from __future__ import annotations

import datetime as dt

import pytest

from battleground.settings import Settings

T0 = dt.datetime(2024, 1, 1)


def _event(i: int) -> dict[str, object]:
    return {"event_id": f"e{i}", "experiment": "state-test", "variant": "control", "user_id": f"u{i}",
            "event_type": "exposure", "timestamp": T0 + dt.timedelta(minutes=i)}


@pytest.fixture(params=["duckdb", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "duckdb" else "postgres_settings")


def test_state_moves_with_the_events_and_not_with_reads(backend: Settings) -> None:
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry

    Registry(backend.registry_url).create_experiment("state-test")
    store = open_event_store(backend)
    empty = store.state()
    ingest(store, [_event(i) for i in range(5)])
    five = store.state()
    assert five != empty
    store.count(), store.to_arrow(), store.count_by_type()  # reads
    assert store.state() == five
    ingest(store, [_event(5)])
    assert store.state() not in (five, empty)
    assert open_event_store(backend).state() == store.state()  # another handle on the same store agrees


def test_experiment_counts_are_read_once_per_state(backend: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry

    registry = Registry(backend.registry_url)
    first = registry.create_experiment("state-test").id
    other = registry.create_experiment("other-test").id
    store = open_event_store(backend)
    ingest(store, [_event(i) for i in range(3)])
    assert store.experiment_counts() == {first: 3}
    queries: list[str] = []
    real = type(store)._query

    def spy(self: object, sql: str, params: dict[str, object], **kw: object) -> object:
        queries.append(sql)
        return real(self, sql, params, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(type(store), "_query", spy)
    assert open_event_store(backend).experiment_counts() == {first: 3}
    assert not any("GROUP BY experiment_id" in q for q in queries)  # unchanged state: no query
    ingest(store, [{**_event(9), "experiment": "other-test"}])
    assert store.experiment_counts() == {first: 3, other: 1}
