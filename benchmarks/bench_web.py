"""Dashboard server time, in process through the ASGI app (Starlette's TestClient, no network).

A home with 100 running experiments × 10 metrics (6 proportions, 4 means; 2 variants, 7 days of events)
is seeded once; then, per page, the first request (cold: the list's summary cache is empty), a
warm-up and ``n`` timed requests (median wall and CPU time):

* the experiment page (results table, decision, daily charts of all 10 metrics): target ≤ 150 ms;
* the experiment list (status, users, SRM and end-condition badges of all 100): target ≤ 100 ms;
* the results CSV download;
* baseline measured in the same run: the sign-in page (the same template machinery, no data), so the
  ratio says how much the data costs beyond rendering a page at all.

``--quick`` (or ``BATTLEGROUND_BENCH_QUICK=1``): 20 experiments and 3 timed requests.
Run: ``PYTHONPATH=src:. python -m benchmarks web``.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

START = dt.datetime(2024, 1, 1)
KINDS = ["proportion"] * 6 + ["mean"] * 4


def _seed(home: Path, n_experiments: int, users: int) -> tuple[Any, list[int]]:
    import numpy as np
    import pandas as pd

    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home)})
    registry = Registry(settings.registry_url)
    store = open_event_store(settings)
    metrics = [{"name": f"m{i}", "kind": k, "numerator": f"ev{i}", "primary": i == 0} for i, k in enumerate(KINDS)]
    rng = np.random.default_rng(13)
    ids = []
    for e in range(n_experiments):
        name = f"bench-{e:03d}"
        rec = registry.create_experiment(
            name, variants={"control": 0.5, "treatment": 0.5}, metrics=metrics, owner=f"owner{e % 5}",
            start_at=START, end_conditions={"target_sample_size": users * 2},
        )
        registry.start(rec.id)
        ids.append(rec.id)
        frames = []
        for variant in ("control", "treatment"):
            uid = np.array([f"{variant[0]}{u}" for u in range(users)])
            at = pd.Timestamp(START) + pd.to_timedelta(rng.integers(0, 7 * 86400, users), unit="s")
            frames.append(pd.DataFrame({"event_id": [f"{name}-x-{u}" for u in uid], "experiment": name,
                                        "variant": variant, "user_id": uid, "event_type": "exposure",
                                        "timestamp": at, "value": None}))
            for i in range(len(KINDS)):
                hit = rng.random(users) < (0.1 + 0.01 * i + (0.01 if variant == "treatment" else 0))
                frames.append(pd.DataFrame({
                    "event_id": [f"{name}-{i}-{u}" for u in uid[hit]], "experiment": name, "variant": variant,
                    "user_id": uid[hit], "event_type": f"ev{i}", "timestamp": at[hit] + pd.Timedelta(minutes=5),
                    "value": rng.gamma(2.0, 10.0, int(hit.sum())).round(2),
                }))
        ingest(store, pd.concat(frames, ignore_index=True))
    return settings, ids


def _time(client: Any, url: str, n: int) -> tuple[float, float, float]:
    """(first GET's wall ms, then the median wall ms and median CPU ms of ``n`` GETs after a warm-up)."""
    t = time.perf_counter()
    client.get(url, headers={"accept": "text/html"}).raise_for_status()
    first = (time.perf_counter() - t) * 1000
    client.get(url, headers={"accept": "text/html"}).raise_for_status()
    wall, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        client.get(url, headers={"accept": "text/html"}).raise_for_status()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return first, statistics.median(wall), statistics.median(cpu)


def main(argv: list[str]) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n_exp, n = (20, 3) if quick else (100, 15)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        t = time.perf_counter()
        settings, ids = _seed(Path(tmp) / ".battleground", n_exp, users=300)
        print(f"seeded {n_exp} experiments × {len(KINDS)} metrics in {time.perf_counter() - t:.1f} s "
              f"(load average {os.getloadavg()[0]:.1f})")
        app = create_app(settings)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            mid = ids[len(ids) // 2]
            rows = [
                ("sign-in page (baseline)", "/signin", None),
                ("experiment page", f"/experiments/{mid}", 150.0),
                ("experiment page, daily view", f"/experiments/{mid}?view=daily", 150.0),
                ("experiment list", "/", 100.0),
                ("results CSV", f"/experiments/{mid}/results.csv", None),
            ]
            base = None
            print(f"{'page':32} {'first ms':>9} {'wall ms':>9} {'cpu ms':>9} {'× baseline':>11}  target (on wall)")
            for label, url, target in rows:
                first, wall, cpu = _time(client, url, n)
                base = base or wall
                verdict = "" if target is None else f"≤ {target:.0f} ms: {'met' if wall <= target else 'NOT met'}"
                print(f"{label:32} {first:9.1f} {wall:9.1f} {cpu:9.1f} {wall / base:11.1f}  {verdict}", flush=True)
