"""CUPED++ benchmark (issue 17): what the regression adjustment with several covariates costs.

On the experiment of ``bench_abtest`` (N events, 3 metrics: conversion, revenue, CTR; one exposure per
user) plus one numeric attribute event per user ("age", logged at exposure), so that the regression has
5 covariates (the 3 metrics' pre-periods, age and its missing flag). Same run:

1. the CUPED++ scan (``EventStore.covariate_sums``) against the plain metric-sums scan
   (``EventStore.experiment_sums``, the baseline: the same per-user step), both on DuckDB;
2. ``Monitor.result`` end to end with ``regression_adjustment`` declared against the same call without
   it (the baseline);
3. the statistics alone (``regression_adjusted_test`` for the 2 non-ratio metrics from the sums).

Run: ``PYTHONPATH=src:. python benchmarks/bench_cupedpp.py`` (10M events) or ``… --quick`` (1M events).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import best_of


def main(argv: list[str]) -> None:
    import pandas as pd

    from battleground.experiment._cupedpp import cupedpp_comparisons
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.register import Registry
    from benchmarks.bench_abtest import END, START, _load

    quick = "--quick" in argv
    n_events = int(os.environ.get("BATTLEGROUND_BENCH_EVENTS", 1_000_000 if quick else 10_000_000))
    print(f"load average: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings, exp_id, events = _load(Path(tmp) / ".battleground", n_events)
        store = open_event_store(settings)
        exposed = events[events["event_type"] == "exposure"]
        rng = np.random.default_rng(3)
        ingest(store, pd.DataFrame({
            "event_id": [f"age-{u}" for u in exposed["user_id"]], "experiment": exp_id,
            "variant": exposed["variant"].astype(str).to_numpy(), "user_id": exposed["user_id"].to_numpy(),
            "event_type": "age", "timestamp": exposed["timestamp"].to_numpy(),
            "value": rng.integers(18, 80, len(exposed)).astype(float), "covariate": None}))
        registry = Registry(settings.registry_url)
        rec = registry.get(exp_id)
        from battleground.experiment._metric_sums import metric_query

        defs = [metric_query(m) for m in rec.metrics]
        variants = rec.variant_names
        t_plain, _ = best_of(lambda: store.experiment_sums(exp_id, defs, variants=variants))
        t_cov, arms = best_of(lambda: store.covariate_sums(exp_id, defs, ["age"], variants=variants))
        kinds = [(m.name, m.kind) for m in rec.metrics]
        t_stats, found = best_of(lambda: cupedpp_comparisons(kinds, arms, control=variants[0]))
        print(f"{n_events:,} events, {len(exposed):,} users, {len(arms[0].covariates)} covariates "
              f"({', '.join(arms[0].covariates)})\n"
              f"  CUPED++ scan (covariate_sums): {t_cov:.3f} s; plain metric-sums scan, same run: {t_plain:.3f} s "
              f"(ratio {t_cov / t_plain:.2f}x)\n  statistics from the sums ({len(found)} comparisons): "
              f"{1000 * t_stats:.2f} ms", flush=True)

        def monitor() -> object:
            return Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(START, END)

        t_without, _ = best_of(monitor)
        registry.update(exp_id, metadata={"regression_adjustment": {"attributes": ["age"]}})
        t_with, res = best_of(monitor)
        assert res.has_cupedpp  # type: ignore[attr-defined]
        print(f"  Monitor.result with regression_adjustment: {t_with:.3f} s; without, same run: {t_without:.3f} s "
              f"(ratio {t_with / t_without:.2f}x)", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; wall {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main(sys.argv[1:])
