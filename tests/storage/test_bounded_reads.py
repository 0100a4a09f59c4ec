"""Issue 19 §2: PostgreSQL reads are bounded (statement_timeout, cancelled when the asker goes away),
large ingests are analysed, the sums queries have no quadratic plan on a never-analysed table, and one
request reads one snapshot while ingestion goes on (both backends)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from battleground.settings import Settings
from battleground.storage._arrow import EVENT_SCHEMA
from battleground.storage._postgres import PostgresEventStore
from battleground.storage._snapshot import (
    ReadCancelledError,
    ReadSnapshot,
    StatementTimeoutError,
    read_snapshot,
)
from battleground.storage._sums_sql import (
    MULTIPLE_EXPOSURES,
    MetricQuery,
    daily_sums_many_sql,
    metric_sums_many_sql,
)
from battleground.storage.events import StoreUnavailableError, open_event_store


def _batch(n: int, *, start: int = 0, experiment_id: int = 1) -> pa.Table:
    rows = []
    for i in range(start, start + n):
        rows.append({
            "event_id": f"e{i}", "experiment_id": experiment_id, "variant": ("control", "treatment")[i // 2 % 2],
            "user_id": f"u{i // 2}", "event_type": "exposure" if i % 2 == 0 else "purchase",
            "ts": dt.datetime(2022, 3, 1) + dt.timedelta(minutes=i), "value": 1.0, "covariate": None,
        })
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


@pytest.mark.postgres
def test_statement_timeout_is_its_own_error(postgres_url: str) -> None:
    store = PostgresEventStore(postgres_url, statement_timeout=0.2)
    with pytest.raises(StatementTimeoutError, match="statement_timeout") as caught:
        store._fetch("SELECT pg_sleep(3)", {})
    assert not isinstance(caught.value, StoreUnavailableError)  # not a "retry, the server is down"
    assert store._fetch("SELECT 1", {}) == [(1,)]


def test_statement_timeout_setting(tmp_path: Any) -> None:
    home = str(tmp_path)
    assert Settings.from_env({"BATTLEGROUND_HOME": home}).statement_timeout is None
    s = Settings.from_env({"BATTLEGROUND_HOME": home, "BATTLEGROUND_STATEMENT_TIMEOUT": "2.5",
                           "BATTLEGROUND_DATABASE_URL": "postgresql://u@127.0.0.1/db"})
    assert s.statement_timeout == 2.5
    store = open_event_store(s)
    assert isinstance(store, PostgresEventStore) and store.statement_timeout == 2.5
    assert PostgresEventStore("postgresql://u@127.0.0.1/db").statement_timeout == 60.0
    from battleground.errors import SettingsError

    with pytest.raises(SettingsError, match="BATTLEGROUND_STATEMENT_TIMEOUT"):
        Settings.from_env({"BATTLEGROUND_HOME": home, "BATTLEGROUND_STATEMENT_TIMEOUT": "soon"})


def _running(url: str, needle: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            (f"%{needle}%",),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
def test_cancel_stops_the_statement_on_the_server(postgres_url: str) -> None:
    store = PostgresEventStore(postgres_url)
    store.count()
    outcome: list[BaseException] = []
    ready = threading.Event()
    snap = ReadSnapshot()

    def reader() -> None:
        with read_snapshot(snap):
            ready.set()
            try:
                store._fetch("SELECT pg_sleep(30) AS bg_cancel_me", {})
            except BaseException as exc:
                outcome.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    ready.wait(5)
    for _ in range(100):  # until the server runs it (bounded by count)
        if _running(postgres_url, "bg_cancel_me"):
            break
        time.sleep(0.05)
    assert _running(postgres_url, "bg_cancel_me") == 1
    snap.cancel()
    t.join(10)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ReadCancelledError)
    assert _running(postgres_url, "bg_cancel_me") == 0


@pytest.mark.postgres
def test_large_ingest_is_analysed(postgres_url: str) -> None:
    store = PostgresEventStore(postgres_url)
    store.count()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("ALTER TABLE events SET (autovacuum_enabled = false)")
    store.write_batch(_batch(2_000))
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'events'"
        ).fetchone()
        tuples = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'events'").fetchone()
    assert row == (True,)
    assert tuples is not None and tuples[0] == 2_000


def _nested_loops(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if node["Node Type"] == "Nested Loop" else []
    for child in node.get("Plans", []):
        found += _nested_loops(child)
    return found


def _scans(node: dict[str, Any]) -> set[str]:
    names = {node.get("Relation Name") or node.get("CTE Name") or ""} - {""}
    for child in node.get("Plans", []):
        names |= _scans(child)
    return names


@pytest.mark.postgres
@pytest.mark.parametrize("multiple", MULTIPLE_EXPOSURES)
def test_no_quadratic_plan_on_a_never_analysed_table(postgres_url: str, multiple: str) -> None:
    """Autovacuum off, no ANALYZE: the planner sees a 1-row estimate for 20,000 rows. Every join of the
    sums queries is then still a hash (or merge) join; the one nested loop allowed joins the one-row
    CTE of shifts. Then the query runs and counts every user (bounded by rows, not by time)."""
    from battleground.storage._events_sql import render
    from battleground.storage.events import _params

    store = PostgresEventStore(postgres_url)
    store.count()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("ALTER TABLE events SET (autovacuum_enabled = false)")
        conn.execute(
            "INSERT INTO events SELECT 'e' || g, 1, CASE WHEN mod(g, 2) = 0 THEN 'control' ELSE 'treatment' END, "
            "'u' || (g / 4), CASE WHEN mod(g, 4) < 2 THEN 'exposure' ELSE 'purchase' END, "
            "timestamp '2022-03-01' + mod(g, 20000) * interval '1 minute', 1.0, NULL FROM generate_series(0, 19999) g"
        )
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'events'").fetchone() == (-1.0,)
    defs = [MetricQuery("proportion", "purchase", None), MetricQuery("mean", "purchase", None, window_days=1.0)]
    params = _params(1, defs, None, None)
    for sql in (metric_sums_many_sql(defs, multiple), daily_sums_many_sql(defs, multiple)):
        with psycopg.connect(postgres_url) as conn:
            store._plan_settings(conn)
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + render(sql, "psycopg"), params).fetchone()[0]  # type: ignore[index]
        for loop in _nested_loops(plan[0]["Plan"]):
            sides = [_scans(child) for child in loop["Plans"]]
            assert any(side == {"k"} for side in sides), f"nested loop over {sides} ({multiple})"
    daily = store.daily_experiment_sums(1, defs, multiple_exposures=multiple)
    total = store.experiment_sums(1, defs, multiple_exposures=multiple)
    users = sum(m.users for m in total.metrics[0])
    # each user sees both variants: excluded, kept in the first, or counted once per variant
    assert users == {"exclude": 0, "first": 5_000, "keep": 10_000}[multiple]
    assert sum(m.users for m in daily[-1][1].metrics[0]) == users
    assert total.exposed_users == 5_000


@pytest.fixture(params=["duckdb", "postgresql"])
def store_settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "duckdb" else "postgres_settings")


def test_snapshot_holds_while_ingestion_goes_on(store_settings: Settings) -> None:
    store = open_event_store(store_settings)
    store.write_batch(_batch(100))
    writer_done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            open_event_store(store_settings).write_batch(_batch(50, start=100))
        except BaseException as exc:
            errors.append(exc)
        writer_done.set()

    with read_snapshot():
        first = store.count()
        t = threading.Thread(target=writer)
        t.start()
        if store.backend == "postgresql":
            assert writer_done.wait(20)  # the writer commits while the snapshot is open ...
        else:
            assert not writer_done.wait(0.5)  # ... or waits for the one connection to close (DuckDB)
        second = open_event_store(store_settings).count()  # another store object, same snapshot
        by_type = dict(store.count_by_type())
    t.join(30)
    assert not errors
    assert first == second == sum(by_type.values()) == 100
    assert store.count() == 150


def test_one_request_reads_one_snapshot(store_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events arrive right after the results query of one request: its daily series' last day still
    equals the results (without the snapshot, PostgreSQL's daily series saw 150 a side)."""
    from fastapi.testclient import TestClient

    from battleground.experiment.register import Registry
    from battleground.storage.events import EventStore
    from battleground.web import create_app

    settings = dataclasses.replace(store_settings, api_token="t")
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment(
        "snap", metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}],
        start_at="2022-03-01",
    )
    registry.start(exp.id, at="2022-03-01")
    store = open_event_store(settings)
    store.write_batch(_batch(400, experiment_id=exp.id))
    original = EventStore.experiment_sums
    injected: list[int] = []
    writers: list[threading.Thread] = []

    def interleaved(self: EventStore, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)  # the request has read from its snapshot by now
        if not injected:  # a producer commits 200 more events (100 more users) right now
            done = threading.Event()

            def write() -> None:
                open_event_store(settings).write_batch(_batch(200, start=400, experiment_id=exp.id))
                done.set()

            writers.append(threading.Thread(target=write))
            writers[0].start()
            injected.append(1 if done.wait(3 if self.backend == "postgresql" else 0.3) else 0)
        return out

    monkeypatch.setattr(EventStore, "experiment_sums", interleaved)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        daily = c.get(f"/api/experiments/{exp.id}/daily").json()  # the producer commits mid-request
        writers[0].join(timeout=60)  # a read that starts after the commit sees it (the page cache too)
        after = c.get(f"/api/experiments/{exp.id}/results").json()
    assert injected == [1 if store.backend == "postgresql" else 0]  # DuckDB: the writer waits its turn
    last = max(r["date"] for r in daily["rows"])
    in_daily = {r["variant"]: r["users"] for r in daily["rows"] if r["date"] == last and r["metric"] == "conversion"}
    assert in_daily == {"control": 100, "treatment": 100}  # what the request's results saw, not 150
    assert {r["variant"]: r["users"] for r in after["rows"]} == {"control": 150, "treatment": 150}
    assert after["end_conditions"]["users_per_variant"] == {"control": 150, "treatment": 150}
    assert store.count(exp.id) == 600


@pytest.mark.postgres
def test_request_read_is_cancelled_when_the_client_goes_away(postgres_url: str) -> None:
    """The web layer's ``snapshot_read`` cancels the running statement once the client disconnects."""
    import asyncio

    from battleground.web._reads import snapshot_read

    store = PostgresEventStore(postgres_url)
    store.count()
    polls = []

    class GoneClient:
        async def is_disconnected(self) -> bool:
            polls.append(1)
            return _running(postgres_url, "bg_client_gone") == 1  # gone as soon as the query runs

    with pytest.raises(ReadCancelledError):
        asyncio.run(snapshot_read(GoneClient(), lambda: store._fetch("SELECT pg_sleep(30) AS bg_client_gone", {})))  # type: ignore[arg-type]
    assert 1 <= len(polls) <= 150
    assert _running(postgres_url, "bg_client_gone") == 0
