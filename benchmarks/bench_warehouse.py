"""Warehouse-native benchmarks (issue 18 §3): the same metric definitions run where the events live.

The events are a team's own table (their column names, UTC-aware timestamps, the variant on every row,
one exposure row per user), written once as Parquet files under ``/tmp/bg_bench_warehouse`` (reused by
later runs). A source (:class:`SourceSpec`) maps them onto battleground's event columns; nothing is
ingested. Per engine and size, in one run:

1. **Full recompute**: the per-variant sums of 10 metrics (proportions, means, ratios, with windows and
   CUPED look-backs) in one query, best of 3; peak memory (the process tree's resident set over the
   baseline, the server backend's for PostgreSQL) and events/s.
2. **Incremental daily refresh** (``refresh_sums``, last 2 days recomputed): the cache is primed at day
   D, then the checks of days D+1, D+2, D+3 each settle one day and read the last two (best of the
   three), and later checks the same day read the last two only (best of three); their ratio to the
   full recompute, and a check that the refreshed sums equal a full recompute at the same instant
   (1e-9). On DuckDB and chdb
   also the refresh that re-reads the active units' history (MariaDB's path, and every engine's
   before the per-unit states; ``BATTLEGROUND_BENCH_WH_LEGACY=0`` skips it).
3. **Engines**: DuckDB over the Parquet files in place (every size), Spark ``local[2]`` over the same
   files in place, chdb (ClickHouse in-process) and PostgreSQL over a table loaded from them (the load is
   not timed: a warehouse has its events already); each engine's ratio to DuckDB on the same events.
4. **Monitor end to end** on the largest DuckDB size: a registered experiment with the 10 metrics whose
   source is the Parquet files; ``Monitor.result()`` (sums, tests, SRM, decision), best of 3.
5. **Slope**: DuckDB time against events over the sizes (log-log exponent and seconds per 10M events).

Targets (issue 18, 100M events on DuckDB): full 10-metric analysis <= 5 s, incremental refresh <= 0.5 s.

Run: ``python -m benchmarks warehouse`` (DuckDB at 1M, 10M, 100M; Spark, chdb, PostgreSQL at 20M) or
``BATTLEGROUND_BENCH_QUICK=1 python -m benchmarks warehouse`` / ``python benchmarks/bench_warehouse.py
--quick`` (DuckDB at 200k, 2M; the others at 200k). Sizes: ``BATTLEGROUND_BENCH_WH_DUCKDB=1000000,10000000``
and ``BATTLEGROUND_BENCH_WH_OTHERS=20000000``; engines: ``BATTLEGROUND_BENCH_WH_ENGINES=duckdb,spark,chdb,
postgres``; ``BATTLEGROUND_BENCH_WH_LEGACY=duckdb,chdb`` (default) also times the history re-read refresh
on those engines. One DuckDB point alone (the 100M run): ``BATTLEGROUND_BENCH_WH_SIZE=100000000 python
benchmarks/bench_warehouse.py``; it checks the free disk first (60 bytes an event) and keeps DuckDB
under ``BATTLEGROUND_BENCH_WH_MEMORY`` (default 6GB, spilling beyond it). PostgreSQL is at ``BATTLEGROUND_TEST_POSTGRES_URL`` (default the local server); an engine
that cannot start is skipped, saying why.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

START = dt.datetime(2024, 3, 1)
DAYS = 14
DATA = Path(os.environ.get("BATTLEGROUND_BENCH_WH_DATA", "/tmp/bg_bench_warehouse"))
MAPPING = {"user_id": "uid", "ts": "event_time", "event_type": "name", "value": "amount",
           "covariate": "pre_revenue", "variant": "arm"}
TYPES = np.array(["impression", "click", "visit", "add_to_cart", "purchase", "signup", "refund"])
P_TYPES = np.array([0.60, 0.15, 0.10, 0.06, 0.04, 0.03, 0.02])
# name, kind, numerator, denominator, window (days), CUPED look-back (days)
METRICS = [
    ("conversion", "proportion", "purchase", None, 7, 7),
    ("revenue", "mean", "purchase", None, 7, 7),
    ("ctr", "ratio", "click", "impression", 3, 0),
    ("visits", "mean", "visit", None, None, 0),
    ("carts", "proportion", "add_to_cart", None, 7, 0),
    ("cart_rate", "ratio", "add_to_cart", "visit", 7, 0),
    ("signups", "proportion", "signup", None, 2, 0),
    ("refunds", "proportion", "refund", None, 14, 0),
    ("refund_value", "mean", "refund", None, 14, 0),
    ("aov", "ratio", "purchase", "add_to_cart", 7, 7),
]
# DuckDB's memory limit, for generating the data and for the measured queries (it spills beyond it)
MEMORY = os.environ.get("BATTLEGROUND_BENCH_WH_MEMORY", "6GB")
POSTGRES_URL = os.environ.get("BATTLEGROUND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def queries() -> list[Any]:
    from battleground.storage._sums_sql import MetricQuery

    return [MetricQuery(kind, num, den, win, look) for _, kind, num, den, win, look in METRICS]


# ------------------------------------------------------------------ the team's events, as Parquet
def make_events(n: int, folder: Path, *, seed: int = 0) -> Path:
    """``n`` events (20 per user) as Parquet files in ``folder``, one folder per day (``day=YYYY-MM-DD``),
    written by DuckDB's own SQL (a ``range`` and hash-based random numbers, ``COPY … PARTITION_BY``), so
    that 100M events take minutes, not hours, in bounded memory (DuckDB spills to ``folder``'s disk).
    Kept: a later run reuses them.

    Each user is exposed once at a random instant of the first 13 days (the exposure row carries a
    pre-period revenue as the covariate); the other 19 events follow the exposure by an exponential delay
    (mean 2 days, so some fall after the windows), 5 % of them come before it (CUPED look-back, the
    "dirty" pass of the query). Purchases and refunds carry values (gamma-distributed, 5 % higher for
    treatment purchases). Every value is a hash of (seed, event, draw), so the files are the same
    whatever the thread count.
    """
    import duckdb

    done = folder / "_complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_user = 20

    def u(draw: int) -> str:  # a uniform in (0, 1) from the event index i and the draw number
        return f"((hash(i * 16 + {draw} + {int(seed) * 1_000_003}) % 1000000007) + 0.5) / 1000000007.0"

    # cumulative type probabilities, for the inverse-CDF draw of the event type
    bounds, acc = [], 0.0
    for name, p in zip(TYPES.tolist(), P_TYPES.tolist(), strict=True):
        acc += p
        bounds.append((name, acc))
    kind = "CASE " + " ".join(f"WHEN {u(2)} < {b!r} THEN '{name}'" for name, b in bounds[:-1]) + f" ELSE '{bounds[-1][0]}' END"
    gamma2 = f"(-ln({u(5)}) - ln({u(6)}))"  # gamma(2, 1): the sum of two exponentials
    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = '{folder}/.spill'")
        con.execute(f"SET memory_limit = '{MEMORY}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"""
COPY (
  WITH ev AS (
    SELECT i, i // {per_user} AS usr, i % {per_user} AS k FROM range({int(n)}) t(i)
  ),
  us AS (  -- per user: the exposure instant and the arm, drawn from the user's first event index
    SELECT *, (hash(usr * 7 + {int(seed)}) % 1000003) / 1000003.0 * {(DAYS - 1) * 86400} AS t0,
           hash(usr * 11 + 3 + {int(seed)}) % 2 AS arm FROM ev
  ),
  drawn AS (
    SELECT usr, arm, k, t0, CASE WHEN k = 0 THEN 'exposure' ELSE {kind} END AS name,
           CASE WHEN k = 0 THEN t0
                ELSE LEAST(GREATEST(t0 + CASE WHEN {u(3)} < 0.05 THEN -{u(4)} * {3 * 86400}
                                              ELSE -ln({u(4)}) * {2 * 86400} END, 0), {DAYS * 86400 - 1}) END AS secs,
           {gamma2} AS g, CASE WHEN k = 0 THEN round({gamma2} * 10, 2) END AS pre_revenue
    FROM us
  )
  SELECT 'u' || usr AS uid,
         TIMESTAMPTZ '{START:%Y-%m-%d} 00:00:00+00' + to_microseconds(CAST(secs * 1e6 AS BIGINT)) AS event_time,
         name,
         CASE WHEN name = 'purchase' THEN round(g * 20 * (1 + 0.05 * arm), 2)
              WHEN name = 'refund' THEN round(g * 7.5, 2) END AS amount,
         pre_revenue, CASE WHEN arm = 1 THEN 'treatment' ELSE 'control' END AS arm,
         CAST(TIMESTAMP '{START:%Y-%m-%d}' + to_microseconds(CAST(secs * 1e6 AS BIGINT)) AS DATE) AS day
  FROM drawn
  ORDER BY event_time
) TO '{folder}' (FORMAT parquet, PARTITION_BY (day), ROW_GROUP_SIZE 500000, OVERWRITE_OR_IGNORE)""")
    finally:
        con.close()
    shutil.rmtree(folder / ".spill", ignore_errors=True)
    done.write_text(str(n))
    return folder


def dataset(n: int) -> Path:
    folder = DATA / f"events_{n}_by_day"
    if not (folder / "_complete").exists():
        check_disk(n)
    return make_events(n, folder)


def check_disk(n: int) -> None:
    """Refuses to start a data set that would fill the disk: about 12 bytes an event as Parquet, and
    DuckDB's sort spills up to ~40 more while writing; 60 bytes an event are asked for."""
    DATA.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(DATA).free
    need = 60 * n
    if free < need:
        raise SystemExit(f"{n:,} events need about {need / 2**30:.1f} GiB free under {DATA}, only "
                         f"{free / 2**30:.1f} GiB are; set BATTLEGROUND_BENCH_WH_DATA to a larger disk")


# ------------------------------------------------------------------ peak memory
@contextmanager
def peak_memory(extra_pids: Callable[[], list[int]] = list) -> Iterator[dict[str, float]]:
    """Samples the resident memory of this process, its children (a Spark JVM) and ``extra_pids``
    (a PostgreSQL backend) every 20 ms; yields a dict whose ``peak_mb`` is the peak over the baseline."""
    import psutil

    def rss() -> int:
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]
        for pid in extra_pids():
            with suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        total = 0
        for p in procs:
            with suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    out = {"peak_mb": 0.0}
    base = rss()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mb"] = max(peak[0], rss()) - base
        out["peak_mb"] /= 1e6


# ------------------------------------------------------------------ engines
def _spec(location: str, fmt: str, connection: str = "duckdb") -> Any:
    from battleground.storage._sources import SourceSpec

    return SourceSpec("bench", location, connection=connection, format=fmt, columns=MAPPING, exposures="events")


def duckdb_store(folder: Path, experiment_id: int) -> tuple[Any, Callable[[], list[int]]]:
    import duckdb

    from battleground.storage._sources import open_source
    from battleground.storage._warehouse import DuckDBEngine

    # a bounded DuckDB (it spills beyond the limit), so that 100M events leave the shared machine's RAM be
    con = duckdb.connect(config={"memory_limit": MEMORY, "temp_directory": str(DATA / ".spill")})
    return open_source(_spec(str(folder / "*" / "*.parquet"), "parquet"), experiment_id,
                       engine=DuckDBEngine(con)), list


_SPARK: list[Any] = []


def spark_store(folder: Path, experiment_id: int) -> tuple[Any, Callable[[], list[int]]]:
    from battleground.storage._sources import open_source
    from battleground.storage._warehouse import SparkEngine

    if not _SPARK:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        session = (SparkSession.builder.master("local[2]").appName("battleground-bench")
                   .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
                   .config("spark.sql.session.timeZone", "UTC").config("spark.driver.memory", "6g")
                   .getOrCreate())
        session.sparkContext.setLogLevel("ERROR")
        _SPARK.append(session)
    return open_source(_spec(str(folder), "parquet", "spark"), experiment_id, engine=SparkEngine(_SPARK[0])), list


def chdb_store(folder: Path, experiment_id: int) -> tuple[Any, Callable[[], list[int]]]:
    from battleground.storage._sources import open_source
    from battleground.storage._warehouse import ChdbEngine

    engine = ChdbEngine()
    engine.session.query(
        "CREATE TABLE team_events (uid String, event_time DateTime64(6, 'UTC'), name LowCardinality(String), "
        "amount Nullable(Float64), pre_revenue Nullable(Float64), arm LowCardinality(String)) "
        "ENGINE = MergeTree ORDER BY (uid, event_time)")
    engine.session.query(f"INSERT INTO team_events SELECT uid, event_time, name, amount, pre_revenue, arm "
                         f"FROM file('{folder}/*/*.parquet', Parquet)")
    return open_source(_spec("team_events", "table"), experiment_id, engine=engine), list


def postgres_store(folder: Path, experiment_id: int) -> tuple[Any, Callable[[], list[int]]]:
    import io

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from battleground.storage._sources import open_source
    from battleground.storage._warehouse import SqlAlchemyEngine

    name = f"bg_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    _PG_DATABASES.append((admin, name))
    url = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    engine = SqlAlchemyEngine(url)
    raw = engine.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("CREATE TABLE team_events (uid text, event_time timestamptz, name text, "
                    "amount double precision, pre_revenue double precision, arm text)")
        for path in sorted(folder.glob("*/*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(1_000_000):
                buf = io.BytesIO()
                pcsv.write_csv(batch.cast(_plain_schema(batch.schema)), buf,
                               pcsv.WriteOptions(include_header=False))
                with cur.copy("COPY team_events FROM STDIN (FORMAT csv)") as copy:  # type: ignore[attr-defined]
                    copy.write(buf.getvalue())
        cur.execute("CREATE INDEX ON team_events (uid)")
        cur.execute("ANALYZE team_events")
        raw.commit()
    finally:
        raw.close()
    pid = int(engine.fetch("SELECT pg_backend_pid()")[0][0])
    return open_source(_spec("team_events", "table", url), experiment_id, engine=engine), lambda: [pid]


_PG_DATABASES: list[tuple[Any, str]] = []


def _plain_schema(schema: Any) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                      for f in schema])


ENGINES: dict[str, Callable[[Path, int], tuple[Any, Callable[[], list[int]]]]] = {
    "duckdb": duckdb_store, "spark": spark_store, "chdb": chdb_store, "postgres": postgres_store}


# ------------------------------------------------------------------ one engine, one size
def _same(a: Any, b: Any) -> bool:
    if a.exposed_users != b.exposed_users:
        return False
    for g_arms, w_arms in zip(a.metrics, b.metrics, strict=True):
        for g, w in zip(g_arms, w_arms, strict=True):
            if g.users != w.users:
                return False
            for name in ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_c", "sum_c2", "sum_xc"):
                x, y = getattr(g, name), getattr(w, name)
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, abs(w.shift) * w.users)):
                    return False
    return True


def measure(engine: str, n: int, registry_url: str, experiment_id: int, repeat: int = 3) -> dict[str, Any]:
    """Full recompute and incremental daily refresh of the 10 metrics over ``n`` events on ``engine``."""
    from battleground.storage._incremental import refresh_sums

    folder = dataset(n)
    with peak_memory() as setup_mem:
        store, pids = ENGINES[engine](folder, experiment_id)
    defs = queries()
    variants = ("control", "treatment")
    end = START + dt.timedelta(days=DAYS - 4, hours=13)
    with peak_memory(pids) as mem:
        full_s = math.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            want = store.experiment_sums(experiment_id, defs, None, end, variants)
            full_s = min(full_s, time.perf_counter() - t0)
    # incremental: prime at `end`, then one check a day; each check recomputes the last 2 days
    with peak_memory(pids) as inc_mem:
        t0 = time.perf_counter()
        refresh_sums(store, registry_url, experiment_id, defs, None, end, variants, full=True)
        prime_s = time.perf_counter() - t0
        inc_s, exact = math.inf, True
        for d in range(1, 4):
            at = end + dt.timedelta(days=d)
            t0 = time.perf_counter()
            got = refresh_sums(store, registry_url, experiment_id, defs, None, at, variants)
            inc_s = min(inc_s, time.perf_counter() - t0)
            exact = exact and _same(got, store.experiment_sums(experiment_id, defs, None, at, variants))
        # later checks the same day (nothing to settle: only the query over the last 2 days), best of 3
        recheck_s = math.inf
        for h in (1, 2, 3):
            t0 = time.perf_counter()
            got = refresh_sums(store, registry_url, experiment_id, defs, None, at + dt.timedelta(hours=h), variants)
            recheck_s = min(recheck_s, time.perf_counter() - t0)
        exact = exact and _same(got, store.experiment_sums(experiment_id, defs, None, at + dt.timedelta(hours=3),
                                                           variants))
    legacy_s = math.nan
    if engine in os.environ.get("BATTLEGROUND_BENCH_WH_LEGACY", "duckdb,chdb").split(","):
        # the refresh before the per-unit states (re-reads the active units' history), same events
        old = _Legacy(store)
        refresh_sums(old, registry_url, experiment_id, defs, None, end, variants, full=True)  # type: ignore[arg-type]
        legacy_s = math.inf
        for d in range(1, 3):
            t0 = time.perf_counter()
            refresh_sums(old, registry_url, experiment_id, defs, None, end + dt.timedelta(days=d), variants)  # type: ignore[arg-type]
            legacy_s = min(legacy_s, time.perf_counter() - t0)
    return {"engine": engine, "events": n, "full_s": full_s, "rows_per_s": n / full_s, "peak_mb": mem["peak_mb"],
            "inc_s": inc_s, "inc_ratio": inc_s / full_s, "prime_s": prime_s, "exact": exact,
            "recheck_s": recheck_s, "legacy_s": legacy_s,
            "inc_peak_mb": inc_mem["peak_mb"], "setup_mb": setup_mem["peak_mb"], "sums": want}


class _Legacy:
    """A store seen as a non-DuckDB engine, so that ``refresh_sums`` takes the history re-read path."""

    backend = "legacy"

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def monitor_end_to_end(n: int, home: Path, repeat: int = 3) -> float:
    """``Monitor.result()`` of a registered 10-metric experiment whose source is the Parquet files."""
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.register import Registry
    from battleground.settings import Settings
    from battleground.storage._sources import save_source

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home / f"monitor_{n}")})
    registry = Registry(settings.registry_url)
    metrics = [{"name": name, "kind": kind, "numerator": num, **({"denominator": den} if den else {}),
                **({"conversion_window_days": win} if win else {}), **({"cuped_lookback_days": look} if look else {}),
                **({"primary": True} if name == "conversion" else {})}
               for name, kind, num, den, win, look in METRICS]
    rec = registry.create_experiment("warehouse-bench", variants={"control": 0.5, "treatment": 0.5},
                                     metrics=metrics, start_at=START, hypothesis="bench")
    registry.start(rec.id, at=START)
    save_source(settings.registry_url, rec.id, _spec(str(dataset(n) / "*" / "*.parquet"), "parquet"))
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = Monitor(client=settings).put_experiment_id(experiment_id=rec.id).result()
        best = min(best, time.perf_counter() - t0)
    assert len(result.rows) == 2 * len(METRICS), len(result.rows)
    return best


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _sizes(name: str, default: str) -> list[int]:
    return [int(float(s)) for s in os.environ.get(name, default).split(",") if s.strip()]


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    duck_sizes = _sizes("BATTLEGROUND_BENCH_WH_DUCKDB", "200000,2000000" if quick else "1000000,10000000,100000000")
    other = _sizes("BATTLEGROUND_BENCH_WH_OTHERS", "200000" if quick else "20000000")
    engines = [e.strip() for e in os.environ.get("BATTLEGROUND_BENCH_WH_ENGINES", "duckdb,spark,chdb,postgres").split(",")]
    if os.environ.get("BATTLEGROUND_BENCH_WH_SIZE"):
        # one DuckDB point (the 100M run): no other engine, no history re-read refresh
        duck_sizes, other, engines = _sizes("BATTLEGROUND_BENCH_WH_SIZE", ""), [], ["duckdb"]
        os.environ["BATTLEGROUND_BENCH_WH_LEGACY"] = "0"
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"BATTLEGROUND_BENCH_WH_ENGINES: unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bg_bench_wh_"))
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home / "cache")})
    registry = Registry(settings.registry_url)
    exp_ids = iter(registry.create_experiment(f"cache-{k}", variants={"control": 0.5, "treatment": 0.5}).id
                   for k in range(1000))
    print(f"warehouse: 10 metrics, events as Parquet under {DATA}; {_load()}", flush=True)
    rows: list[dict[str, Any]] = []
    duck: dict[int, dict[str, Any]] = {}
    try:
        if "duckdb" in engines:
            for n in sorted({*duck_sizes, *other}):
                t0 = time.perf_counter()
                dataset(n)
                data_s = time.perf_counter() - t0
                r = measure("duckdb", n, settings.registry_url, next(exp_ids))
                duck[n] = r
                rows.append(r)
                print(f"  duckdb  {n:>11,} events: full {r['full_s']:.3f} s ({r['rows_per_s'] / 1e6:.1f}M events/s, "
                      f"peak +{r['peak_mb']:.0f} MB), daily refresh {r['inc_s']:.3f} s ({r['inc_ratio']:.2f}x full, "
                      f"exact: {r['exact']}; same-day re-check {r['recheck_s']:.3f} s; before the per-unit "
                      f"states {r['legacy_s']:.3f} s = {r['legacy_s'] / r['full_s']:.2f}x full) [data generated or found in {data_s:.0f} s]; {_load()}",
                      flush=True)
        for engine in (e for e in engines if e != "duckdb"):
            for n in other:
                try:
                    r = measure(engine, n, settings.registry_url, next(exp_ids))
                except Exception as exc:  # an engine that cannot start here is reported, not fatal
                    print(f"  {engine:<7} skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                    continue
                rows.append(r)
                ratio = f", {r['full_s'] / duck[n]['full_s']:.1f}x DuckDB" if n in duck else ""
                same = f", same sums as DuckDB: {_same(r['sums'], duck[n]['sums'])}" if n in duck else ""
                print(f"  {engine:<7} {n:>11,} events: full {r['full_s']:.3f} s ({r['rows_per_s'] / 1e6:.2f}M "
                      f"events/s, peak +{r['peak_mb']:.0f} MB{ratio}{same}), daily refresh {r['inc_s']:.3f} s "
                      f"({r['inc_ratio']:.2f}x full, exact: {r['exact']}; same-day re-check {r['recheck_s']:.3f} s; "
                      f"history re-read refresh {r['legacy_s']:.3f} s); {_load()}", flush=True)
        if "duckdb" in engines:
            big = max(duck_sizes)
            mon = monitor_end_to_end(big, home)
            print(f"  Monitor.result() end to end, DuckDB over Parquet, {big:,} events, 10 metrics: {mon:.3f} s "
                  f"(target at 100M: <= 5 s; sums alone {duck[big]['full_s']:.3f} s); {_load()}")
            sizes = sorted(duck)
            if len(sizes) >= 2:
                x = np.log([float(s) for s in sizes])
                y = np.log([duck[s]["full_s"] for s in sizes])
                slope = float(np.polyfit(x, y, 1)[0])
                per10m = duck[sizes[-1]]["full_s"] / sizes[-1] * 1e7
                print(f"  DuckDB slope over {', '.join(f'{s:,}' for s in sizes)} events: time ~ events^{slope:.2f}; "
                      f"{per10m:.2f} s per 10M events at the largest size; daily refresh at the largest: "
                      f"{duck[sizes[-1]]['inc_s']:.3f} s (target at 100M: <= 0.5 s)")
        print("\n| engine | events | full 10-metric sums (s) | events/s | peak memory (MB) | daily refresh (s) "
              "| refresh / full | same-day re-check (s) | history re-read refresh (s) | exact |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['engine']} | {r['events']:,} | {r['full_s']:.3f} | {r['rows_per_s'] / 1e6:.2f}M | "
                  f"{r['peak_mb']:.0f} | {r['inc_s']:.3f} | {r['inc_ratio']:.2f} | {r['recheck_s']:.3f} | "
                  f"{r['legacy_s']:.3f} | {r['exact']} |")
    finally:
        for admin, name in _PG_DATABASES:
            with admin.connect() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()
        for session in _SPARK:
            session.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(sys.argv[1:])
