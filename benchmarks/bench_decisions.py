"""The decision service under load (loopback): ``/decide`` with logging on, DuckDB and PostgreSQL.

8 concurrent clients (keep-alive httpx clients in threads) each send ``--per-client`` decisions of a
deployed LinTS (11 arms, 8 features) in a bandit-vs-control experiment to ``battleground
serve-decisions``; every call is logged (group commit) before it is answered. Each client serves 200
units in turn (the first decision of each also writes its exposure). Printed per backend:
throughput, p50/p99 latency, the same for ``GET /health`` in the same run (the HTTP floor: the ratio
is what logging and deciding cost), and the log check (decisions stored = acknowledged, no duplicate).
Target: p99 <= 10 ms.

``--quick`` or ``BATTLEGROUND_BENCH_QUICK=1``: 150 decisions per client instead of 2,000. PostgreSQL:
``BATTLEGROUND_BENCH_POSTGRES_URL`` (default the local server; a fresh database is created and dropped).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import Server, percentile

TOKEN = "bench-decisions-token"
N_CLIENTS = 8


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


def _client(url: str, c: int, n: int, path: str) -> list[float]:
    import httpx
    import numpy as np

    rng = np.random.default_rng(c)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    out = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for i in range(n + 10):
            t = time.perf_counter()
            if path == "/health":
                http.get(path).raise_for_status()
            else:
                http.post(path, headers=headers, json={"unit_id": f"c{c}-u{i % 200}", "policy": "bench",
                                                       "context": rng.random(8).tolist(),
                                                       "decision_id": f"bench-{c}-{i}"}).raise_for_status()
            if i >= 10:  # the first calls warm the connection up
                out.append((time.perf_counter() - t) * 1000)
    return out


def _load(url: str, per_client: int, path: str) -> tuple[float, list[float]]:
    t = time.perf_counter()
    with ThreadPoolExecutor(N_CLIENTS) as pool:
        lat = [x for part in pool.map(lambda c: _client(url, c, per_client, path), range(N_CLIENTS)) for x in part]
    return N_CLIENTS * (per_client + 10) / (time.perf_counter() - t), lat


def _run(name: str, env: dict[str, str], per_client: int) -> dict[str, Any]:
    _seed(env)
    home = Path(env["BATTLEGROUND_HOME"])
    with Server(["serve-decisions", "--no-updater"], env, health="/health", log=home / "server.log") as server:
        floor_rate, floor = _load(server.url, per_client, "/health")
        rate, lat = _load(server.url, per_client, "/decide")
    from battleground.settings import Settings
    from battleground.storage.decisions import open_decision_log

    n, distinct, _ = open_decision_log(Settings.from_env(env)).count("bench")
    sent = N_CLIENTS * (per_client + 10)
    res = {"backend": name, "decide_per_s": rate, "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
           "health_p50_ms": percentile(floor, 50), "health_p99_ms": percentile(floor, 99), "health_per_s": floor_rate,
           "logged": n, "sent": sent, "duplicates": n - distinct}
    print(f"{name:>10}: /decide {rate:,.0f}/s, p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms "
          f"(target p99 <= 10 ms) | GET /health in the same run {floor_rate:,.0f}/s, p50 {res['health_p50_ms']:.2f} ms, "
          f"p99 {res['health_p99_ms']:.2f} ms; /decide p50 = {res['p50_ms'] / res['health_p50_ms']:.1f}x the floor | "
          f"logged {n:,} of {sent:,} sent, {n - distinct} duplicates", flush=True)
    return res


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    per_client = 150 if quick else 2000
    print(f"{N_CLIENTS} concurrent clients x {per_client} decisions, logging on; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    base = {k: v for k, v in os.environ.items() if k != "BATTLEGROUND_DATABASE_URL"}
    base["BATTLEGROUND_API_TOKEN"] = TOKEN
    home = Path(tempfile.mkdtemp(prefix="bench_decisions_"))
    _run("duckdb", {**base, "BATTLEGROUND_HOME": str(home / "duckdb")}, per_client)
    import psycopg

    admin = os.environ.get("BATTLEGROUND_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_decisions_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin.rsplit("/", 1)[0] + f"/{name}"
        _run("postgresql", {**base, "BATTLEGROUND_HOME": str(home / "pg"), "BATTLEGROUND_DATABASE_URL": url}, per_client)
    finally:
        from battleground.storage._db import dispose_all

        dispose_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
