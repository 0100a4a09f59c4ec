"""The decision service under load (loopback): ``/decide`` with logging on, DuckDB and PostgreSQL, this
tree against the code before it (the baseline) in the same run.

The baseline is the code at ``BATTLEGROUND_BENCH_DECISIONS_BASELINE`` (default ``2d0f6f0``: main before
the fast serving stack), extracted with ``git archive`` and run in the same way; its HTTP server runs on
asyncio + h11, as it did before uvloop and httptools were dependencies (uvicorn's "auto" would now pick
them up for it too). Runs alternate (baseline, current, baseline, current …) so both see the same load.

A deployed LinTS (11 arms, 8 features) in a bandit-vs-control experiment; every call is logged
(group commit) before it is answered; each client serves 200 units in turn (the first decision of each
also writes its exposure). Two traffic shapes:

* **steady**: 8 concurrent clients, each sends its next decision as soon as it has the answer;
* **sparse**: one client, a decision every 0.6 s.

Two ways of calling:

* **service**: ``DecisionService.decide`` and the wait for the commit, in a subprocess, no HTTP: what
  deciding and logging cost;
* **http**: ``battleground serve-decisions`` over loopback, driven by ``benchmarks/_httpload.py`` in a
  separate process (keep-alive connections on one asyncio loop, prebuilt requests: no client threads
  competing with the server for the GIL), with ``GET /health`` on the same server just before as the
  HTTP floor, and the server's CPU time per request (all its threads; robust to the machine's load).

Printed per case: throughput, p50/p99 latency (ms), and the log check (stored = acknowledged, no
duplicate). Target: p99 <= 10 ms.

``--quick`` or ``BATTLEGROUND_BENCH_QUICK=1``: 150 decisions per steady client (2,000 otherwise), 20
sparse ones (60 otherwise). ``--http-only`` / ``--service-only`` (``python -m benchmarks.bench_decisions
--quick --http-only``) skip the other way of calling.
PostgreSQL: ``BATTLEGROUND_BENCH_POSTGRES_URL`` (default the local server; fresh databases are
created and dropped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import Server, percentile

TOKEN = "bench-decisions-token"
N_CLIENTS = 8
SPARSE_PAUSE = 0.6
ROOT = Path(__file__).resolve().parents[1]


def _seed(env: dict[str, str]) -> None:
    import numpy as np

    from battleground.bandit import LinTS
    from battleground.decisions import PolicySpec, deploy_policy
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    settings = Settings.from_env(env)
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment("bench-bvc", variants={"control": 0.5, "bandit": 0.5},
                                     metrics=[{"name": "reward", "kind": "mean", "numerator": "reward"}])
    registry.start(exp.id)
    rng = np.random.default_rng(0)
    x = rng.random((2000, 8))
    a = rng.integers(11, size=2000)
    policy = LinTS(n_arms=11, variance_scale=0.025, reg=30.0, random_state=0).fit(x, a, x[:, 0] * (a == 3))
    deploy_policy(settings, PolicySpec("bench", n_arms=11, n_features=8, experiment="bench-bvc"), policy)


def _drive(call: Callable[[int, int], None], clients: int, per_client: int, pause: float) -> tuple[float, list[float]]:
    """``clients`` threads, each ``call(client, i)`` for ``per_client`` + 5 warm-up calls (``pause`` s
    between calls); returns calls per second and the latencies (ms) after the warm-up."""
    def run(c: int) -> list[float]:
        out = []
        for i in range(per_client + 5):
            t = time.perf_counter()
            call(c, i)
            if i >= 5:
                out.append((time.perf_counter() - t) * 1000)
            if pause:
                time.sleep(pause)
        return out

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = [x for part in pool.map(run, range(clients)) for x in part]
    return clients * (per_client + 5) / (time.perf_counter() - t), lat


def _shape(shape: str, per_client: int, sparse: int) -> tuple[int, int, float]:
    return (N_CLIENTS, per_client, 0.0) if shape == "steady" else (1, sparse, SPARSE_PAUSE)


def service_main(argv: list[str]) -> None:
    """In the subprocess (``python -c``, PYTHONPATH = the code under test): the service case."""
    import numpy as np

    from battleground.decisions import DecisionService
    from battleground.settings import Settings

    env, shape, per_client, sparse = json.loads(argv[0]), argv[1], int(argv[2]), int(argv[3])
    _seed(env)
    svc = DecisionService(Settings.from_env(env), updaters=False)
    rngs = [np.random.default_rng(c) for c in range(N_CLIENTS)]

    def call(c: int, i: int) -> None:
        _row, fut = svc.decide(f"c{c}-u{i % 200}", "bench", rngs[c].random(8).tolist(), f"bench-{shape}-{c}-{i}")
        fut.result()

    clients, n, pause = _shape(shape, per_client, sparse)
    rate, lat = _drive(call, clients, n, pause)
    svc.close()
    print(json.dumps({"rate": rate, "lat": lat, "sent": clients * (n + 5)}))


# the server as main served it before uvloop/httptools were dependencies: uvicorn's "auto" picked asyncio + h11
_PLAIN_STACK = ("import sys, uvicorn.config as c; c.LOOP_FACTORIES['auto'] = c.LOOP_FACTORIES['asyncio']; "
                "c.HTTP_PROTOCOLS['auto'] = c.HTTP_PROTOCOLS['h11']; sys.argv[0] = 'battleground'; "
                "from battleground.cli import main; main()")


def _http(env: dict[str, str], shape: str, per_client: int, sparse: int, home: Path, plain: bool) -> dict[str, Any]:
    import numpy as np

    from benchmarks._httpload import WARMUP, load, request

    # seeded by the code tree under test (its PYTHONPATH), so the baseline server finds a home of its schema
    subprocess.run([sys.executable, "-c", "import json, sys; from benchmarks.bench_decisions import _seed; "
                    "_seed(json.loads(sys.argv[1]))", json.dumps(env)],
                   env={**os.environ, **env}, check=True, timeout=600)
    clients, n, pause = _shape(shape, per_client, sparse)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    rngs = [np.random.default_rng(c) for c in range(clients)]
    decide = [[request("POST", "/decide", headers=headers, body={
        "unit_id": f"c{c}-u{i % 200}", "policy": "bench", "context": rngs[c].random(8).tolist(),
        "decision_id": f"bench-{shape}-{c}-{i}"}) for i in range(n + WARMUP)] for c in range(clients)]
    # one decision first, untimed: the server loads the policy and warms its imports on the first call
    warm = request("POST", "/decide", headers=headers, body={"unit_id": "warm", "policy": "bench",
                   "context": [0.5] * 8, "decision_id": f"bench-{shape}-warm"})
    phases = [("warm", [[warm] * (WARMUP + 1)]), ("decide", decide)]
    if shape == "steady":  # the HTTP floor, on the same server just before
        phases.insert(1, ("health", [[request("GET", "/health")] * (n + WARMUP) for _ in range(clients)]))
    launch = ("-c", _PLAIN_STACK) if plain else ("-m", "battleground")
    out: dict[str, dict[str, Any]] = {}
    with Server(["serve-decisions", "--no-updater"], env, health="/health", log=home / "server.log",
                launch=launch) as server:
        import psutil

        proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        for name, conns in phases:  # the server's CPU (all its threads) per request: robust to the load
            before = proc.cpu_times()
            out.update(load(server.port, [(name, conns)], pause=pause))
            after = proc.cpu_times()
            used = after.user + after.system - before.user - before.system
            out[name]["cpu_ms"] = used * 1000 / sum(map(len, conns))
    for name, res in out.items():
        if set(res["status"]) != {"200"}:
            raise RuntimeError(f"{name}: statuses {res['status']} (see {home / 'server.log'})")
    floor = out.get("health", {"rate": float("nan"), "lat": [], "cpu_ms": float("nan")})
    return {"rate": out["decide"]["rate"], "lat": out["decide"]["lat"], "sent": clients * (n + WARMUP) + 1,
            "cpu_ms": out["decide"]["cpu_ms"], "floor_rate": floor["rate"], "floor": floor["lat"],
            "floor_cpu_ms": floor["cpu_ms"]}


def _check(env: dict[str, str]) -> tuple[int, int]:
    from battleground.settings import Settings
    from battleground.storage.decisions import open_decision_log

    n, distinct, _ = open_decision_log(Settings.from_env(env)).count("bench")
    return n, n - distinct


def _baseline_src(ref: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="bench_decisions_baseline_"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


def _case(code: str, src: Path, mode: str, backend: str, shape: str, per_client: int, sparse: int,
          base: dict[str, str], admin: str, home: Path) -> dict[str, Any]:
    env = {**base, "BATTLEGROUND_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    db = None
    if backend == "postgresql":
        import psycopg

        db = f"bench_decisions_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        env["BATTLEGROUND_DATABASE_URL"] = admin.rsplit("/", 1)[0] + f"/{db}"
    try:
        if mode == "service":
            proc = subprocess.run(
                [sys.executable, "-c", "import sys; from benchmarks.bench_decisions import service_main; "
                 "service_main(sys.argv[1:])", json.dumps(env), shape, str(per_client), str(sparse)],
                env={**os.environ, **env}, capture_output=True, text=True, timeout=1800, check=False)
            if proc.returncode:
                raise RuntimeError(f"{code} {backend} {shape} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            res = _http(env, shape, per_client, sparse, home, plain=code == "baseline")
        res["logged"], res["duplicates"] = _check(env)
    finally:
        if db is not None:
            import psycopg

            from battleground.storage._db import dispose_all

            dispose_all()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    lat = res["lat"]
    floor = ""
    if res.get("floor"):
        floor = (f" | GET /health {res['floor_rate']:,.0f}/s, p50 {percentile(res['floor'], 50):.1f} ms, "
                 f"p99 {percentile(res['floor'], 99):.1f} ms, server CPU {res['floor_cpu_ms']:.2f} ms")
    if "cpu_ms" in res:
        floor = f", server CPU {res['cpu_ms']:.2f} ms/decision" + floor
    print(f"{mode:>7} {backend:>10} {shape:>6} {code:>8}: {res['rate']:,.0f}/s, p50 {percentile(lat, 50):6.2f} ms, "
          f"p99 {percentile(lat, 99):6.2f} ms{floor} | logged {res['logged']:,} of {res['sent']:,}, "
          f"{res['duplicates']} duplicates | load {os.getloadavg()[0]:.2f}", flush=True)
    return {"code": code, "mode": mode, "backend": backend, "shape": shape, "p50": percentile(lat, 50),
            "p99": percentile(lat, 99), "rate": res["rate"], "cpu_ms": res.get("cpu_ms"),
            "floor_p99": percentile(res.get("floor", []), 99)}


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    per_client, sparse = (150, 20) if quick else (2000, 60)
    only = [m for m in ("service", "http") if f"--{m}-only" in argv]
    modes = only or ["service", "http"]
    ref = os.environ.get("BATTLEGROUND_BENCH_DECISIONS_BASELINE", "2d0f6f0")
    print(f"/decide, logging on: steady = {N_CLIENTS} clients x {per_client}, sparse = 1 client x {sparse} "
          f"every {SPARSE_PAUSE} s; baseline = {ref} (its http server on asyncio + h11), current = this tree; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.2f}", flush=True)
    base = {k: v for k, v in os.environ.items() if k not in ("BATTLEGROUND_DATABASE_URL", "PYTHONPATH")}
    base["BATTLEGROUND_API_TOKEN"] = TOKEN
    admin = os.environ.get("BATTLEGROUND_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    codes = {"baseline": _baseline_src(ref), "current": ROOT / "src"}
    root = Path(tempfile.mkdtemp(prefix="bench_decisions_"))
    results = []
    for mode in modes:
        for backend in ("duckdb", "postgresql"):
            for shape in ("steady", "sparse"):
                for code, src in codes.items():
                    home = root / f"{mode}-{backend}-{shape}-{code}"
                    results.append(_case(code, src, mode, backend, shape, per_client, sparse, base, admin, home))
    print("\nsummary (p50 / p99 ms, baseline -> current):")
    for mode in modes:
        for backend in ("duckdb", "postgresql"):
            for shape in ("steady", "sparse"):
                b, c = (next(r for r in results if (r["code"], r["mode"], r["backend"], r["shape"]) == (k, mode, backend, shape))
                        for k in ("baseline", "current"))
                cpu = f", server CPU {b['cpu_ms']:.2f} -> {c['cpu_ms']:.2f} ms/decision" if c["cpu_ms"] else ""
                print(f"  {mode:>7} {backend:>10} {shape:>6}: {b['p50']:.1f} / {b['p99']:.1f} -> {c['p50']:.1f} / "
                      f"{c['p99']:.1f} (p50 {b['p50'] / c['p50']:.1f}x){cpu}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
