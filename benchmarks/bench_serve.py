"""Serving and pipeline benchmarks (loopback only).

1. 1-row latency over HTTP: ``battleground serve`` vs ``mlflow models serve --env-manager local`` on the
   same registered model, in the same run (targets: p50 <= 3 ms, >= 2x faster).
2. Bounded load: 8 concurrent clients for 60 s (10 s with ``--quick``), a champion swap half-way;
   errors, p50/p99 and throughput.
3. ``sub_churn_train_from_raw`` on 100k characters (5k with ``--quick``): time and peak RSS.

``--quick`` or ``BATTLEGROUND_BENCH_QUICK=1`` shrinks everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import free_port, percentile, wait_ready


def _latencies(url: str, payload: Any, n: int) -> list[float]:
    import httpx

    out = []
    with httpx.Client(timeout=10) as c:
        for _ in range(20):
            c.post(url, json=payload).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            c.post(url, json=payload).raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
    return out


def _peak_rss_during(func: Any) -> tuple[Any, float, float]:
    import psutil

    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    result = func()
    secs = time.perf_counter() - t
    done.set()
    th.join()
    return result, secs, peak[0] / 2**20


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n_train = 5_000 if quick else 100_000
    n_lat = 200 if quick else 1000
    load_s = 10.0 if quick else 60.0
    from battleground.pipelines.registry import run_pipeline
    from battleground.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    env = {**os.environ, "BATTLEGROUND_HOME": str(home)}
    settings = Settings.from_env(env)
    result, secs, peak = _peak_rss_during(lambda: run_pipeline("sub_churn_train_from_raw", settings,
                                                                params={"n_characters": n_train}))
    print(f"sub_churn_train_from_raw, {n_train} characters: {secs:.1f} s, peak RSS {peak:.0f} MiB")

    import pandas as pd

    frame = pd.read_parquet(result.outputs["features_test"]).drop(columns=["churned"]).head(64)
    records = json.loads(frame.to_json(orient="records"))
    ours_port, ml_port = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    ours = subprocess.Popen([str(bin_dir / "battleground"), "serve", "--port", str(ours_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ml = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/churn@champion",
                           "--env-manager", "local", "-p", str(ml_port), "-h", "127.0.0.1"],
                          env={**env, "MLFLOW_TRACKING_URI": settings.mlflow_uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{ours_port}/health")
        wait_ready(f"http://127.0.0.1:{ml_port}/health")
        a = _latencies(f"http://127.0.0.1:{ours_port}/predict", records[0], n_lat)
        b = _latencies(f"http://127.0.0.1:{ml_port}/invocations", {"dataframe_records": [records[0]]}, n_lat)
        print(f"1-row latency p50/p99 ms: ours {percentile(a, 50):.2f}/{percentile(a, 99):.2f}, "
              f"mlflow {percentile(b, 50):.2f}/{percentile(b, 99):.2f}; mlflow/ours p50 = {percentile(b, 50) / percentile(a, 50):.2f}x "
              "(targets: p50 <= 3 ms, >= 2x)")
    finally:
        ml.terminate()
        ml.wait(timeout=30)
    try:
        _load(ours_port, records, load_s, settings)
    finally:
        ours.terminate()
        ours.wait(timeout=30)


def _load(port: int, records: list[dict[str, Any]], seconds: float, settings: Any) -> None:
    import httpx

    from battleground.model.tracking import _mlflow

    stop = time.monotonic() + seconds
    versions: set[str] = set()

    def loop(i: int) -> tuple[list[float], int]:
        lat, failed = [], 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    r = c.post("/predict", json=records[i % len(records)])
                    ok = r.status_code == 200
                    if ok:
                        versions.add(r.json()["version"])
                except httpx.HTTPError:
                    ok = False
                lat.append((time.perf_counter() - t) * 1000)
                failed += not ok
        return lat, failed

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(loop, i) for i in range(8)]
        time.sleep(seconds / 2)
        client = _mlflow(settings).MlflowClient()
        mv = client.get_model_version_by_alias("churn", "champion")
        # through the champion gate (the server loads nothing else): a copy of the champion is a tie, so
        # it goes in as an audited override
        import pandas as pd

        from battleground.model.gate import champion_gate, register_candidate

        hold = pd.read_parquet(settings.home / "pipelines" / "base" / "04_feature" / "features_test.parquet")
        version = register_candidate(settings, f"runs:/{mv.run_id}/model", "churn", source="bench_serve")
        champion_gate(settings, "churn", version, hold.drop(columns=["churned", "char_id", "cutoff"], errors="ignore"),
                      hold["churned"], metric="roc_auc", threshold=0.5, source="bench_serve",
                      override="benchmark swap", n_boot=10)
        results = [f.result() for f in futures]
    lat = [x for r, _ in results for x in r]
    failed = sum(f for _, f in results)
    print(f"load: 8 clients x {seconds:.0f} s, {len(lat)} requests, {failed} failed, "
          f"{len(lat) / seconds:.0f} req/s, p50 {percentile(lat, 50):.2f} ms, p99 {percentile(lat, 99):.2f} ms, "
          f"versions served {sorted(versions)} (swap half-way)")


if __name__ == "__main__":
    main(sys.argv[1:])
