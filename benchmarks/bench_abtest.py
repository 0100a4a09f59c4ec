"""A/B statistics benchmarks (issue 3).

1. ``Monitor.get_abtest_result`` end to end (a fresh Monitor, the registry lookup, the SQL sums in the
   embedded DuckDB store, the statistics, the DataFrame) over N events that were registered, exposed and
   ingested through the store, against a pandas implementation of the same numbers (window, per-user
   aggregation, per-variant sums, the same statistics) on the same events held in memory. Targets:
   ≤ 1.5 s at 10M events and ≥ 3× pandas.
   Issue 12: the same call now counts events from each user's first exposure, checks for users exposed
   to several variants and computes CUPED covariates (each metric over 14 days before the exposure),
   all in the one scan, with shifted sums. Compared in the same run with (a) the plain sums of before
   (one GROUP BY per (variant, user), no exposure join; the seed's query kept here as the baseline,
   behind the same Monitor) — target ≤ 1.2× — and (b) polars doing the same computation on the
   in-memory events (first exposure, multiple-exposure check, CUPED lookback, shifted sums, the same
   statistics) — target: faster than polars.
2. Analysis of 100 experiments × 10 metrics from their sums (vectorised ``analyze_metrics``) against
   the scalar per-comparison functions. Target: ≤ 0.5 s.
3. Issue 17, offline A/A: 1,000 random re-splits of 1M users' values (``aa_resplits``, a revenue mean
   and a CTR ratio), vectorised over re-splits, against a Python loop over re-splits doing the same
   test with numpy per re-split (timed over a tenth of the re-splits and scaled). Target ≤ 10 s per
   metric. Then ``experiment aa`` end to end (``offline_aa``: the per-user query on DuckDB plus the
   re-splits of the three registered metrics) on the loaded experiment.

Run: ``python -m benchmarks abtest`` (10M events) or ``BATTLEGROUND_BENCH_QUICK=1 python -m benchmarks
abtest`` / ``python benchmarks/bench_abtest.py --quick`` (200k events); ``… bench_abtest.py [--quick] aa``
runs part 3 alone (quick: 100k users, 1M events for the end-to-end part).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import best_of

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

    t_vec, rows = best_of(vectorised)
    t_sca, _ = best_of(scalar, repeat=1)
    print(
        f"analysis of {n_experiments} experiments x {n_metrics} metrics ({rows} rows) from sums: "
        f"vectorised {t_vec:.3f} s (target <= 0.5 s), scalar functions {t_sca:.3f} s "
        f"({t_sca / t_vec:.1f}x slower)"
    )
    return {"sums_vectorised_s": t_vec, "sums_scalar_s": t_sca}


# ---------------------------------------------------------------------------------------------------
# 1. Monitor.get_abtest_result end to end over events ingested through the store, vs pandas
# ---------------------------------------------------------------------------------------------------

METRICS = [
    {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
    {"name": "revenue", "kind": "mean", "numerator": "purchase"},
    {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"},
]
START = "2022-03-01"
END = "2022-03-14"  # the last day; Monitor reads it as "through the end of that day"


def _simulate(n_events: int, variant_of: Any, seed: int = 0) -> Any:
    """Events after one exposure per user (10 % of the events): impressions, clicks (CTR 5 % vs
    5.2 %), purchases (1 % vs 1.05 %, gamma revenue as the value), over 14 days. Returns the per-user
    variants and a generator of event chunks as DataFrames (user_id int64, categorical types)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_users = max(n_events // 10, 10)
    users = np.arange(n_users, dtype=np.int64)
    variant = np.asarray(variant_of(users), dtype=object)
    treat = variant == "treatment"
    n_rest = n_events - n_users
    start = np.datetime64(f"{START}T00:00:00")

    def chunks(size: int = 2_000_000) -> Any:
        for lo in range(0, n_rest, size):
            k = min(size, n_rest - lo)
            owner = rng.integers(0, n_users, k)
            u = rng.random(k)
            p_buy = np.where(treat[owner], 0.0105, 0.01)
            p_click = np.where(treat[owner], 0.052, 0.05)
            etype = np.where(u < p_buy, "purchase", np.where(u < p_buy + p_click, "click", "impression"))
            yield lo, pd.DataFrame({
                "variant": pd.Categorical(variant[owner], categories=["control", "treatment"]),
                "user_id": owner,
                "event_type": pd.Categorical(etype, categories=["exposure", "impression", "click", "purchase"]),
                "timestamp": start + rng.integers(0, 14 * 86400, k).astype("timedelta64[s]"),
                "value": np.where(etype == "purchase", np.round(rng.gamma(2.0, 20.0, k), 2), np.nan),
            })

    return users, variant, chunks


def _load(home: Path, n_events: int, metrics: Any = None) -> tuple[Any, int, Any]:
    """Register and start the experiment (``metrics``: default :data:`METRICS`), expose every user and
    ingest the events through the store; returns the settings, the experiment id and the same events
    as one in-memory DataFrame."""
    import pandas as pd

    from battleground.experiment.assign import Assigner
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home)})
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment("bench-checkout", metrics=metrics or METRICS, start_at=START, salt="bench")
    exp = registry.start(exp.id)
    store = open_event_store(settings)
    assigner = Assigner(exp)
    users, variant, chunks = _simulate(n_events, assigner.assign_many)
    t0 = time.perf_counter()
    assigner.expose(store, users, at=np.datetime64(f"{START}T00:00:00").astype("datetime64[us]").item())
    frames = [pd.DataFrame({
        "variant": pd.Categorical(variant, categories=["control", "treatment"]), "user_id": users,
        "event_type": pd.Categorical(["exposure"] * users.size, categories=["exposure", "impression", "click", "purchase"]),
        "timestamp": np.full(users.size, np.datetime64(f"{START}T00:00:00")), "value": np.nan,
    })]
    for lo, chunk in chunks():
        batch = chunk.assign(
            event_id=np.char.add("e", np.arange(lo, lo + len(chunk)).astype(str)), experiment=exp.id,
            variant=chunk["variant"].astype(str), event_type=chunk["event_type"].astype(str),
            value=pd.array(chunk["value"].to_numpy(), dtype="Float64"),  # <NA>: no value
        )
        ingest(store, batch)
        frames.append(chunk)
    events = pd.concat(frames, ignore_index=True)
    print(f"{len(events):,} events ({users.size:,} users) registered, exposed and ingested through the "
          f"store in {time.perf_counter() - t0:.1f} s; {store.count(exp.id):,} stored", flush=True)
    return settings, exp.id, events


def monitor_result(settings: Any, experiment_id: int) -> Any:
    """What a user runs: a fresh Monitor, the experiment, the results frame."""
    from battleground.experiment.monitoring import Monitor

    monitor = Monitor(client=settings)
    monitor.put_experiment_id(experiment_id=experiment_id)
    return monitor.get_abtest_result(start_dt=START, end_dt=END)


def pandas_result(df: Any, experiment_id: int) -> Any:
    """The same numbers with pandas on the in-memory events: window, per-user aggregation of exposed
    users, per-variant sums, then the same statistics (analyze_metrics + SRM) on those sums."""
    import pandas as pd

    from battleground.experiment.monitoring import results_frame
    from battleground.stats import MetricSpec, analyze_metrics, srm_test
    from battleground.storage.sums import MetricSums

    lo, hi = pd.Timestamp(START), pd.Timestamp(END) + pd.Timedelta(days=1)
    sel = df[(df["timestamp"] >= lo) & (df["timestamp"] < hi)]
    et = sel["event_type"]
    buy, click = (et == "purchase"), (et == "click")
    flags = pd.DataFrame({
        "variant": sel["variant"], "user_id": sel["user_id"], "exposed": (et == "exposure"),
        "purchases": buy.astype(np.int64), "revenue": sel["value"].where(buy, 0.0).fillna(0.0),
        "clicks": click.astype(np.float64), "imps": (et == "impression").astype(np.float64),
    })
    per_user = flags.groupby(["variant", "user_id"], observed=True, sort=False).agg(
        exposed=("exposed", "max"), purchases=("purchases", "sum"), revenue=("revenue", "sum"),
        clicks=("clicks", "sum"), imps=("imps", "sum"),
    )
    per_user = per_user[per_user["exposed"]]
    conv = (per_user["purchases"] > 0).astype(np.float64)
    per_user = per_user.assign(conv=conv, rev2=per_user["revenue"] ** 2, clk2=per_user["clicks"] ** 2,
                               imp2=per_user["imps"] ** 2, clkimp=per_user["clicks"] * per_user["imps"])
    agg = per_user.groupby(level="variant", observed=True).agg(
        users=("conv", "size"), purchases=("purchases", "sum"), conv=("conv", "sum"), rev=("revenue", "sum"),
        rev2=("rev2", "sum"), clk=("clicks", "sum"), clk2=("clk2", "sum"), imp=("imps", "sum"),
        imp2=("imp2", "sum"), clkimp=("clkimp", "sum"),
    ).sort_index()
    sums: dict[str, list[Any]] = {"conversion": [], "revenue": [], "ctr": []}
    for v, r in agg.iterrows():
        n, e = int(r["users"]), int(r["purchases"])
        sums["conversion"].append(MetricSums(str(v), n, e, float(r["conv"]), float(r["conv"])))
        sums["revenue"].append(MetricSums(str(v), n, e, float(r["rev"]), float(r["rev2"])))
        sums["ctr"].append(MetricSums(str(v), n, int(r["clk"]), float(r["clk"]), float(r["clk2"]),
                                      float(r["imp"]), float(r["imp2"]), float(r["clkimp"])))
    specs = [MetricSpec(m["name"], m["kind"], primary=bool(m.get("primary"))) for m in METRICS]
    rows = analyze_metrics(specs, sums, control="control")
    return results_frame(experiment_id, rows, srm_test([s.users for s in sums["conversion"]], [0.5, 0.5]))


_PLAIN_TYPES = ("purchase", "click", "impression")


def _plain_sql() -> str:
    """The seed's plain sums of the three metrics: every event of an exposed (variant, user) in the
    window counts, no exposure join, raw Σx and Σx² (the baseline of issue 12)."""
    one, zero = "CAST(1 AS DOUBLE)", "CAST(0 AS DOUBLE)"
    per_user = ", ".join([
        "COUNT(*) FILTER (WHERE event_type = 'exposure') AS exposed",
        "CAST(COUNT(*) FILTER (WHERE event_type = 'purchase') AS DOUBLE) AS n_buy",
        f"COALESCE(SUM(COALESCE(value, {one})) FILTER (WHERE event_type = 'purchase'), {zero}) AS rev",
        "CAST(COUNT(*) FILTER (WHERE event_type = 'click') AS DOUBLE) AS n_clk",
        f"COALESCE(SUM(COALESCE(value, {one})) FILTER (WHERE event_type = 'click'), {zero}) AS clk",
        f"COALESCE(SUM(COALESCE(value, {one})) FILTER (WHERE event_type = 'impression'), {zero}) AS imp",
        "COALESCE(MAX(covariate), CAST(0 AS DOUBLE)) AS c",
    ])
    metrics = [("n_buy", f"(CASE WHEN n_buy > 0 THEN {one} ELSE {zero} END)", zero), ("n_buy", "rev", zero),
               ("n_clk", "clk", "imp")]
    sums = []
    for j, (n, x, y) in enumerate(metrics):
        terms = [n, x, f"{x} * {x}", y, f"{y} * {y}", f"{x} * {y}", "c", "c * c", f"{x} * c"]
        sums += [f"SUM({t}) AS m{j}_{k}" for k, t in enumerate(terms)]
    return f"""
WITH per_user AS (
    SELECT variant, user_id, {per_user}
    FROM events WHERE experiment_id = $experiment AND ts >= $start AND ts < $end
      AND event_type IN ('exposure', 'purchase', 'click', 'impression')
    GROUP BY variant, user_id
)
SELECT variant, COUNT(*), {", ".join(sums)} FROM per_user WHERE exposed > 0 GROUP BY variant ORDER BY variant"""


class _PlainSource:
    """The default experiment source with the seed's plain sums (the baseline)."""

    def __init__(self, settings: Any) -> None:
        from battleground.experiment.monitoring import _Backend

        self._inner = _Backend(settings)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def metric_sums(self, info: Any, start: Any, end: Any) -> dict[str, list[Any]]:
        from battleground.storage.sums import MetricSums

        with self._inner.store.connection() as con:
            rows = con.execute(_plain_sql(), {"experiment": info.id, "start": start, "end": end}).fetchall()
        out: dict[str, list[Any]] = {m.name: [] for m in info.metrics}
        for r in rows:
            for j, m in enumerate(info.metrics):
                f = [float(v or 0.0) for v in r[2 + 9 * j : 11 + 9 * j]]
                out[m.name].append(MetricSums(str(r[0]), int(r[1]), round(f[0]), *f[1:]))
        return out


def plain_result(settings: Any, experiment_id: int) -> Any:
    """Monitor over the plain sums (everything else as in :func:`monitor_result`)."""
    from battleground.experiment.monitoring import Monitor

    monitor = Monitor(client=settings, source=_PlainSource(settings))  # type: ignore[arg-type]
    monitor.put_experiment_id(experiment_id=experiment_id)
    return monitor.get_abtest_result(start_dt=START, end_dt=END)


def polars_result(events: Any, experiment_id: int, lookback_days: float = 14.0) -> Any:
    """What the store's scan computes, in polars on the in-memory events: first exposure per user in the
    window, users exposed to two variants counted and left out, events from the exposure on, the CUPED
    covariate over the lookback before it, per-variant sums around per-metric means; then the same
    statistics as the Monitor."""
    import datetime as dt

    import polars as pl

    from battleground.experiment.monitoring import results_frame
    from battleground.stats import MetricSpec, analyze_metrics, srm_test
    from battleground.storage.sums import MetricSums

    lo = dt.datetime.fromisoformat(START)
    hi = dt.datetime.fromisoformat(END) + dt.timedelta(days=1)
    back = dt.timedelta(days=lookback_days)
    e = events.lazy().filter((pl.col("timestamp") >= lo - back) & (pl.col("timestamp") < hi))
    exposure = (
        e.filter((pl.col("event_type") == "exposure") & (pl.col("timestamp") >= lo))
        .group_by("user_id")
        .agg(t0=pl.col("timestamp").min(), arm=pl.col("variant").min(), multi=pl.col("variant").n_unique() > 1)
    )
    et, ts, t0 = pl.col("event_type"), pl.col("timestamp"), pl.col("t0")
    after, before = ts >= t0, (ts < t0) & (ts >= t0 - back)
    v1 = pl.col("value").fill_nan(None).fill_null(1.0)

    def total(kind: str, when: Any) -> Any:
        return pl.when((et == kind) & when).then(v1).otherwise(0.0).sum()

    per_user = (
        e.filter(et.is_in(["exposure", *_PLAIN_TYPES])).join(exposure, on="user_id")
        .group_by("user_id")
        .agg(
            arm=pl.col("arm").first(), multi=pl.col("multi").first(),
            n_buy=((et == "purchase") & after).sum(), rev=total("purchase", after),
            n_clk=((et == "click") & after).sum(), clk=total("click", after), imp=total("impression", after),
            pre_buy=((et == "purchase") & before).sum(), pre_rev=total("purchase", before),
            pre_clk=total("click", before),
        )
        .collect()
    )
    exposed, multiple = per_user.height, int(per_user["multi"].sum())
    u = per_user.filter(~pl.col("multi"))
    defs = {  # metric: (events, x, y or None, c, shifted?)
        "conversion": ("n_buy", (pl.col("n_buy") > 0).cast(pl.Float64), None, (pl.col("pre_buy") > 0).cast(pl.Float64), False),
        "revenue": ("n_buy", pl.col("rev"), None, pl.col("pre_rev"), True),
        "ctr": ("n_clk", pl.col("clk"), pl.col("imp"), pl.col("pre_clk"), True),
    }
    sums: dict[str, list[Any]] = {}
    for name, (n, x, y, c, shifted) in defs.items():
        frame = u.select(pl.col("arm"), pl.col(n).cast(pl.Float64).alias("n"), x.alias("x"),
                         (y if y is not None else pl.lit(0.0)).alias("y"), c.alias("c"))
        kx = float(frame["x"].mean()) if shifted else 0.0  # type: ignore[arg-type]
        ky = float(frame["y"].mean()) if y is not None else 0.0  # type: ignore[arg-type]
        kc = float(frame["c"].mean())  # type: ignore[arg-type]
        dx, dy, dc = pl.col("x") - kx, pl.col("y") - ky, pl.col("c") - kc
        agg = frame.group_by("arm").agg(
            users=pl.len(), events=pl.col("n").sum(), sx=dx.sum(), sx2=(dx * dx).sum(), sy=dy.sum(),
            sy2=(dy * dy).sum(), sxy=(dx * dy).sum(), sc=dc.sum(), sc2=(dc * dc).sum(), sxc=(dx * dc).sum(),
        ).sort("arm")
        sums[name] = [
            MetricSums(r["arm"], int(r["users"]), round(r["events"]), r["sx"], r["sx2"], r["sy"], r["sy2"],
                       r["sxy"], r["sc"], r["sc2"], r["sxc"], kx, ky, kc)
            for r in agg.iter_rows(named=True)
        ]
    specs = [MetricSpec(m["name"], m["kind"], primary=bool(m.get("primary"))) for m in METRICS]
    rows = analyze_metrics(specs, sums, control="control")
    frame_out = results_frame(experiment_id, rows, srm_test([s.users for s in sums["conversion"]], [0.5, 0.5]))
    return frame_out, (exposed, multiple)


def bench_monitor(n_events: int) -> dict[str, float]:
    from battleground.experiment.events import events_frame, open_event_store

    with tempfile.TemporaryDirectory() as tmp:
        settings, exp_id, events = _load(Path(tmp) / ".battleground", n_events)
        store = open_event_store(settings)
        t_mon, res_mon = best_of(lambda: monitor_result(settings, exp_id))
        # pandas on the events as the store holds them (text ids and types, read back once, untimed) …
        stored = events_frame(store, exp_id).drop(columns=["event_id", "experiment_id", "covariate"])
        stored = stored.rename(columns={"ts": "timestamp"})
        t_pd, res_pd = best_of(lambda: pandas_result(stored, exp_id), repeat=2)
        # … and on the generator's own frame (int64 user ids, categorical types: pandas at its fastest).
        t_fast, res_fast = best_of(lambda: pandas_result(events, exp_id), repeat=2)
        # Issue 12: the plain sums of before behind the same Monitor, and polars doing the full scan's
        # work (int64 ids, text types; converted once, untimed).
        t_plain, res_plain = best_of(lambda: plain_result(settings, exp_id))
        import polars as pl

        frame_pl = pl.from_pandas(events.assign(variant=events["variant"].astype(str),
                                                event_type=events["event_type"].astype(str)))
        t_pl, (res_pl, counts_pl) = best_of(lambda: polars_result(frame_pl, exp_id), repeat=2)
        found = _full_sums(settings, exp_id)
    cols = ["users", "events", "value", "abs_lift", "abs_ci_lower", "p_value", "rel_ci_lower", "rel_ci_upper",
            "p_value_adjusted", "srm_p_value"]

    def same(a: Any) -> bool:
        return bool(np.allclose(res_mon[cols].to_numpy(float), a[cols].to_numpy(float), equal_nan=True, rtol=1e-9))

    print(
        f"Monitor.get_abtest_result over {n_events:,} events on DuckDB (3 metrics: conversion, revenue, "
        f"CTR by the delta method; Welch, Holm, SRM; "
        f"one scan for all metrics): {t_mon:.3f} s end to end "
        f"(target <= 1.5 s)\n  pandas on the stored events (text ids): {t_pd:.3f} s, ratio "
        f"{t_pd / t_mon:.1f}x (target >= 3x), same numbers: {same(res_pd)}\n  pandas on int64 ids and "
        f"categoricals: {t_fast:.3f} s, ratio {t_fast / t_mon:.1f}x, same numbers: {same(res_fast)}"
    )
    print(
        f"issue 12: the same call with first-exposure filtering, the multiple-exposure check and CUPED "
        f"covariates (14-day lookback) in the scan, shifted sums: {t_mon:.3f} s\n  plain sums of before "
        f"(same Monitor, no exposure join): {t_plain:.3f} s, ratio {t_mon / t_plain:.2f}x (target <= 1.2x), "
        f"same numbers: {same(res_plain)}\n  polars doing the full computation on the in-memory events: "
        f"{t_pl:.3f} s, ratio polars/battleground {t_pl / t_mon:.2f}x (target > 1), same numbers: "
        f"{same(res_pl)}, same exposure check: {counts_pl == (found.exposed_users, found.multiple_exposure_users)}"
    )
    return {"monitor_s": t_mon, "pandas_s": t_pd, "pandas_fast_s": t_fast, "plain_s": t_plain, "polars_s": t_pl}


def _full_sums(settings: Any, experiment_id: int) -> Any:
    from battleground.experiment.monitoring import Monitor

    monitor = Monitor(client=settings).put_experiment_id(experiment_id=experiment_id)
    return monitor.backend.experiment_sums(monitor.experiment(), None, None)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------
# 3. offline A/A re-splits (issue 17)
# ---------------------------------------------------------------------------------------------------


def _loop_aa(y: np.ndarray, resplits: int, share: float = 0.5, alpha: float = 0.05, seed: int = 0) -> float:
    """The baseline: one re-split at a time, Welch's z with numpy on the masked values."""
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(resplits):
        t = rng.random(y.size) < share
        a, b = y[t], y[~t]
        z = (a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        hits += int(2 * ndtr(-abs(z)) < alpha)
    return hits / resplits


def bench_aa(n_users: int, resplits: int, n_events: int) -> dict[str, float]:
    from battleground.experiment.monitoring import offline_aa
    from battleground.stats import aa_resplits

    rng = np.random.default_rng(17)
    revenue = np.where(rng.random(n_users) < 0.1, rng.lognormal(3.0, 1.0, n_users), 0.0)
    imps = rng.poisson(8, n_users) + 1.0
    clicks = rng.binomial(imps.astype(int), 0.05).astype(float)
    t_mean, r_mean = best_of(lambda: aa_resplits(revenue, resplits=resplits, seed=0), repeat=1)
    t_ratio, r_ratio = best_of(lambda: aa_resplits(clicks, denominator=imps, kind="ratio", resplits=resplits,
                                                   seed=0), repeat=1)
    part = max(resplits // 10, 1)
    t_loop, rate_loop = best_of(lambda: _loop_aa(revenue, part), repeat=1)
    t_loop *= resplits / part
    print(f"offline A/A, {resplits:,} re-splits of {n_users:,} users (vectorised over re-splits): revenue mean "
          f"{t_mean:.2f} s (false positives {r_mean.false_positive_rate:.3f}), CTR ratio {t_ratio:.2f} s "
          f"({r_ratio.false_positive_rate:.3f}); target <= 10 s\n  a Python loop over re-splits (numpy per "
          f"re-split, {part} timed and scaled): {t_loop:.2f} s, ratio {t_loop / t_mean:.1f}x "
          f"(its rate over {part}: {rate_loop:.3f})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings, exp_id, _ = _load(Path(tmp) / ".battleground", n_events)
        t_e2e, found = best_of(lambda: offline_aa(settings, exp_id, resplits=resplits, seed=0), repeat=1)
    print(f"  offline_aa end to end (per-user query on DuckDB over {n_events:,} events, {found.users:,} users, "
          f"3 metrics x {resplits:,} re-splits): {t_e2e:.2f} s; rates "
          + ", ".join(f"{m.metric} {m.false_positive_rate:.3f}" for m in found.metrics), flush=True)
    return {"aa_mean_s": t_mean, "aa_ratio_s": t_ratio, "aa_loop_s": t_loop, "aa_e2e_s": t_e2e}


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n_events = int(os.environ.get("BATTLEGROUND_BENCH_EVENTS", 200_000 if quick else 10_000_000))
    print(f"load average: {os.getloadavg()[0]:.2f}", flush=True)
    if "aa" not in argv:
        bench_monitor(n_events)
        bench_sums(20 if quick else 100, 10)
    bench_aa(100_000 if quick else 1_000_000, 1000, 1_000_000 if quick else n_events)


if __name__ == "__main__":
    main(sys.argv[1:])
