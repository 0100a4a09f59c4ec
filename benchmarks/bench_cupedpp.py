"""CUPED++ benchmark (issue 17): what the regression adjustment with several covariates costs, and the
full analysis on 10M events.

On the experiment of ``bench_abtest`` (N events, one exposure per user) with the metrics of
:data:`ANALYSIS_METRICS` (conversion, revenue winsorised at its 99.9th percentile, CTR) plus one numeric
attribute event per user ("age", logged at exposure), so that the regression has 5 covariates (the 3
metrics' pre-periods, age and its missing flag). Same run:

1. the one metric-sums scan with the CUPED++ cross sums (``EventStore.experiment_sums(...,
   attributes=["age"])``) against the same scan without them (the baseline), on DuckDB;
2. ``Monitor.result`` end to end with ``regression_adjustment`` declared (the full analysis: every
   metric, winsorisation, CUPED, CUPED++, SRM, data-quality checks, power) against the same call without
   the declaration (the baseline); target: ratio about 1.0-1.2x, and <= 2.5 s on 10M events on a quiet
   machine;
3. the statistics alone (``cupedpp_comparisons`` for the 2 non-ratio metrics from the sums).

Run: ``PYTHONPATH=src:. python benchmarks/bench_cupedpp.py`` (10M events) or ``… --quick`` (1M events).
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

# The metrics of the full analysis; add more here (e.g. quantile metrics) and every part measures them.
ANALYSIS_METRICS: list[dict[str, Any]] = [
    {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
    {"name": "revenue", "kind": "mean", "numerator": "purchase", "cap_quantile": 0.999},
    {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"},
]
ATTRIBUTES = ["age"]


def main(argv: list[str]) -> None:
    import pandas as pd

    from battleground.experiment._cupedpp import cupedpp_comparisons
    from battleground.experiment._metric_sums import metric_query
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.register import Registry
    from benchmarks.bench_abtest import END, START, _load

    quick = "--quick" in argv
    n_events = int(os.environ.get("BATTLEGROUND_BENCH_EVENTS", 1_000_000 if quick else 10_000_000))
    print(f"load average: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {time.strftime('%H:%M:%S')}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings, exp_id, events = _load(Path(tmp) / ".battleground", n_events, ANALYSIS_METRICS)
        store = open_event_store(settings)
        exposed = events[events["event_type"] == "exposure"]
        rng = np.random.default_rng(3)
        ingest(store, pd.DataFrame({
            "event_id": [f"age-{u}" for u in exposed["user_id"]], "experiment": exp_id,
            "variant": exposed["variant"].astype(str).to_numpy(), "user_id": exposed["user_id"].to_numpy(),
            "event_type": "age", "timestamp": exposed["timestamp"].to_numpy(),
            "value": rng.integers(18, 80, len(exposed)).astype(float), "covariate": None}))
        del events, exposed
        registry = Registry(settings.registry_url)
        rec = registry.get(exp_id)
        defs = [metric_query(m) for m in rec.metrics]
        variants = rec.variant_names
        t_plain, _ = best_of(lambda: store.experiment_sums(exp_id, defs, variants=variants))
        t_one, found = best_of(lambda: store.experiment_sums(exp_id, defs, variants=variants, attributes=ATTRIBUTES))
        arms = found.covariates
        kinds = [(m.name, m.kind) for m in rec.metrics]
        t_stats, compared = best_of(lambda: cupedpp_comparisons(kinds, arms, control=variants[0]))
        print(f"{n_events:,} events, {arms[0].users + arms[1].users:,} users, metrics "
              f"{', '.join(m['name'] + (' (capped)' if m.get('cap_quantile') else '') for m in ANALYSIS_METRICS)}; "
              f"{len(arms[0].covariates)} covariates ({', '.join(arms[0].covariates)})\n"
              f"  metric-sums scan with the CUPED++ sums: {t_one:.3f} s; without, same run: {t_plain:.3f} s "
              f"(ratio {t_one / t_plain:.2f}x)\n  statistics from the sums ({len(compared)} comparisons): "
              f"{1000 * t_stats:.2f} ms", flush=True)

        def monitor() -> Any:
            return Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result(START, END)

        t_without, _ = best_of(monitor)
        registry.update(exp_id, metadata={"regression_adjustment": {"attributes": ATTRIBUTES}})
        t_with, res = best_of(monitor)
        assert res.has_cupedpp and res.capping
        print(f"  Monitor.result, full analysis with CUPED++ and winsorisation: {t_with:.3f} s "
              f"(target <= 2.5 s on 10M events, quiet machine); without CUPED++, same run: {t_without:.3f} s "
              f"(ratio {t_with / t_without:.2f}x, target 1.0-1.2x)", flush=True)
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main(sys.argv[1:])
