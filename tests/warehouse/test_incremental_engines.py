"""The pruned incremental refresh on PostgreSQL, chdb and Spark (issue 18 §2): exact against a full
recompute, and nothing written into the engine.

The per-unit states live in battleground's cache (Parquet beside the registry); the engine runs only
read-only queries: once the first states, then per step the events of the recent days (and the
look-back of units exposed in them), which an in-memory DuckDB merges with the cached states.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from test_engines import assert_same
from test_incremental import EV_METRICS, VARIANTS
from warehouse_load import chdb_engine, spark_engine

from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._incremental import refresh_sums
from battleground.storage._warehouse import SqlAlchemyEngine, WarehouseEventStore
from conftest import START as EV_START
from conftest import make_events


class Recording:
    """An engine that keeps the SQL it was given and the number of rows each query returned."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.dialect = engine, engine.dialect
        self.queries: list[tuple[str, int]] = []

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        rows = self.engine.fetch(sql)
        self.queries.append((sql, len(rows)))
        return rows


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, int]:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".bg")})
    exp = Registry(settings.registry_url).create_experiment("inc", variants={"control": 0.5, "treatment": 0.5})
    return settings.registry_url, exp.id


def check_refreshes(store: Any, url: str, exp_id: int, cache: Path, policies: tuple[str, ...],
                    days_ahead: tuple[int, ...], start: dt.datetime | None = None, windows: tuple[int, ...] = (2, 1),
                    ) -> Any:
    """Daily refreshes (settling a day each, recomputing the last ``windows`` days) equal full recomputes."""
    for policy in policies:
        for days in windows:
            for d in days_ahead:
                end = EV_START + dt.timedelta(days=d, hours=7)
                got = refresh_sums(store, url, exp_id, EV_METRICS, start, end, VARIANTS, multiple_exposures=policy,
                                   days=days, cache_dir=cache)
                want = store.experiment_sums(exp_id, EV_METRICS, start, end, VARIANTS, multiple_exposures=policy)
                assert_same(got, want)
    assert list(cache.glob(f"{exp_id}-*.parquet")), "the unit states are cached in battleground's store"
    return want


def assert_read_only(engine: Recording) -> None:
    for sql, _ in engine.queries:
        head = sql.lstrip().split(None, 1)[0].upper()
        assert head in ("SELECT", "WITH", "(SELECT"), sql[:200]
        for word in ("INSERT ", "CREATE ", "UPDATE ", "DELETE ", "DROP "):
            assert word not in sql.upper(), (word, sql[:200])


def test_chdb_refresh_is_exact_and_reads_the_recent_days(registry: tuple[str, int], tmp_path: Path) -> None:
    url, exp_id = registry
    table = make_events(seed=3, users=600, experiment=exp_id)
    engine = Recording(chdb_engine(table))
    store = WarehouseEventStore(engine, "events", name="chdb")
    want = check_refreshes(store, url, exp_id, tmp_path / "cache", ("exclude", "first", "keep"), (6, 7, 12, 25),
                           start=EV_START + dt.timedelta(hours=5))
    assert want.multiple_exposure_users > 10 and want.metrics[2][0].sum_e != 0
    assert_read_only(engine)
    # a daily check pulls the events of its last days, not the experiment's: one refresh, counted
    engine.queries.clear()
    end = EV_START + dt.timedelta(days=13, hours=7)
    refresh_sums(store, url, exp_id, EV_METRICS, None, end, VARIANTS, cache_dir=tmp_path / "c2")
    assert len(engine.queries) == 2  # the first states (one row per unit), then the step's recent events
    engine.queries.clear()
    got = refresh_sums(store, url, exp_id, EV_METRICS, None, end + dt.timedelta(days=1), VARIANTS,
                       cache_dir=tmp_path / "c2")
    assert len(engine.queries) == 2  # settle one day, then the last two days: one pull each
    assert sum(n for _, n in engine.queries) < table.num_rows / 4
    assert_same(got, store.experiment_sums(exp_id, EV_METRICS, None, end + dt.timedelta(days=1), VARIANTS))


@pytest.mark.postgres
def test_postgres_refresh_is_exact(registry: tuple[str, int], postgres_url: str, tmp_path: Path) -> None:
    """A PostgreSQL source (read through SQLAlchemy) and battleground's own PostgreSQL store."""
    from battleground.storage._postgres import PostgresEventStore

    url, exp_id = registry
    own = PostgresEventStore(postgres_url, "sqlite://")
    own.write_batch(make_events(seed=6, users=500, experiment=exp_id))
    engine = Recording(SqlAlchemyEngine(postgres_url.replace("postgresql://", "postgresql+psycopg://")))
    source = WarehouseEventStore(engine, "events", name="pg")
    check_refreshes(source, url, exp_id, tmp_path / "src", ("exclude", "first", "keep"), (6, 7, 8, 12, 25))
    assert_read_only(engine)
    check_refreshes(own, url, exp_id, tmp_path / "own", ("exclude", "keep"), (7, 8, 12))


def test_spark_refresh_is_exact(spark: Any, registry: tuple[str, int], tmp_path: Path) -> None:
    # Spark runs a query in seconds on 2 cores: two policies, a first read, a daily check settling a day
    # and a check settling three (the other cases are the same SQL, run on chdb and PostgreSQL above)
    url, exp_id = registry
    engine = Recording(spark_engine(spark, make_events(seed=8, users=400, experiment=exp_id), "inc_events"))
    store = WarehouseEventStore(engine, "inc_events", name="spark")
    want = check_refreshes(store, url, exp_id, tmp_path / "cache", ("exclude", "keep"), (7, 8, 11), windows=(2,))
    assert want.multiple_exposure_users > 5
    assert_read_only(engine)
