"""Event store benchmarks (issue 2): ingest, per-variant sufficient statistics, assignment.

1. Ingest N events (default 10M) from an Arrow table into the embedded DuckDB store through the public
   ``ingest`` (validation included; one transaction), and ``write_batch`` alone on the validated batch.
   Target >= 1M events/s. Also a second batch into the now full store (the idempotency anti-join path).
2. Ingest M events (default 1M) into PostgreSQL (COPY), the same two ways. Target >= 100k events/s.
   Needs the server at ``BATTLEGROUND_TEST_POSTGRES_URL`` (default the local one); skipped, saying so,
   when it cannot be reached.
3. Per-variant sufficient statistics (users, n, Σx, Σx², Σy, Σy², Σxy, Σc, Σc², Σxc; aggregated per user
   first) of a ratio metric with a covariate over the N events: DuckDB vs a pandas groupby on the same
   events in memory, same run, same numbers checked. Targets <= 1.0 s and >= 3x pandas.
4. Assignment: ``assign_variants`` on N integer ids and N/10 string ids vs a per-id ``xxhash`` loop.
   Target >= 5M ids/s.

Run: ``python -m benchmarks events`` (full size) or ``BATTLEGROUND_BENCH_QUICK=1 python -m benchmarks
events`` / ``python benchmarks/bench_events.py --quick`` (200k events, 20k into PostgreSQL). Sizes can be
set with ``BATTLEGROUND_BENCH_EVENTS`` and ``BATTLEGROUND_BENCH_PG_EVENTS``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import best_of

START = dt.datetime(2022, 3, 1)
METRIC = {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"}



def make_events(n: int, *, first_id: int = 0, seed: int = 0) -> Any:
    """An Arrow table of n events as a producer would send them: one exposure per user (10 % of the
    events, with a pre-period covariate), then impressions, clicks (~5 %) and purchases (~1 %, with a
    revenue value) over 14 days. Event ids are text, user ids int64, variant and type dictionary-encoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    n_users = max(n // 10, 2)
    user = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n - n_users)])
    kind = np.concatenate([np.zeros(n_users, np.int8), rng.choice(np.array([1, 2, 3], np.int8), n - n_users,
                                                                   p=[0.94, 0.05, 0.01])])
    variant = (user % 2).astype(np.int8)  # stands in for the assignment; the store does not care
    seconds = rng.integers(0, 14 * 86400, n)
    seconds[:n_users] = rng.integers(0, 86400, n_users)  # exposures on the first day
    ts = np.datetime64(START, "us") + (seconds * 1_000_000).astype("timedelta64[us]")
    value = np.where(kind == 3, np.round(rng.gamma(2.0, 20.0, n), 2), np.nan)
    covariate = np.where(kind == 0, np.round(rng.gamma(2.0, 3.0, n), 3), np.nan)
    ids = pc.binary_join_element_wise("e", pc.cast(pa.array(np.arange(first_id, first_id + n)), pa.string()), "")
    return pa.table({
        "event_id": ids,
        "experiment": pa.array(np.ones(n, np.int32)),
        "variant": pa.DictionaryArray.from_arrays(pa.array(variant), pa.array(["control", "treatment"])),
        "user_id": pa.array(user),
        "event_type": pa.DictionaryArray.from_arrays(
            pa.array(kind), pa.array(["exposure", "impression", "click", "purchase"])),
        "timestamp": pa.array(ts),
        "value": pa.array(value, mask=np.isnan(value)),
        "covariate": pa.array(covariate, mask=np.isnan(covariate)),
    })


def _register(registry_url: str) -> int:
    from battleground.experiment.register import Registry

    registry = Registry(registry_url)
    exp = registry.create_experiment("bench-events", variants={"control": 0.5, "treatment": 0.5},
                                     metrics=[METRIC], start_at=START, salt="bench")
    registry.start(exp.id)
    return exp.id


def _ingest_report(label: str, make_store: Callable[[], Any], table: Any, target: float) -> Any:
    """Public ingest on one fresh store, then a re-send and a new batch; write_batch alone on another
    fresh store, which is returned (it holds exactly ``table``)."""
    from battleground.experiment.events import _registry, ingest, validate_events

    n = table.num_rows
    store = make_store()
    t0 = time.perf_counter()
    result = ingest(store, table)
    t_ingest = time.perf_counter() - t0
    assert result.inserted == n, result
    t0 = time.perf_counter()
    again = ingest(store, table.slice(0, max(n // 10, 1)))
    t_resend = time.perf_counter() - t0
    assert again.inserted == 0
    extra = make_events(max(n // 10, 1), first_id=n, seed=1)
    t0 = time.perf_counter()
    assert ingest(store, extra).inserted == extra.num_rows
    t_more = time.perf_counter() - t0

    other = make_store()
    t0 = time.perf_counter()
    valid = validate_events(table, _registry(other))
    t_validate = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert other.write_batch(valid).inserted == n
    t_write = time.perf_counter() - t0
    rate = n / t_ingest
    print(
        f"{label}: ingest {n:,} events from Arrow (validation included, one transaction) {t_ingest:.2f} s = "
        f"{rate / 1e6:.2f}M events/s (target >= {target / 1e6:g}M/s: {'met' if rate >= target else 'NOT met'})\n"
        f"  validation alone {t_validate:.2f} s ({n / t_validate / 1e6:.2f}M/s), write_batch alone "
        f"{t_write:.2f} s ({n / t_write / 1e6:.2f}M/s)\n"
        f"  re-sending {n // 10:,} known events {t_resend:.2f} s (0 inserted); {extra.num_rows:,} new events "
        f"into the full store {t_more:.2f} s ({extra.num_rows / t_more / 1e6:.2f}M/s)",
        flush=True,
    )
    return other


def bench_duckdb_ingest(table: Any, home: Path) -> Any:
    from battleground.experiment.events import open_event_store

    made: list[Path] = []

    def fresh() -> Any:
        made.append(home / f"duck{len(made)}")
        store = open_event_store(str(made[-1]))
        _register(store.registry_url)
        return store

    return _ingest_report("DuckDB", fresh, table, 1e6)


def bench_postgres_ingest(n: int) -> None:
    import psycopg

    from battleground.experiment.events import open_event_store
    from battleground.storage._db import dispose_all

    admin = os.environ.get("BATTLEGROUND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        psycopg.connect(admin, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL: skipped, {admin} cannot be reached ({exc})")
        return
    names: list[str] = []

    def fresh() -> Any:
        name = f"bg_bench_{uuid.uuid4().hex[:10]}"
        names.append(name)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        store = open_event_store(f"{admin.rpartition('/')[0]}/{name}")
        _register(store.registry_url)
        store.count()  # create the table before the clock starts
        return store

    try:
        _ingest_report("PostgreSQL", fresh, make_events(n, seed=2), 1e5)
    finally:
        dispose_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pandas_sums(frame: Any) -> dict[str, tuple[float, ...]]:
    """The store's definition of the ratio metric's sums, with a pandas groupby (per user, then per
    variant): users, n, Σx, Σx², Σy, Σy², Σxy, Σc, Σc², Σxc."""
    import pandas as pd

    et = frame["event_type"]
    keep = et.isin(["exposure", "click", "impression"])
    f = frame[keep]
    et = f["event_type"]
    ones = f["value"].fillna(1.0)
    flags = pd.DataFrame({
        "variant": f["variant"], "user_id": f["user_id"], "exposed": et == "exposure",
        "n": (et == "click").astype(np.float64), "x": ones.where(et == "click", 0.0),
        "y": ones.where(et == "impression", 0.0), "c": f["covariate"],
    })
    per_user = flags.groupby(["variant", "user_id"], observed=True, sort=False).agg(
        exposed=("exposed", "max"), n=("n", "sum"), x=("x", "sum"), y=("y", "sum"), c=("c", "max"))
    per_user = per_user[per_user["exposed"]]
    per_user["c"] = per_user["c"].fillna(0.0)
    x, y, c = per_user["x"], per_user["y"], per_user["c"]
    per_user = per_user.assign(x2=x * x, y2=y * y, xy=x * y, c2=c * c, xc=x * c)
    agg = per_user.groupby(level="variant", observed=True).agg(
        users=("x", "size"), n=("n", "sum"), x=("x", "sum"), x2=("x2", "sum"), y=("y", "sum"),
        y2=("y2", "sum"), xy=("xy", "sum"), c=("c", "sum"), c2=("c2", "sum"), xc=("xc", "sum"))
    return {str(v): tuple(float(a) for a in row) for v, row in agg.iterrows()}


def bench_sums(store: Any, table: Any) -> None:
    from battleground.experiment.events import events_frame, metric_sums

    t_duck, sums = best_of(lambda: metric_sums(store, "bench-events", "ctr"))
    # pandas on the events as the store holds them (text ids, read back once, untimed) …
    stored = events_frame(store, "bench-events")
    t_pd, ref = best_of(lambda: pandas_sums(stored), repeat=2)
    # … and on the generator's frame: int64 user ids, categorical variant and type, pandas at its fastest
    t_fast, ref_fast = best_of(lambda: pandas_sums(table.to_pandas()), repeat=2)

    def same(reference: dict[str, tuple[float, ...]]) -> bool:
        return all(
            np.allclose([s.users, s.events, s.sum_x, s.sum_x2, s.sum_y, s.sum_y2, s.sum_xy, s.sum_c, s.sum_c2,
                         s.sum_xc], reference[s.variant], rtol=1e-9)
            for s in sums
        )

    print(
        f"per-variant sufficient statistics of a ratio metric with covariate over {table.num_rows:,} events "
        f"(per user first): DuckDB {t_duck:.3f} s (target <= 1.0 s)\n"
        f"  pandas groupby on the stored events (text ids) {t_pd:.3f} s, ratio {t_pd / t_duck:.1f}x "
        f"(target >= 3x), same numbers: {same(ref)}\n"
        f"  pandas groupby on int64 ids and categoricals {t_fast:.3f} s, ratio {t_fast / t_duck:.1f}x, "
        f"same numbers: {same(ref_fast)}",
        flush=True,
    )


def bench_assign(n: int) -> None:
    import pyarrow as pa
    import xxhash

    from battleground.experiment.assign import assign_one, assign_variants

    variants, weights = ["control", "treatment"], [0.5, 0.5]
    ids = np.arange(n, dtype=np.int64) * 7919 + 10**9
    t_int, out = best_of(lambda: assign_variants(ids, salt="bench", variants=variants, weights=weights))
    strings = pa.array([f"user-{i:012d}" for i in range(max(n // 10, 1))])
    t_str, out_s = best_of(lambda: assign_variants(strings, salt="bench", variants=variants, weights=weights))
    m = min(n, 200_000)

    def loop() -> list[str]:
        edges = np.cumsum(weights)[:-1]
        res = []
        for i in ids[:m].tolist():
            u = (xxhash.xxh64_intdigest(f"bench:{i}".encode()) >> 32) / 2**32
            res.append(variants[int(np.searchsorted(edges, u, side="right"))])
        return res

    t_loop, base = best_of(loop, repeat=1)
    assert base == out[:m].tolist()
    assert out_s[:100].tolist() == [assign_one(s, salt="bench", variants=variants, weights=weights)
                                    for s in strings[:100].to_pylist()]
    rate = n / t_int
    print(
        f"assignment: assign_variants {n:,} integer ids {t_int:.3f} s = {rate / 1e6:.1f}M ids/s (target >= 5M/s: "
        f"{'met' if rate >= 5e6 else 'NOT met'}); {len(strings):,} string ids {t_str:.3f} s = "
        f"{len(strings) / t_str / 1e6:.1f}M ids/s; per-id xxhash loop {m / t_loop / 1e6:.2f}M ids/s "
        f"({(n / t_int) / (m / t_loop):.0f}x slower than vectorised); same answers: True",
        flush=True,
    )


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n = int(os.environ.get("BATTLEGROUND_BENCH_EVENTS", 200_000 if quick else 10_000_000))
    n_pg = int(os.environ.get("BATTLEGROUND_BENCH_PG_EVENTS", 20_000 if quick else 1_000_000))
    from battleground.settings import quiet_third_party_telemetry

    quiet_third_party_telemetry()
    print(f"events benchmark: {n:,} events (DuckDB), {n_pg:,} (PostgreSQL), {os.cpu_count()} CPUs", flush=True)
    t0 = time.perf_counter()
    table = make_events(n)
    print(f"  generated {n:,} events in {time.perf_counter() - t0:.1f} s (not timed below)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = bench_duckdb_ingest(table, Path(tmp))
        bench_sums(store, table)
    bench_postgres_ingest(n_pg)
    bench_assign(n)


if __name__ == "__main__":
    main(sys.argv[1:])
