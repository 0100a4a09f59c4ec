"""Storage details: migrations match the models, the shared SQL, duplicate detection, store plumbing."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from battleground.errors import StorageError
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._db import HEAD_REVISION, registry_engine
from battleground.storage._events_sql import render, schema
from battleground.storage._filelock import StoreLockedError, exclusive_lock
from battleground.storage._models import Base
from battleground.storage.events import has_duplicate_ids, registry_url_for


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "sqlite" else "postgres_settings")


def test_migrations_match_the_models(backend: Settings) -> None:
    engine = registry_engine(backend.registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        tables = set(inspect(conn).get_table_names())
    assert {"experiments", "variants", "metrics", "end_conditions", "audit_log", "alembic_version"} <= tables


def test_postgres_events_table_compares_bytes(postgres_settings: Settings) -> None:
    store = open_event_store(postgres_settings)
    rows = store._fetch(
        "SELECT column_name, collation_name FROM information_schema.columns "
        "WHERE table_name = 'events' AND data_type = 'character varying' ORDER BY column_name", {})
    assert rows == [("event_id", "C"), ("event_type", "C"), ("user_id", "C"), ("variant", "C")]
    assert "PRIMARY KEY (experiment_id, event_id)" in schema("postgresql") and "PRIMARY KEY" not in schema("duckdb")
    with pytest.raises(ValueError, match="backend must be"):
        schema("sqlite")


def test_render_placeholders() -> None:
    sql = "SELECT ':not' FROM t WHERE a = :a AND b::text = :b AND c LIKE '5%'"
    assert render(sql, "duckdb") == "SELECT ':not' FROM t WHERE a = $a AND b::text = $b AND c LIKE '5%'"
    assert render(sql, "psycopg") == "SELECT ':not' FROM t WHERE a = %(a)s AND b::text = %(b)s AND c LIKE '5%%'"
    with pytest.raises(ValueError, match="style must be"):
        render(sql, "sqlite")


def _ids(values: list[str]) -> pa.Table:
    return pa.table({"event_id": pa.array(values, pa.string())})


def test_duplicate_detection() -> None:
    rng = np.random.default_rng(0)
    many = [f"e{i}" for i in rng.permutation(100_000)]
    assert not has_duplicate_ids(_ids(many))
    assert has_duplicate_ids(_ids([*many, many[12_345]]))
    assert not has_duplicate_ids(_ids([]))
    assert not has_duplicate_ids(_ids(["only"]))
    assert has_duplicate_ids(_ids(["", ""]))
    long = ["x" * 100 + str(i) for i in range(50)]  # longer than the vectorised hash takes
    assert not has_duplicate_ids(_ids(long))
    assert has_duplicate_ids(_ids([*long, long[7]]))
    chunked = pa.table({"event_id": pa.chunked_array([["a", "b"], ["c", "a"]])})
    assert has_duplicate_ids(chunked)
    sliced = _ids(["a", "b", "c", "a"]).slice(1, 3)
    assert not has_duplicate_ids(sliced)


def test_store_urls(tmp_path: object) -> None:
    assert registry_url_for("duckdb:////data/bg/events.duckdb") == "sqlite:////data/bg/registry.db"
    assert registry_url_for("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ValueError, match="must start with"):
        registry_url_for("mysql://h/db")
    store = open_event_store(str(tmp_path))
    assert store.backend == "duckdb" and store.url == f"duckdb:///{tmp_path}/events.duckdb"
    assert open_event_store("duckdb:///x/e.duckdb").registry_url.endswith("/x/registry.db")
    assert repr(store).startswith("DuckDBEventStore('duckdb:///")


def test_nested_and_threaded_use_of_the_embedded_store(settings: Settings) -> None:
    registry = Registry(settings.registry_url)
    registry.create_experiment("t", start_at="2022-03-01")
    one, two = open_event_store(settings), open_event_store(settings)
    with one.connection() as con:  # type: ignore[attr-defined]
        # Another store object on the same file, in the same thread, shares the open connection.
        assert two.count() == 0
        assert con.execute("SELECT 1").fetchall() == [(1,)]
        # Another thread waits for the lock (and gives up after its timeout).
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with exclusive_lock(two.path, timeout=0.2):  # type: ignore[attr-defined]
                    pass
            except StoreLockedError as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert errors and "another thread of this process" in str(errors[0])
    batch = {"event_id": ["a", "b"], "experiment": ["t", "t"], "variant": ["control", "treatment"],
             "user_id": [1, 2], "event_type": ["exposure", "exposure"],
             "timestamp": [dt.datetime(2022, 3, 2), dt.datetime(2022, 3, 2)]}
    assert ingest(one, batch).inserted == 2
    assert two.count_by_type() == [("exposure", 2)]
    table = one.to_arrow()
    assert table.column_names == ["event_id", "experiment_id", "variant", "user_id", "event_type", "ts",
                                  "value", "covariate"]
    assert pc.sum(table.column("experiment_id")).as_py() == 2


# --------------------------------------------------------------------------------------------------
# Migrating stores written before events were keyed per experiment
# --------------------------------------------------------------------------------------------------

_OLD_EVENTS = """
CREATE TABLE events (
    event_id {text} NOT NULL{pk}, experiment_id INTEGER NOT NULL, variant {text} NOT NULL,
    user_id {text} NOT NULL, event_type {text} NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE PRECISION,
    covariate DOUBLE PRECISION
)"""
_OLD_ROW = "INSERT INTO events VALUES ('1', 1, 'control', 'u1', 'exposure', TIMESTAMP '2022-03-02 10:00:00', NULL, NULL)"


def _event(experiment_id: int, event_id: str = "1", user: str = "u1") -> pa.Table:
    from battleground.storage._arrow import EVENT_SCHEMA

    return pa.Table.from_pylist([{
        "event_id": event_id, "experiment_id": experiment_id, "variant": "control", "user_id": user,
        "event_type": "exposure", "ts": dt.datetime(2022, 3, 2, 10), "value": None, "covariate": None,
    }], schema=EVENT_SCHEMA)


def _pg_key(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
            "AND a.attnum = ANY (c.conkey) WHERE c.conrelid = 'events'::regclass AND c.contype = 'p' "
            "ORDER BY array_position(c.conkey, a.attnum)").fetchall()
    return [r[0] for r in rows]


def test_duckdb_store_of_the_old_layout_is_migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import duckdb

    from battleground.storage._duckdb import DuckDBEventStore
    from battleground.storage._events_sql import DUCKDB_VERSION

    path = tmp_path / "events.duckdb"
    with duckdb.connect(str(path)) as con:  # a file as battleground wrote it before the migration step
        con.execute(_OLD_EVENTS.format(text="VARCHAR", pk=""))
        con.execute(_OLD_ROW)
    store = DuckDBEventStore(f"duckdb:///{path}")
    assert store.count(1) == 1
    with store.connection() as con:
        assert con.execute("SELECT version FROM battleground_schema").fetchall() == [(DUCKDB_VERSION,)]
    assert store.write_batch(_event(2)).inserted == 1  # the same id in another experiment
    assert store.write_batch(_event(1)).duplicates == 1
    assert store.write_batch(_event(1, user="u2")).conflicts == 1
    assert (store.count(1), store.count(2)) == (1, 1)
    with store.connection() as con:  # a file of a newer layout is refused, not misread
        con.execute("UPDATE battleground_schema SET version = 99")
    with pytest.raises(StorageError, match="layout version 99"):
        store.count()


def test_postgres_store_of_the_old_layout_is_migrated(postgres_url: str) -> None:
    import psycopg

    from battleground.storage._postgres import PostgresEventStore

    with psycopg.connect(postgres_url) as conn:
        conn.execute(_OLD_EVENTS.format(text='VARCHAR COLLATE "C"', pk=" PRIMARY KEY"))
        conn.execute(_OLD_ROW)
    assert _pg_key(postgres_url) == ["event_id"]
    store = PostgresEventStore(postgres_url)
    assert store.count(1) == 1
    assert _pg_key(postgres_url) == ["experiment_id", "event_id"]
    assert store.write_batch(_event(2)).inserted == 1
    assert store.write_batch(_event(1)).duplicates == 1
    assert store.write_batch(_event(1, user="u2")).conflicts == 1
    assert (store.count(1), store.count(2)) == (1, 1)


def test_registry_migration_rekeys_a_shared_events_table(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        conn.execute(_OLD_EVENTS.format(text='VARCHAR COLLATE "C"', pk=" PRIMARY KEY"))
        conn.execute(_OLD_ROW)
    registry_engine(postgres_url)  # runs the Alembic revisions up to the head
    assert _pg_key(postgres_url) == ["experiment_id", "event_id"]
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
