"""A/B statistics benchmarks (issue 3).

1. ``Monitor.get_abtest_result`` end to end over N events in the embedded DuckDB store, against a pandas
   implementation of the same numbers (per-user aggregation, per-variant sums, the same statistics)
   on the same events held in memory. Targets: ≤ 1.5 s at 10M events and ≥ 3× pandas.
2. Analysis of 100 experiments × 10 metrics from their sums (vectorised ``analyze_metrics``) against
   the scalar per-comparison functions. Target: ≤ 0.5 s.

Run: ``python -m benchmarks abtest`` (10M events) or ``BATTLEGROUND_BENCH_QUICK=1 python -m benchmarks
abtest`` / ``python benchmarks/bench_abtest.py --quick`` (200k events).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _timeit(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ---------------------------------------------------------------------------------------------------
# 2. many experiments from sums
# ---------------------------------------------------------------------------------------------------


def bench_sums(n_experiments: int = 100, n_metrics: int = 10) -> dict[str, float]:
    from battleground.stats import MetricSpec, analyze_metrics, compare_means, ratio_test
    from battleground.storage.sums import MetricSums

    rng = np.random.default_rng(0)
    kinds = ["proportion", "mean", "ratio"]
    experiments = []
    for _ in range(n_experiments):
        specs, sums = [], {}
        for j in range(n_metrics):
            kind = kinds[j % 3]
            name = f"m{j}"
            specs.append(MetricSpec(name, kind, primary=j == 0, guardrail=j == n_metrics - 1))
            arms = []
            for v in ("control", "treatment"):
                n = int(rng.integers(5_000, 50_000))
                if kind == "proportion":
                    k = float(rng.binomial(n, 0.1))
                    arms.append(MetricSums(v, n, int(k), k, k))
                else:
                    mean, sd = 10.0, 3.0
                    sx = n * mean + rng.normal() * sd * np.sqrt(n)
                    sx2 = (n - 1) * sd * sd + sx * sx / n
                    if kind == "ratio":
                        sy = n * 20.0
                        arms.append(MetricSums(v, n, n, sx / 10, sx2 / 100, sy, n * 500.0, sx * 2.0))
                    else:
                        arms.append(MetricSums(v, n, n, sx, sx2))
            sums[name] = arms
        experiments.append((specs, sums))

    def vectorised() -> int:
        rows = 0
        for specs, sums in experiments:
            rows += len(analyze_metrics(specs, sums, control="control"))
        return rows

    def scalar() -> int:
        rows = 0
        for specs, sums in experiments:
            for spec in specs:
                c, t = sums[spec.name]
                if spec.kind == "ratio":
                    ratio_test(c, t)
                    ratio_test(c, t, relative=True)
                else:
                    compare_means(c, t, proportion=spec.kind == "proportion")
                    compare_means(c, t, proportion=spec.kind == "proportion", relative=True)
                rows += 2
        return rows

    t_vec, rows = _timeit(vectorised)
    t_sca, _ = _timeit(scalar, repeat=1)
    print(
        f"analysis of {n_experiments} experiments x {n_metrics} metrics ({rows} rows) from sums: "
        f"vectorised {t_vec:.3f} s (target <= 0.5 s), scalar functions {t_sca:.3f} s "
        f"({t_sca / t_vec:.1f}x slower)"
    )
    return {"sums_vectorised_s": t_vec, "sums_scalar_s": t_sca}


# ---------------------------------------------------------------------------------------------------
# 1. per-variant results over raw events: DuckDB (SQL sums + Python tests) vs pandas
# ---------------------------------------------------------------------------------------------------

METRICS_SQL = """
WITH per_user AS (
    SELECT variant, user_id,
           max(CASE WHEN event_type = 'purchase' THEN 1.0 ELSE 0.0 END) AS conv,
           sum(CASE WHEN event_type = 'purchase' THEN value ELSE 0.0 END) AS revenue,
           count(*) FILTER (WHERE event_type = 'click') AS clicks,
           count(*) FILTER (WHERE event_type = 'impression') AS imps,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases
    FROM events
    WHERE experiment = ? AND timestamp >= ? AND timestamp < ?
    GROUP BY variant, user_id
)
SELECT variant, count(*) AS users, sum(purchases) AS purchases, sum(conv) AS conv,
       sum(revenue) AS rev, sum(revenue * revenue) AS rev2,
       sum(clicks) AS clk, sum(clicks * clicks) AS clk2, sum(imps) AS imp, sum(imps * imps) AS imp2,
       sum(clicks * imps) AS clkimp
FROM per_user GROUP BY variant ORDER BY variant
"""


def _events(n_events: int, seed: int = 0) -> Any:
    """Synthetic events of one experiment: an exposure per user, impressions, clicks, purchases."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_users = max(n_events // 10, 10)
    users = np.arange(n_users, dtype=np.int64)
    variant = np.where(rng.random(n_users) < 0.5, "control", "treatment")
    treat = variant == "treatment"
    per_user = n_events - n_users  # the rest of the events after one exposure each
    owner = rng.integers(0, n_users, per_user)
    u = rng.random(per_user)
    p_click = np.where(treat[owner], 0.052, 0.05)
    p_buy = np.where(treat[owner], 0.0105, 0.01)
    etype = np.where(u < p_buy, "purchase", np.where(u < p_buy + p_click, "click", "impression"))
    value = np.where(etype == "purchase", rng.gamma(2.0, 20.0, per_user), np.nan)
    start = np.datetime64("2022-03-01T00:00:00")
    ts = start + rng.integers(0, 14 * 86400, n_events).astype("timedelta64[s]")
    return pd.DataFrame({
        "event_id": np.arange(n_events, dtype=np.int64),
        "experiment": np.full(n_events, 1, dtype=np.int64),
        "variant": pd.Categorical(np.concatenate([variant, variant[owner]])),
        "user_id": np.concatenate([users, owner]),
        "event_type": pd.Categorical(np.concatenate([np.full(n_users, "exposure"), etype])),
        "timestamp": ts,
        "value": np.concatenate([np.full(n_users, np.nan), value]),
    })


def _rows_to_sums(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    from battleground.storage.sums import MetricSums

    out: dict[str, list[Any]] = {"conversion": [], "revenue": [], "ctr": []}
    for v, users, purchases, conv, rev, rev2, clk, clk2, imp, imp2, clkimp in rows:
        v, users, purchases = str(v), int(users), int(purchases)
        out["conversion"].append(MetricSums(v, users, purchases, float(conv), float(conv)))
        out["revenue"].append(MetricSums(v, users, purchases, float(rev), float(rev2)))
        out["ctr"].append(
            MetricSums(v, users, int(clk), float(clk), float(clk2), float(imp), float(imp2), float(clkimp))
        )
    return out



def _specs() -> Any:
    from battleground.stats import MetricSpec

    return [MetricSpec("conversion", "proportion", primary=True), MetricSpec("revenue", "mean"),
            MetricSpec("ctr", "ratio")]


def _to_frame(sums: dict[str, list[Any]]) -> Any:
    from battleground.experiment.monitoring import results_frame
    from battleground.stats import analyze_metrics, srm_test

    rows = analyze_metrics(_specs(), sums, control="control")
    users = [s.users for s in sums["conversion"]]
    return results_frame(1, rows, srm_test(users, [0.5, 0.5]))


def duckdb_result(con: Any, start: str, end: str) -> Any:
    rows = con.execute(METRICS_SQL, [1, start, end]).fetchall()
    return _to_frame(_rows_to_sums(rows))


def pandas_result(df: Any, start: str, end: str) -> Any:
    import pandas as pd

    sel = df[(df["experiment"] == 1) & (df["timestamp"] >= pd.Timestamp(start)) & (df["timestamp"] < pd.Timestamp(end))]
    et = sel["event_type"]
    per_user = pd.DataFrame({
        "variant": sel["variant"], "user_id": sel["user_id"],
        "conv": (et == "purchase").astype(float), "revenue": sel["value"].where(et == "purchase", 0.0),
        "clicks": (et == "click").astype(np.int64), "imps": (et == "impression").astype(np.int64),
        "purchases": (et == "purchase").astype(np.int64),
    }).groupby(["variant", "user_id"], observed=True).agg(
        conv=("conv", "max"), revenue=("revenue", "sum"), clicks=("clicks", "sum"), imps=("imps", "sum"),
        purchases=("purchases", "sum"),
    )
    per_user = per_user.assign(
        rev2=per_user["revenue"] ** 2, clk2=per_user["clicks"] ** 2, imp2=per_user["imps"] ** 2,
        clkimp=per_user["clicks"] * per_user["imps"],
    )
    g = per_user.groupby(level="variant", observed=True)
    agg = g.agg(
        users=("conv", "size"), purchases=("purchases", "sum"), conv=("conv", "sum"),
        rev=("revenue", "sum"), rev2=("rev2", "sum"), clk=("clicks", "sum"), clk2=("clk2", "sum"),
        imp=("imps", "sum"), imp2=("imp2", "sum"), clkimp=("clkimp", "sum"),
    ).sort_index()
    rows = [(v, *r) for v, r in zip(agg.index, agg.itertuples(index=False), strict=True)]
    return _to_frame(_rows_to_sums(rows))


def bench_events(n_events: int) -> dict[str, float]:
    import duckdb

    t0 = time.perf_counter()
    df = _events(n_events)
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "events.duckdb"))
        con.register("df_view", df)
        con.execute("CREATE TABLE events AS SELECT * FROM df_view")
        con.unregister("df_view")
        print(f"{n_events:,} events generated and loaded into DuckDB in {time.perf_counter() - t0:.1f} s")
        start, end = "2022-03-01", "2022-03-15"
        t_db, res_db = _timeit(lambda: duckdb_result(con, start, end))
        t_pd, res_pd = _timeit(lambda: pandas_result(df, start, end), repeat=2)
        con.close()
    cols = ["users", "value", "abs_lift", "p_value", "rel_ci_lower", "rel_ci_upper"]
    same = np.allclose(res_db[cols].to_numpy(float), res_pd[cols].to_numpy(float), equal_nan=True, rtol=1e-9)
    print(
        f"per-variant results over {n_events:,} events (3 metrics: conversion, revenue, CTR by the delta "
        f"method; Welch + SRM): DuckDB {t_db:.3f} s (target <= 1.5 s), pandas {t_pd:.3f} s, "
        f"ratio {t_pd / t_db:.1f}x (target >= 3x); same numbers: {same}"
    )
    return {"duckdb_s": t_db, "pandas_s": t_pd}


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n_events = int(os.environ.get("BATTLEGROUND_BENCH_EVENTS", 200_000 if quick else 10_000_000))
    bench_events(n_events)
    bench_sums(20 if quick else 100, 10)


if __name__ == "__main__":
    main(sys.argv[1:])
