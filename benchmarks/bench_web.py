"""Dashboard server time, in process through the ASGI app (Starlette's TestClient, no network).

A home with 100 running experiments × 10 metrics (6 proportions, 4 means; 2 variants, 7 days of events)
is seeded once; then each code tree is measured on it in its own process, per page: the first request
(cold: nothing cached), a warm-up and ``n`` timed requests (median wall and CPU time), and requests that
each follow the ingest of one new event, into another experiment (the store's state changed, the page's
own events did not) or into the page's own experiment (its sums must be read again):

* the experiment page (results table, decision, daily charts of all 10 metrics): target ≤ 150 ms;
* the experiment list (status, users, SRM and end-condition badges, decision and lift of all 100):
  target ≤ 100 ms; measured first, so its first request is a server's cold start (target: well
  under 2 s, from one batched sums scan per metric set);
* the results CSV download;
* the sign-in page (the same template machinery, no data), so the ratio says how much the data costs
  beyond rendering a page at all.

Baseline in the same run: ``BATTLEGROUND_BENCH_WEB_BASELINE=/work/main/src`` (another ``src`` tree,
e.g. main's) is measured first on a copy of the seeded home, then this checkout's ``src`` on another.

``--quick`` (or ``BATTLEGROUND_BENCH_QUICK=1``): 20 experiments and 3 timed requests;
``BATTLEGROUND_BENCH_WEB_N``: the number of timed requests of a full run (default 15).
Run: ``PYTHONPATH=src:. python -m benchmarks web``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
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


def _ingest_one(settings: Any, i: int, experiment: str = "bench-000") -> None:
    """One new exposure in ``experiment``: the store's state changes."""
    from battleground.experiment.events import ingest, open_event_store

    ingest(open_event_store(settings), [{
        "event_id": f"bench-late-{os.getpid()}-{i}", "experiment": experiment, "variant": "control",
        "user_id": f"late-{os.getpid()}-{i}", "event_type": "exposure", "timestamp": START + dt.timedelta(hours=1),
    }])


def _after_ingest(client: Any, settings: Any, url: str, n: int, experiment: str = "bench-000") -> float:
    """Median wall ms of ``n`` GETs, each right after one new event was ingested into ``experiment``."""
    wall = []
    for i in range(n):
        _ingest_one(settings, int(time.time() * 1000) * 100 + i, experiment)
        t = time.perf_counter()
        client.get(url, headers={"accept": "text/html"}).raise_for_status()
        wall.append((time.perf_counter() - t) * 1000)
    return statistics.median(wall)


def _measure(home: str, n: int) -> dict[str, Any]:
    """Every page's figures on the seeded ``home``, with whatever ``battleground`` is importable."""
    from fastapi.testclient import TestClient

    from battleground.experiment.register import Registry
    from battleground.settings import Settings
    from battleground.web import create_app

    settings = Settings.from_env({"BATTLEGROUND_HOME": home})
    ids = [r.id for r in Registry(settings.registry_url).list()]
    mid = ids[len(ids) // 2]
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        # the list first: its first request is the cold start of a server (nothing cached, nothing
        # imported beyond the sign-in page's); the page's first request then finds the list's sums
        for label, url in [("sign-in page (baseline)", "/signin"), ("experiment list", "/"),
                           ("experiment page", f"/experiments/{mid}"),
                           ("experiment page, daily view", f"/experiments/{mid}?view=daily"),
                           ("results CSV", f"/experiments/{mid}/results.csv")]:
            out[label] = _time(client, url, n)
        out["experiment page after an ingest"] = _after_ingest(client, settings, f"/experiments/{mid}", max(2, n // 5))
        out["experiment page after an ingest into it"] = _after_ingest(
            client, settings, f"/experiments/{mid}", max(2, n // 5), f"bench-{len(ids) // 2:03d}")
        out["experiment list after an ingest"] = _after_ingest(client, settings, "/", 1)
    out["load_after"] = os.getloadavg()[0]
    return out


def _measure_cold_page(home: str) -> dict[str, Any]:
    """The experiment page as the first data page of a fresh server (after the sign-in page): its
    first request reads its sums and daily sums and imports what it needs."""
    from fastapi.testclient import TestClient

    from battleground.experiment.register import Registry
    from battleground.settings import Settings
    from battleground.web import create_app

    settings = Settings.from_env({"BATTLEGROUND_HOME": home})
    ids = [r.id for r in Registry(settings.registry_url).list()]
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        client.get("/signin").raise_for_status()
        first, wall, cpu = _time(client, f"/experiments/{ids[len(ids) // 2]}", 3)
    return {"experiment page, first page of a fresh server": [first, wall, cpu]}


TARGETS = {"experiment page": 150.0, "experiment page, daily view": 150.0, "experiment list": 100.0}


def _in_tree(src: Path, args: list[str]) -> str:
    """Run this module with ``args`` in a process that imports ``battleground`` from ``src``; its stdout."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{root}"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_web", *args],
                          env=env, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} with {src} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _run_tree(src: Path, home: str, n: int) -> dict[str, Any]:
    import json

    result: dict[str, Any] = json.loads(_in_tree(src, ["--measure", home, str(n)]).strip().splitlines()[-1])
    result.update(json.loads(_in_tree(src, ["--cold-page", home]).strip().splitlines()[-1]))
    return result


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n_exp, n = (20, 3) if quick else (100, int(os.environ.get("BATTLEGROUND_BENCH_WEB_N", "15")))
    here = Path(__file__).resolve().parent.parent / "src"
    baseline = os.environ.get("BATTLEGROUND_BENCH_WEB_BASELINE")
    trees = ([("baseline", Path(baseline))] if baseline else []) + [("this checkout", here)]
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        home = Path(tmp) / ".battleground"
        t = time.perf_counter()
        # seeded by the first tree: the oldest registry schema, which a newer tree migrates forward
        _in_tree(trees[0][1], ["--seed", str(home), str(n_exp)])
        print(f"seeded {n_exp} experiments × {len(KINDS)} metrics in {time.perf_counter() - t:.1f} s "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        results = {}
        for i, (name, src) in enumerate(trees):
            # each tree gets its own copy of the seeded home (a newer tree may migrate the registry)
            copy = Path(tmp) / f"tree{i}" / ".battleground"
            shutil.copytree(home, copy)
            results[name] = _run_tree(src, str(copy), n)
            r = results[name]
            print(f"\n{name}: {src} (load average {r['load_before']:.1f} → {r['load_after']:.1f})")
            print(f"{'page':34} {'first ms':>9} {'wall ms':>9} {'cpu ms':>9}  target (on wall)")
            for label, value in r.items():
                if label.startswith("load"):
                    continue
                first, wall, cpu = value if isinstance(value, list) else (math.nan, value, math.nan)
                target = TARGETS.get(label)
                verdict = "" if target is None else f"≤ {target:.0f} ms: {'met' if wall <= target else 'NOT met'}"
                print(f"{label:34} {first:9.1f} {wall:9.1f} {cpu:9.1f}  {verdict}", flush=True)
        if baseline:
            print("\nthis checkout against the baseline (median wall; first request for the cold rows):")
            for label, value in results["this checkout"].items():
                if label.startswith("load"):
                    continue
                base = results["baseline"][label]
                rows = [(label, value[1], base[1]), (f"{label}, first request", value[0], base[0])] if isinstance(
                    value, list) else [(label, value, base)]
                for name, mine, theirs in rows:
                    print(f"  {name:48} {theirs:9.1f} → {mine:9.1f} ms ({theirs / mine:5.1f}× faster)")


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) >= 4 and sys.argv[1] == "--measure":
        print(json.dumps(_measure(sys.argv[2], int(sys.argv[3]))))
    elif len(sys.argv) >= 3 and sys.argv[1] == "--cold-page":
        print(json.dumps(_measure_cold_page(sys.argv[2])))
    elif len(sys.argv) >= 4 and sys.argv[1] == "--seed":
        _seed(Path(sys.argv[2]), int(sys.argv[3]), users=300)
    else:
        main(sys.argv[1:])
