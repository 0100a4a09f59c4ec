"""The same Monitor result on every engine, and `battleground events sql` in every dialect."""

from __future__ import annotations

import math
from typing import Any

import pytest
import sqlglot
from tests.experiment.ab_scenario import build
from typer.testing import CliRunner
from warehouse_load import chdb_engine, duckdb_engine, mariadb_engine, spark_engine

from battleground.cli import app
from battleground.experiment._source import _Backend
from battleground.experiment.events import open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.settings import Settings
from battleground.storage._warehouse import SqlAlchemyEngine, WarehouseEventStore


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, int, Any]:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path_factory.mktemp("wh") / ".battleground")})
    sc = build(settings, users=600, seed=3)
    events = open_event_store(settings).to_arrow()
    return settings, sc.id, events


def frame_of(settings: Settings, experiment_id: int, store: Any = None) -> Any:
    source = _Backend(settings, store=store)
    monitor = Monitor(client=settings, source=source).put_experiment_id(experiment_id=experiment_id)
    return monitor.result()


def assert_same_result(got: Any, want: Any) -> None:
    def verdicts(d: Any) -> Any:
        return d.verdict, [(v.variant, v.verdict, v.clause, [(m.metric, m.outcome) for m in v.metrics])
                           for v in d.variants]

    assert verdicts(got.decision) == verdicts(want.decision)
    assert [c.status for c in got.data_quality] == [c.status for c in want.data_quality]
    assert len(got.rows) == len(want.rows)
    for g, w in zip(got.to_frame().to_dict("records"), want.to_frame().to_dict("records"), strict=True):
        for k, v in w.items():
            if isinstance(v, float) and not math.isnan(v):
                assert math.isclose(g[k], v, rel_tol=1e-9, abs_tol=1e-12), (k, g[k], v)
            elif not isinstance(v, float):
                assert g[k] == v, k


def test_monitor_duckdb_chdb_mariadb(scenario: Any, mariadb_url: str) -> None:
    settings, exp_id, events = scenario
    want = frame_of(settings, exp_id)
    assert any(r.p_value < 0.05 for r in want.rows if not r.is_control)
    for engine in (duckdb_engine(events), chdb_engine(events), mariadb_engine(mariadb_url, events)):
        assert_same_result(frame_of(settings, exp_id, WarehouseEventStore(engine)), want)


@pytest.mark.postgres
def test_monitor_postgres(scenario: Any, postgres_url: str) -> None:
    from battleground.storage._postgres import PostgresEventStore

    settings, exp_id, events = scenario
    PostgresEventStore(postgres_url, "sqlite://").write_batch(events)
    engine = SqlAlchemyEngine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    assert_same_result(frame_of(settings, exp_id, WarehouseEventStore(engine)), frame_of(settings, exp_id))


def test_monitor_spark(scenario: Any, spark: Any) -> None:
    settings, exp_id, events = scenario
    store = WarehouseEventStore(spark_engine(spark, events, "bg_events"), "bg_events")
    assert_same_result(frame_of(settings, exp_id, store), frame_of(settings, exp_id))


@pytest.mark.parametrize("dialect", ["bigquery", "snowflake", "trino", "databricks", "spark", "clickhouse",
                                     "mysql", "postgres", "duckdb", "redshift", "tsql", "presto"])
def test_events_sql_parses_back(scenario: Any, dialect: str) -> None:
    settings, exp_id, _ = scenario
    res = CliRunner().invoke(app, ["events", "sql", str(exp_id), "--dialect", dialect, "--table", "lake.events"],
                             env={"BATTLEGROUND_HOME": str(settings.home)})
    assert res.exit_code == 0, res.output
    tree = sqlglot.parse_one(res.stdout, read=dialect)
    assert {t.name for t in tree.find_all(sqlglot.exp.Table)} >= {"events"}
    assert "FILTER" not in res.stdout.upper() or dialect in ("trino", "databricks", "spark", "postgres", "duckdb",
                                                            "presto")
    assert ":exposure" not in res.stdout and "'exposure'" in res.stdout


def test_events_sql_bad_dialect(scenario: Any) -> None:
    settings, exp_id, _ = scenario
    res = CliRunner().invoke(app, ["events", "sql", str(exp_id), "--dialect", "cobol"],
                             env={"BATTLEGROUND_HOME": str(settings.home)})
    assert res.exit_code != 0 and "dialect must be one of" in res.output
