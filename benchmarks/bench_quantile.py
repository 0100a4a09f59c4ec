"""Quantile metrics benchmark (issue 17): the quantile part in DuckDB against pandas' groupby-quantile.

On the experiment of ``bench_abtest`` (N events; revenue = Σ purchase value per exposed user), the p90
and the p50 of revenue per user with the order statistics of their 95 % intervals. Same data, same run:

1. DuckDB: ``EventStore.quantile_sums`` (the per-user step of the metric-sums scan, then per arm the
   sample quantile and its two bounds, ROW_NUMBER over the arm) on the stored events;
2. the baseline, pandas on the same events in memory: the window, Σ value per exposed user
   (``groupby``), then ``groupby("variant").quantile`` at each arm's three levels (the bound levels
   depend on the arm's n, so the levels of every arm are asked in one call and each arm reads its own).
   The two answers are checked equal (1e-9) before any figure is printed;
3. the quantile part alone, on the same per-user table in both: DuckDB runs the scan's quantile SQL
   (``quantile_tail_sql``, what follows the shared per-user step) over the per-user values, pandas
   ``groupby("variant").quantile`` over the same values as a DataFrame;
4. ``Monitor.result`` with the two quantile metrics declared against the same call without them.

Run: ``PYTHONPATH=src:. python benchmarks/bench_quantile.py`` (10M events) or ``… --quick`` (1M events).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import best_of

LEVELS = (0.9, 0.5)


def pandas_quantiles(df: Any, start: Any, end: Any) -> dict[tuple[float, str], tuple[int, float, float, float]]:
    """``{(ν, variant): (n, q, lower, upper)}`` by pandas on the in-memory events (the baseline)."""
    import pandas as pd

    from battleground.stats import quantile_bound_levels

    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    sel = df[(df["timestamp"] >= lo) & (df["timestamp"] < hi)]
    et = sel["event_type"]
    buy = et == "purchase"
    frame = pd.DataFrame({"variant": sel["variant"], "user_id": sel["user_id"], "exposed": et == "exposure",
                          "revenue": sel["value"].fillna(1.0).where(buy, 0.0)})  # an empty value counts 1
    per_user = frame.groupby(["variant", "user_id"], observed=True, sort=False).agg(
        exposed=("exposed", "max"), revenue=("revenue", "sum"))
    per_user = per_user[per_user["exposed"]].reset_index()
    n = per_user.groupby("variant", observed=True).size()
    levels = sorted({lv for nu in LEVELS for v in n.index for lv in (nu, *quantile_bound_levels(nu, int(n[v])))})
    q = per_user.groupby("variant", observed=True)["revenue"].quantile(levels)
    out = {}
    for nu in LEVELS:
        for v in n.index:
            lv_lo, lv_hi = quantile_bound_levels(nu, int(n[v]))
            out[(nu, str(v))] = (int(n[v]), float(q[(v, nu)]), float(q[(v, lv_lo)]), float(q[(v, lv_hi)]))
    return out


def quantile_part(store: Any, exp_id: int, defs: Any, levels: dict[int, float], begin: Any,
                  until: Any, arms_n: list[int]) -> tuple[float, float]:
    """Best-of-3 seconds of the quantile part alone on one per-user table: DuckDB's quantile SQL and
    pandas' groupby-quantile (answers checked equal)."""
    import duckdb

    from battleground.stats import quantile_bound_levels
    from battleground.storage._compile import compile_sql
    from battleground.storage._quantile_sql import quantile_tail_sql

    values = store.per_user_values(exp_id, defs, begin, until)
    frame = {"grp": np.asarray(values.variants).astype(str), **{f"x{j}": values.x[:, j] for j in levels},
             **{f"n{j}": np.zeros(values.users) for j in levels}}
    con = duckdb.connect()
    import pandas as pd

    per_user = pd.DataFrame(frame)
    con.register("per_user_frame", per_user)
    con.execute("CREATE TABLE per_user AS SELECT * FROM per_user_frame")
    sql = compile_sql(quantile_tail_sql(levels, arms_n), "duckdb")
    t_sql, rows = best_of(lambda: con.execute(sql).fetchall())

    def with_pandas() -> Any:  # each arm's three levels (the bounds at its n*), in one groupby-quantile
        n = per_user.groupby("grp").size()
        asked = sorted({lv for nu in levels.values() for v in n.index
                        for lv in (nu, *quantile_bound_levels(nu, int(n[v])))})
        return n, per_user.groupby("grp")[[f"x{j}" for j in levels]].quantile(asked)

    t_pd, (n, q) = best_of(with_pandas)
    for row in rows:
        v = row[0]
        for i, j in enumerate(sorted(levels)):
            a, b = quantile_bound_levels(levels[j], int(n[v]))
            qs, k = row[3 + 2 * i], 1 + 2 * sorted(set(arms_n)).index(int(n[v]))
            got = (qs[0], qs[k], qs[k + 1])
            assert np.allclose(got, [q.loc[(v, lv), f"x{j}"] for lv in (levels[j], a, b)], rtol=1e-9, atol=1e-9)
    return t_sql, t_pd


def main(argv: list[str]) -> None:
    from battleground.experiment._metric_sums import metric_query
    from battleground.experiment.events import open_event_store
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.register import Registry
    from benchmarks.bench_abtest import END, START, _load

    quick = "--quick" in argv
    n_events = int(os.environ.get("BATTLEGROUND_BENCH_EVENTS", 1_000_000 if quick else 10_000_000))
    print(f"load average: {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings, exp_id, events = _load(Path(tmp) / ".battleground", n_events)
        store = open_event_store(settings)
        registry = Registry(settings.registry_url)
        rec = registry.get(exp_id)
        revenue = next(j for j, m in enumerate(rec.metrics) if m.name == "revenue")
        defs = [metric_query(rec.metrics[revenue])] * len(LEVELS)  # one quantile metric per level
        levels = dict(enumerate(LEVELS))
        variants = rec.variant_names
        begin = dt.datetime.fromisoformat(START)
        until = dt.datetime.fromisoformat(END) + dt.timedelta(days=1)  # through the end of the last day
        # the arms' n from the metric-sums scan, as Monitor passes them (exact bound levels, n* = n)
        arms_n = [s.users for s in store.experiment_sums(exp_id, defs[:1], begin, until, variants).metrics[0]]
        t_sql, found = best_of(lambda: store.quantile_sums(exp_id, defs, levels, begin, until, variants=variants,
                                                           users=arms_n))
        t_pd, want = best_of(lambda: pandas_quantiles(events, START, END))
        for j, nu in levels.items():
            for a in found[j]:
                n, q, lo, hi = want[(nu, a.variant)]
                assert a.users == n and np.allclose((a.quantile, a.lower, a.upper), (q, lo, hi), rtol=1e-9, atol=1e-9), \
                    (a, want[(nu, a.variant)])
        users = sum(a.users for a in found[0])
        print(f"{n_events:,} events, {users:,} users; p90 and p50 of revenue per user with their bounds (equal)\n"
              f"  DuckDB quantile_sums: {t_sql:.3f} s; pandas groupby + groupby-quantile, same run: {t_pd:.3f} s "
              f"(DuckDB {t_pd / t_sql:.2f}x faster)", flush=True)

        t_tail, t_gq = quantile_part(store, exp_id, defs, levels, begin, until, arms_n)
        print(f"  the quantile part on the per-user values ({users:,} rows): DuckDB {t_tail:.3f} s; pandas "
              f"groupby-quantile, same run: {t_gq:.3f} s (DuckDB {t_gq / t_tail:.2f}x faster)", flush=True)

        def monitor() -> object:
            return Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(START, END)

        t_without, _ = best_of(monitor)
        for nu in LEVELS:
            registry.add_metric(exp_id, f"revenue_p{100 * nu:g}", kind="quantile", numerator="purchase", quantile=nu)
        t_with, res = best_of(monitor)
        assert sum(r.kind == "quantile" for r in res.rows) == 2 * len(LEVELS)  # type: ignore[attr-defined]
        print(f"  Monitor.result with 2 quantile metrics: {t_with:.3f} s; without, same run: {t_without:.3f} s "
              f"(ratio {t_with / t_without:.2f}x)", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; {time.strftime('%H:%M:%S', time.gmtime())} UTC")


if __name__ == "__main__":
    main(sys.argv[1:])
