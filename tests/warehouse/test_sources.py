"""Events read in place: Parquet, Delta and a Spark table mapped to battleground's schema (issue 18 §2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_monitor_engines import assert_same_result
from tests.experiment.ab_scenario import build

from battleground.experiment._source import _Backend
from battleground.experiment.events import open_event_store
from battleground.experiment.monitoring import Monitor
from battleground.experiment.register import Registry
from battleground.experiment.report import write_experiment_report
from battleground.settings import Settings
from battleground.storage._sources import SourceError, SourceSpec, save_source
from battleground.storage._warehouse import WarehouseEventStore

MAPPING = {"user_id": "uid", "ts": "event_time", "event_type": "name", "value": "amount"}


@pytest.fixture
def scenario(tmp_path: Path) -> Any:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    sc = build(settings, users=500, seed=5, max_duration_days=3)
    events = open_event_store(settings).to_arrow(sc.id)
    return settings, sc.id, events


def user_table(events: pa.Table, *, exposures: bool = False, aware: bool = True) -> pa.Table:
    """The events as a team's own table would hold them: other names, UTC-aware times, no experiment."""
    if not exposures:
        events = events.filter(pc.not_equal(events.column("event_type"), "exposure"))
    ts = events.column("ts").cast(pa.timestamp("us", tz="UTC")) if aware else events.column("ts")
    cols = {"uid": events.column("user_id"), "event_time": ts, "name": events.column("event_type"),
            "amount": events.column("value")}
    if exposures:
        cols["arm"] = events.column("variant")
    return pa.table(cols)


def monitor(settings: Settings, exp_id: int) -> Monitor:
    return Monitor(client=settings).put_experiment_id(experiment_id=exp_id)


def test_parquet_in_place_with_assignment_log(scenario: Any, tmp_path: Path) -> None:
    settings, exp_id, events = scenario
    want = monitor(settings, exp_id).result()
    folder = tmp_path / "lake"
    folder.mkdir()
    table = user_table(events)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), folder / "part-0.parquet")
    pq.write_table(table.slice(half), folder / "part-1.parquet")
    save_source(settings.registry_url, exp_id, SourceSpec("lake", str(folder / "*.parquet"), format="parquet",
                                                          columns=MAPPING))
    m = monitor(settings, exp_id)
    assert isinstance(m.backend.store_for(exp_id), WarehouseEventStore)  # type: ignore[attr-defined]
    assert_same_result(m.result(), want)
    # read in place: what the files hold is what counts
    (folder / "part-1.parquet").unlink()
    assert monitor(settings, exp_id).result().rows[0].users == want.rows[0].users  # exposures: the log
    assert monitor(settings, exp_id).result().rows != want.rows
    # the report and end conditions run against the source too
    pq.write_table(table.slice(half), folder / "part-1.parquet")
    report = write_experiment_report(settings, exp_id, tmp_path / "report.html")
    assert Path(report.html_path).exists() and report.verdict == want.decision.verdict
    ended = monitor(settings, exp_id).check_end_conditions(stop=False, now=dt.datetime(2022, 3, 20))
    assert ended.met and not ended.stopped


def test_delta_with_exposure_rows(scenario: Any, tmp_path: Path) -> None:
    from deltalake import write_deltalake

    settings, exp_id, events = scenario
    want = monitor(settings, exp_id).result()
    write_deltalake(str(tmp_path / "delta"), user_table(events, exposures=True))
    save_source(settings.registry_url, exp_id, SourceSpec(
        "delta-events", str(tmp_path / "delta"), format="delta", columns={**MAPPING, "variant": "arm"},
        exposures="events"))
    assert_same_result(monitor(settings, exp_id).result(), want)


def test_spark_table_with_exposures_table(scenario: Any, spark: Any) -> None:
    settings, exp_id, events = scenario
    want = monitor(settings, exp_id).result()
    spark.createDataFrame(user_table(events).to_pandas()).createOrReplaceTempView("team_events")
    exposed = events.filter(pc.equal(events.column("event_type"), "exposure"))
    spark.createDataFrame(pa.table({"who": exposed.column("user_id"), "ts": exposed.column("ts").cast(
        pa.timestamp("us", tz="UTC")), "variant": exposed.column("variant")}).to_pandas()
    ).createOrReplaceTempView("team_exposures")
    save_source(settings.registry_url, exp_id, SourceSpec(
        "spark-events", "team_events", connection="spark", columns=MAPPING, exposures="table",
        exposures_location="team_exposures", exposure_columns={"user_id": "who"}))
    assert_same_result(monitor(settings, exp_id).result(), want)


def test_spark_table_with_assignment_log_in_a_session_outside_utc(scenario: Any, spark: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """battleground's exposure log joined to a Spark table by a session and a process in New York:
    the same result as the own store (the log's naive times are UTC, not the session's zone)."""
    import time

    settings, exp_id, events = scenario
    want = monitor(settings, exp_id).result()
    before = spark.conf.get("spark.sql.session.timeZone")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        spark.createDataFrame(user_table(events, aware=True).to_pandas()).createOrReplaceTempView("team_events_ny")
        save_source(settings.registry_url, exp_id, SourceSpec("spark-ny", "team_events_ny", connection="spark",
                                                              columns=MAPPING))
        assert_same_result(monitor(settings, exp_id).result(), want)
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(("change", "words"), [
    ({"columns": {**MAPPING, "ts": "when"}}, ["'lake'", "'when'", "(ts)", "columns={'ts'"]),
    ({"columns": {**MAPPING, "value": "name"}}, ["'lake'", "'name'", "(value)", "not a number"]),
])
def test_errors_name_source_column_and_fix(scenario: Any, tmp_path: Path, change: dict[str, Any],
                                           words: list[str]) -> None:
    settings, exp_id, events = scenario
    pq.write_table(user_table(events), tmp_path / "e.parquet")
    spec = SourceSpec(**{"name": "lake", "location": str(tmp_path / "e.parquet"), "format": "parquet",
                         "columns": MAPPING, **change})
    save_source(settings.registry_url, exp_id, spec)
    with pytest.raises(SourceError) as err:
        monitor(settings, exp_id).result()
    for w in words:
        assert w in str(err.value)


def test_naive_timestamps_need_a_zone(scenario: Any, tmp_path: Path) -> None:
    settings, exp_id, events = scenario
    want = monitor(settings, exp_id).result()
    pq.write_table(user_table(events, aware=False), tmp_path / "e.parquet")
    spec = SourceSpec("lake", str(tmp_path / "e.parquet"), format="parquet", columns=MAPPING)
    save_source(settings.registry_url, exp_id, spec)
    with pytest.raises(SourceError, match=r"'lake'.*'event_time' \(ts\) is a timezone-naive.*timezone='UTC'"):
        monitor(settings, exp_id).result()
    save_source(settings.registry_url, exp_id, SourceSpec(**{**spec.to_dict(), "timezone": "UTC"}))
    assert_same_result(monitor(settings, exp_id).result(), want)


def test_unreachable_source_leaves_the_experiment_untouched(scenario: Any, tmp_path: Path) -> None:
    settings, exp_id, _ = scenario
    registry = Registry(settings.registry_url)
    before = (registry.get(exp_id).status, len(registry.audit_log(exp_id)))
    save_source(settings.registry_url, exp_id, SourceSpec("gone", str(tmp_path / "missing" / "*.parquet"),
                                                          format="parquet", columns=MAPPING))
    with pytest.raises(SourceError, match=r"source 'gone'.*cannot be read.*check"):
        monitor(settings, exp_id).check_end_conditions(stop=True, now=dt.datetime(2022, 3, 20))
    save_source(settings.registry_url, exp_id, SourceSpec("down", "events", connection=
                                                          "mysql+pymysql://nobody@127.0.0.1:1/none", columns=MAPPING))
    with pytest.raises(SourceError, match=r"source 'down'"):
        monitor(settings, exp_id).check_end_conditions(stop=True, now=dt.datetime(2022, 3, 20))
    assert (registry.get(exp_id).status, len(registry.audit_log(exp_id))) == before


def test_spec_rules() -> None:
    with pytest.raises(SourceError, match="exposures_location"):
        SourceSpec("s", "t", exposures="table")
    with pytest.raises(SourceError, match="unknown column mapping"):
        SourceSpec("s", "t", columns={"userid": "u"})
    with pytest.raises(SourceError, match="timezone must be 'UTC'"):
        SourceSpec("s", "t", timezone="Europe/Paris")
    assert _Backend  # the default backend reads registered sources
