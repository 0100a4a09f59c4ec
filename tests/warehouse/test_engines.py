"""Five engines, one compiled definition: the same sums as the DuckDB store to 1e-9 relative."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest
from warehouse_load import chdb_engine, duckdb_engine, mariadb_engine, spark_engine

from battleground.storage._duckdb import DuckDBEventStore
from battleground.storage._sums_sql import MetricQuery
from battleground.storage._warehouse import WarehouseEventStore
from battleground.storage.sums import ExperimentSums
from conftest import EXPERIMENT, START

METRICS = [
    MetricQuery("proportion", "purchase", None, 7, 14),
    MetricQuery("mean", "purchase", None, None, 14),
    MetricQuery("mean", "visit", None, 3.5, 0),
    MetricQuery("ratio", "click", "visit", 5, 7),
    MetricQuery("proportion", "click", None, 0.25, None),
    MetricQuery("mean", "purchase", None, None, 14, cap_quantile=0.9),  # winsorised (issue 17)
    MetricQuery("ratio", "click", "visit", 5, 7, cap_value=2.0),
]
WINDOW = (START + dt.timedelta(days=1), START + dt.timedelta(days=18))
POLICIES = ("exclude", "first", "keep")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, events_table: Any) -> dict[Any, ExperimentSums]:
    store = DuckDBEventStore(f"duckdb:///{tmp_path_factory.mktemp('ref')}/events.duckdb", "sqlite://")
    store.write_batch(events_table)
    return {(policy, bounds): store.experiment_sums(EXPERIMENT, METRICS, *bounds, ("control", "treatment"),
                                                    multiple_exposures=policy)
            for policy in POLICIES for bounds in ((None, None), WINDOW)}


def assert_same(got: ExperimentSums, want: ExperimentSums) -> None:
    assert got.exposed_users == want.exposed_users
    assert got.multiple_exposure_users == want.multiple_exposure_users
    assert len(got.metrics) == len(want.metrics)
    for g_arms, w_arms in zip(got.metrics, want.metrics, strict=True):
        assert [a.variant for a in g_arms] == [a.variant for a in w_arms]
        for g, w in zip(g_arms, w_arms, strict=True):
            assert (g.users, g.events) == (w.users, w.events)
            for name in ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_c", "sum_c2", "sum_xc",
                         "shift", "shift_y", "shift_c", "sum_e", "sum_e2", "sum_xe", "sum_ye", "sum_ce",
                         "sum_yc"):
                a, b = getattr(g, name), getattr(w, name)
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, abs(w.shift) * w.users)), (name, a, b)
            assert (g.cap_x is None) == (w.cap_x is None) and (g.cap_x is None or math.isclose(g.cap_x, w.cap_x))


def check(store: WarehouseEventStore, reference: dict[Any, ExperimentSums], keys: Any = None) -> None:
    for (policy, bounds), want in reference.items():
        if keys is not None and (policy, bounds) not in keys:
            continue
        got = store.experiment_sums(EXPERIMENT, METRICS, *bounds, ("control", "treatment"), multiple_exposures=policy)
        assert_same(got, want)


def test_reference_has_every_case(reference: dict[Any, ExperimentSums]) -> None:
    full = reference[("exclude", (None, None))]
    assert full.multiple_exposure_users > 0 and full.exposed_users == 400
    assert all(a.users > 50 for a in full.metrics[0])
    assert any(a.sum_c2 > 0 for a in full.metrics[0])


def test_duckdb_engine(events_table: Any, reference: dict[Any, ExperimentSums]) -> None:
    check(WarehouseEventStore(duckdb_engine(events_table)), reference)


def test_chdb(events_table: Any, reference: dict[Any, ExperimentSums]) -> None:
    check(WarehouseEventStore(chdb_engine(events_table)), reference)


def test_spark(spark: Any, events_table: Any, reference: dict[Any, ExperimentSums]) -> None:
    # Each policy once and each window at least once: a Spark query costs seconds on 2 cores, and the
    # compiled SQL differs only in the policy's clause and the window's bounds.
    cases = [("exclude", (None, None)), ("first", WINDOW), ("keep", WINDOW)]
    check(WarehouseEventStore(spark_engine(spark, events_table)), reference, cases)


def test_spark_instants_in_a_session_outside_utc(spark: Any, events_table: Any, reference: dict[Any, ExperimentSums],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A TIMESTAMP (instant) column read by a session and a Python process in New York: the windows
    and the rows that come back are still UTC, as battleground reads every instant."""
    import time

    before = spark.conf.get("spark.sql.session.timeZone")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        engine = spark_engine(spark, events_table, "events_ltz", instants=True)
        first = min(events_table.column("ts").to_pylist())
        assert engine.fetch("SELECT MIN(ts) FROM events_ltz") == [(first,)]
        check(WarehouseEventStore(engine, "events_ltz"), reference, [("first", WINDOW)])
        assert spark.conf.get("spark.sql.session.timeZone") == "America/New_York"  # the user's setting stays
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)
        monkeypatch.delenv("TZ")
        time.tzset()


def test_mariadb(mariadb_url: str, events_table: Any, reference: dict[Any, ExperimentSums]) -> None:
    check(WarehouseEventStore(mariadb_engine(mariadb_url, events_table)), reference)


@pytest.mark.postgres
def test_postgres(postgres_url: str, events_table: Any, reference: dict[Any, ExperimentSums]) -> None:
    from battleground.storage._postgres import PostgresEventStore
    from battleground.storage._warehouse import SqlAlchemyEngine

    PostgresEventStore(postgres_url, "sqlite://").write_batch(events_table)
    check(WarehouseEventStore(SqlAlchemyEngine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))),
          reference)


def _covariates_close(got: ExperimentSums, want: ExperimentSums) -> None:
    assert got.covariates is not None and want.covariates is not None
    for g, w in zip(got.covariates, want.covariates, strict=True):
        assert (g.variant, g.users, g.covariates) == (w.variant, w.users, w.covariates)
        for name in ("sum_y", "sum_y2", "sum_z", "sum_zz", "sum_yz", "shift_y", "shift_z"):
            a, b = np.ravel(getattr(g, name)), np.ravel(getattr(w, name))
            assert np.allclose(a, b, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(b).max())) * g.users), name


@pytest.mark.parametrize("engine", ["duckdb", "chdb", "mariadb"])
def test_cupedpp_sums_on_engines(engine: str, events_table: Any, reference: dict[Any, ExperimentSums],
                                 tmp_path: Any, request: pytest.FixtureRequest) -> None:
    """The CUPED++ cross sums ride in the same compiled scan on every engine (issue 17)."""
    store = DuckDBEventStore(f"duckdb:///{tmp_path}/events.duckdb", "sqlite://")
    store.write_batch(events_table)
    attrs = ("purchase", "nobody")  # a valued event type as the attribute, and one no user has
    want = store.experiment_sums(EXPERIMENT, METRICS, *WINDOW, ("control", "treatment"), attributes=attrs)
    make = {"duckdb": lambda: duckdb_engine(events_table), "chdb": lambda: chdb_engine(events_table),
            "mariadb": lambda: mariadb_engine(request.getfixturevalue("mariadb_url"), events_table)}[engine]
    got = WarehouseEventStore(make()).experiment_sums(EXPERIMENT, METRICS, *WINDOW, ("control", "treatment"),
                                                      attributes=attrs)
    assert_same(got, reference[("exclude", WINDOW)])
    _covariates_close(got, want)
    assert want.covariates is not None and want.covariates[0].sum_zz[0][0] > 0


@pytest.mark.parametrize("dialect", ["bigquery", "snowflake", "trino", "databricks", "spark", "clickhouse",
                                     "mysql", "postgres", "redshift", "tsql", "presto", "athena", "oracle"])
def test_cupedpp_sums_compile_for_every_dialect(dialect: str) -> None:
    import sqlglot

    from battleground.storage._compile import compile_sql, dialect_name
    from battleground.storage._sums_sql import daily_sums_many_sql
    from battleground.storage._warehouse import sums_sql
    from battleground.storage.events import _params

    text = sums_sql(EXPERIMENT, METRICS, dialect, *WINDOW, attributes=["age"])
    tree = sqlglot.parse_one(text, read=dialect)
    assert "pp_yz6_8" in {s.alias for s in tree.find_all(sqlglot.exp.Alias)} and "'age'" in text
    # the daily series carries them too (issue 17: CUPED++ on the daily series)
    daily = compile_sql(daily_sums_many_sql(METRICS, covariates=1), dialect_name(dialect),
                        {**_params(EXPERIMENT, METRICS, *WINDOW), "at0": "age"})
    assert "pp_yz6_8" in {s.alias for s in sqlglot.parse_one(daily, read=dialect).find_all(sqlglot.exp.Alias)}
