"""Model lifecycle benchmarks (issue 4).

1. Trainer overhead over raw LightGBM, same params, 200k x 30 (target <= 5 %).
2. Optuna tuning, 12 single-threaded LightGBM trials (no pruning, so both sides do the same work):
   2 worker processes vs 1, spawned inside the call and from a pre-warmed ``TuningWorkers`` pool
   (target >= 1.7x).
3. Churn data generation for 1M characters and feature building at one cut-off.

``python -m benchmarks model`` (full) or ``BENCH_MODEL_QUICK=1`` / ``--quick`` (small sizes).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path


def _median_time(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_overhead(n_rows: int, n_cols: int, repeat: int) -> None:
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from battleground.model.train import Trainer

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(n_rows, n_cols)), columns=[f"f{i}" for i in range(n_cols)])
    y = (X["f0"] + 0.5 * X["f1"] ** 2 + rng.normal(size=n_rows) > 0.8).astype(int)
    params = {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1}
    raw_times, ours_times = [], []
    for _ in range(repeat):  # interleaved so machine load hits both alike
        raw_times.append(_median_time(lambda: lgb.LGBMClassifier(**params, n_jobs=1, random_state=0,
                                                                 verbose=-1).fit(X, y), 1))
        ours_times.append(_median_time(lambda: Trainer("lightgbm", params=params, class_weight=None,
                                                       n_jobs=1).fit(X, y), 1))
    raw, ours = statistics.median(raw_times), statistics.median(ours_times)
    print(f"trainer overhead ({n_rows:,} x {n_cols}, median of {repeat}): raw LightGBM {raw:.3f} s, "
          f"Trainer {ours:.3f} s, overhead {100 * (ours / raw - 1):+.1f} % (target <= 5 %)")


def bench_tuning(n_rows: int, n_trials: int) -> None:
    """1 worker vs 2: spawned per call (cold) and a pre-warmed :class:`TuningWorkers` pool (warm).

    Each trial is single-threaded LightGBM (n_jobs=1) with a fixed 400 trees, no pruning (so both
    sides do the same work), on a journal file. The pool is started outside the timing, as a
    long-lived tuning service would; its start-up is printed on its own.
    """
    import numpy as np
    import pandas as pd

    from battleground.model.train import TuningWorkers, tune

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(n_rows, 30)), columns=[f"f{i}" for i in range(30)])
    y = (X["f0"] - X["f2"] * X["f3"] + rng.normal(size=n_rows) > 0.5).astype(int)
    n = n_rows * 3 // 4
    space = {"lightgbm": {"n_estimators": 400, "learning_rate": [0.02, 0.2, "log"], "num_leaves": [15, 63]}}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        def run(workers: int, pool: TuningWorkers | None, tag: str) -> float:
            t = time.perf_counter()
            r = tune("lightgbm", X.iloc[:n], y.iloc[:n], X.iloc[n:], y.iloc[n:], search_space=space,
                     n_trials=n_trials, n_workers=workers, storage=str(Path(tmp) / f"{tag}.journal"),
                     study_name=f"bench-{tag}", workers=pool, prune=False)
            secs = time.perf_counter() - t
            print(f"tuning {n_trials} trials ({n_rows:,} rows), {tag}: {secs:.2f} s "
                  f"({r.n_complete} complete, best AUC {r.best_value:.4f})", flush=True)
            return secs

        one = run(1, None, "1 worker")
        cold = run(2, None, "2 workers spawned in the call")
        t = time.perf_counter()
        with TuningWorkers(2).start() as pool:
            start_up = time.perf_counter() - t
            warm = run(2, pool, "2 workers, pre-warmed pool")
    print(f"pool start-up (outside the timing): {start_up:.2f} s")
    print(f"tuning speed-up 2 workers vs 1: pre-warmed {one / warm:.2f}x, spawned per call {one / cold:.2f}x "
          f"(target >= 1.7x; {os.cpu_count()} CPUs visible, load average {load:.2f} before the runs)")


def bench_churn(n_characters: int) -> None:
    from battleground.datasets import build_churn_features, make_churn_tables

    t = time.perf_counter()
    tables = make_churn_tables(n_characters, seed=0)
    gen = time.perf_counter() - t
    rows = sum(len(v) for v in tables.values())
    t = time.perf_counter()
    feats = build_churn_features(tables, "2022-09-01")
    fb = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        from battleground.datasets import write_churn_tables

        t = time.perf_counter()
        write_churn_tables(tables, tmp, fmt="parquet")
        wr = time.perf_counter() - t
    print(f"churn generation {n_characters:,} characters ({rows:,} rows in 4 tables): {gen:.2f} s "
          f"({n_characters / gen / 1e3:.0f}k characters/s); Parquet write {wr:.2f} s")
    print(f"feature building at one cut-off: {len(feats):,} rows x {feats.shape[1]} columns in {fb:.2f} s "
          f"({len(feats) / fb / 1e3:.0f}k rows/s)")


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BENCH_MODEL_QUICK") == "1"
    if quick:
        bench_overhead(20_000, 30, 3)
        bench_tuning(4_000, 6)
        bench_churn(50_000)
    else:
        bench_overhead(200_000, 30, 3)
        bench_tuning(60_000, 12)
        bench_churn(1_000_000)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
