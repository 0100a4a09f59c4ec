"""Incremental refresh: cached per-day sums plus the last N days equal a full recompute (issue 18 §2).

On DuckDB (the embedded store, DuckDB sources) a refresh reads only the events after the cutoff, from
the per-unit states cached at the cutoff; elsewhere it re-reads the active units' history.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_engines import assert_same
from tests.experiment.ab_scenario import START, build

from battleground.experiment.events import open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._arrow import EVENT_SCHEMA
from battleground.storage._incremental import definition_hash, refresh_sums
from battleground.storage._sources import SourceSpec, open_source
from battleground.storage._sums_sql import MetricQuery
from battleground.storage._warehouse import DuckDBEngine, WarehouseEventStore
from conftest import START as EV_START
from conftest import make_events

METRICS = [
    MetricQuery("proportion", "purchase", None, 3, 14),
    MetricQuery("mean", "purchase", None, None, 14),
    MetricQuery("ratio", "click", "impression", 2, 7),
    MetricQuery("mean", "impression", None, 1.5, 0),
]
# the same metrics over the warehouse test events (every case: two variants, lookback, covariates)
EV_METRICS = [
    MetricQuery("proportion", "purchase", None, 3, 14),
    MetricQuery("mean", "visit", None, None, 14),
    MetricQuery("ratio", "click", "visit", 2, 7),
    MetricQuery("mean", "click", None, 1.5, 0),
]
VARIANTS = ("control", "treatment")


@pytest.fixture
def scenario(tmp_path: Path) -> Any:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    sc = build(settings, users=800, days=7, seed=9)
    return settings, sc.id, open_event_store(settings)


def cache_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in (Path(settings.home) / "sums_cache").glob("*.parquet"))


@pytest.mark.parametrize("policy", ["exclude", "first", "keep"])
def test_refresh_equals_full_recompute(scenario: Any, policy: str) -> None:
    settings, exp_id, store = scenario
    start = START + dt.timedelta(hours=6)
    for end in (START + dt.timedelta(days=d, hours=13) for d in (3, 4, 5, 7, 9)):
        got = refresh_sums(store, settings.registry_url, exp_id, METRICS, start, end, VARIANTS,
                           multiple_exposures=policy)
        want = store.experiment_sums(exp_id, METRICS, start, end, VARIANTS, multiple_exposures=policy)
        assert_same(got, want)
        assert want.metrics[0][0].users > 100
        # one state file: the per-unit states at the newest cutoff (end's day - 1)
        day = (end.date() - dt.timedelta(days=1)).isoformat()
        assert cache_files(settings) == [f"{exp_id}-{definition_hash(METRICS, policy, start)}-{day}.parquet"]
    # a full recompute on demand, and a changed definition never meets the old sums
    again = refresh_sums(store, settings.registry_url, exp_id, METRICS, start, end, VARIANTS,
                         multiple_exposures=policy, full=True)
    assert_same(again, want)
    changed = [MetricQuery("proportion", "purchase", None, 1, 14), *METRICS[1:]]
    assert definition_hash(changed, policy, start) != definition_hash(METRICS, policy, start)
    got = refresh_sums(store, settings.registry_url, exp_id, changed, start, end, VARIANTS,
                       multiple_exposures=policy)
    assert_same(got, store.experiment_sums(exp_id, changed, start, end, VARIANTS, multiple_exposures=policy))
    assert len(cache_files(settings)) == 2


def _memory_store(table: pa.Table) -> tuple[WarehouseEventStore, Any]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("incoming", table)
    con.execute("CREATE TABLE events AS SELECT * FROM incoming")
    con.unregister("incoming")
    return WarehouseEventStore(DuckDBEngine(con), "events", name="memory"), con


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, int]:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".bg")})
    exp = Registry(settings.registry_url).create_experiment("inc", variants={"control": 0.5, "treatment": 0.5})
    return settings.registry_url, exp.id


@pytest.mark.parametrize("policy", ["exclude", "first", "keep"])
def test_every_case_on_a_duckdb_source(registry: tuple[str, int], tmp_path: Path, policy: str) -> None:
    """Users in two variants, exposed twice, events before the exposure and after the windows, covariates:
    each daily refresh (days=2 and days=1) equals a full recompute."""
    url, exp_id = registry
    store, _ = _memory_store(make_events(seed=3, users=600, experiment=exp_id))
    start = EV_START + dt.timedelta(hours=5)
    for days in (2, 1):
        for d in (6, 7, 8, 11, 12, 25):
            end = EV_START + dt.timedelta(days=d, hours=7)
            got = refresh_sums(store, url, exp_id, EV_METRICS, start, end, VARIANTS, multiple_exposures=policy,
                               days=days, cache_dir=tmp_path / "cache")
            want = store.experiment_sums(exp_id, EV_METRICS, start, end, VARIANTS, multiple_exposures=policy)
            assert_same(got, want)
    assert want.multiple_exposure_users > 10 and want.metrics[2][0].sum_e != 0


def test_a_refresh_reads_only_the_recent_days(registry: tuple[str, int], tmp_path: Path) -> None:
    """An event arriving late for a day before the cutoff is not seen by a refresh (it reads only the
    last N days) until ``full=True``; one within the last N days is."""
    url, exp_id = registry
    table = make_events(seed=4, users=400, experiment=exp_id)
    store, con = _memory_store(table)
    end = EV_START + dt.timedelta(days=10, hours=12)
    kw: dict[str, Any] = {"cache_dir": tmp_path / "cache"}
    before = refresh_sums(store, url, exp_id, EV_METRICS, None, end, VARIANTS, **kw)
    exposed = con.execute("SELECT user_id, variant, MIN(ts) FROM events WHERE event_type = 'exposure' "
                          "GROUP BY user_id, variant HAVING COUNT(*) = 1 ORDER BY 3 LIMIT 1").fetchall()[0]
    user, variant, t0 = exposed

    def late(ts: dt.datetime, event_id: str) -> None:
        row = {"event_id": event_id, "experiment_id": exp_id, "variant": variant, "user_id": user,
               "event_type": "visit", "ts": ts, "value": 1000.0, "covariate": None}
        con.register("late", pa.Table.from_pylist([row], schema=EVENT_SCHEMA))
        con.execute("INSERT INTO events SELECT * FROM late")
        con.unregister("late")

    late(t0 + dt.timedelta(hours=1), "late-old")  # before the cutoff (end's day - 1), in no window limit
    stale = refresh_sums(store, url, exp_id, EV_METRICS, None, end, VARIANTS, **kw)
    assert_same(stale, before)
    full = store.experiment_sums(exp_id, EV_METRICS, None, end, VARIANTS)
    assert full.metrics[1][0].sum_x != before.metrics[1][0].sum_x or full.metrics[1][1].sum_x != before.metrics[1][1].sum_x
    assert_same(refresh_sums(store, url, exp_id, EV_METRICS, None, end, VARIANTS, full=True, **kw), full)
    late(end - dt.timedelta(hours=2), "late-new")  # within the last 2 days: the refresh sees it
    assert_same(refresh_sums(store, url, exp_id, EV_METRICS, None, end, VARIANTS, **kw),
                store.experiment_sums(exp_id, EV_METRICS, None, end, VARIANTS))


def test_parquet_source_refresh(registry: tuple[str, int], tmp_path: Path) -> None:
    url, exp_id = registry
    events = make_events(seed=5, users=500, experiment=exp_id)
    folder = tmp_path / "lake"
    folder.mkdir()
    pq.write_table(events.sort_by("ts"), folder / "part-0.parquet", row_group_size=200)
    spec = SourceSpec("lake", str(folder / "*.parquet"), format="parquet", exposures="events",
                      columns={"variant": "variant", "value": "value", "covariate": "covariate"}, timezone="UTC")
    store = open_source(spec, exp_id)
    for d in (9, 10, 12):
        end = EV_START + dt.timedelta(days=d, hours=3)
        got = refresh_sums(store, url, exp_id, EV_METRICS, None, end, VARIANTS, cache_dir=tmp_path / "c")
        assert_same(got, store.experiment_sums(exp_id, EV_METRICS, None, end, VARIANTS))


def test_covariate_logged_before_the_lookback_of_a_new_user(registry: tuple[str, int], tmp_path: Path) -> None:
    """The one stated limit: an explicit covariate on an event before (cutoff - longest look-back) of a
    user first exposed after the cutoff is not read by a refresh; a full recompute reads it."""
    url, exp_id = registry
    cut = EV_START + dt.timedelta(days=9)
    rows = []
    for k, (user, variant) in enumerate((("a", "control"), ("b", "treatment"), ("c", "control"))):
        rows.append({"event_id": f"x{k}", "experiment_id": exp_id, "variant": variant, "user_id": user,
                     "event_type": "exposure", "ts": EV_START + dt.timedelta(days=k), "value": None,
                     "covariate": 1.0 + k})
    rows.append({"event_id": "n", "experiment_id": exp_id, "variant": "treatment", "user_id": "new",
                 "event_type": "exposure", "ts": cut + dt.timedelta(hours=3), "value": None, "covariate": None})
    rows.append({"event_id": "old-cov", "experiment_id": exp_id, "variant": "treatment", "user_id": "new",
                 "event_type": "visit", "ts": cut - dt.timedelta(days=2), "value": 1.0, "covariate": 9.0})
    store, _ = _memory_store(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
    metrics = [MetricQuery("mean", "visit", None, None, 1)]
    end = cut + dt.timedelta(days=1, hours=1)
    got = refresh_sums(store, url, exp_id, metrics, None, end, VARIANTS, cache_dir=tmp_path / "c")
    want = store.experiment_sums(exp_id, metrics, None, end, VARIANTS)
    treat_got, treat_want = got.metrics[0][1], want.metrics[0][1]
    assert treat_got.users == treat_want.users == 2
    assert treat_got.sum_c + 2 * treat_got.shift_c != pytest.approx(treat_want.sum_c + 2 * treat_want.shift_c)
    # with a look-back reaching the covariate's day it is exact again
    longer = [MetricQuery("mean", "visit", None, None, 3)]
    assert_same(refresh_sums(store, url, exp_id, longer, None, end, VARIANTS, cache_dir=tmp_path / "c"),
                store.experiment_sums(exp_id, longer, None, end, VARIANTS))


class OtherEngine:
    """The store behind another engine's name, counting the metric-sums queries (``active``: a step)."""

    backend = "other"

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


def test_other_engines_refresh_by_active_users(scenario: Any) -> None:
    settings, exp_id, store = scenario
    counting = OtherEngine(store)
    for end in (START + dt.timedelta(days=d, hours=13) for d in (3, 4, 5)):
        got = refresh_sums(counting, settings.registry_url, exp_id, METRICS, None, end, VARIANTS)  # type: ignore[arg-type]
        assert_same(got, store.experiment_sums(exp_id, METRICS, None, end, VARIANTS))
        assert counting.full_scans == 1  # only the first refresh reads every user
    assert counting.steps == 2 * (1 + 2 * 2)


def test_days_must_be_whole(scenario: Any) -> None:
    settings, exp_id, store = scenario
    with pytest.raises(ValueError, match="days must be"):
        refresh_sums(store, settings.registry_url, exp_id, METRICS, days=0)
