"""Reliability on loopback: the ingest API under load, and a server killed mid-ingest.

1. Load: ``clients`` threads POST batches to ``/api/events`` of ``battleground ui`` for ``seconds``;
   every fourth request re-sends the previous batch. Counts errors, checks the store holds exactly the
   distinct event ids sent, and records p50/p99 latency and throughput.
2. Faults: one writer sends batches while the server is SIGKILLed and restarted ``kills`` times; the
   writer re-sends a batch until it is acknowledged. Every acknowledged event must be stored, once.

The tests run short versions (``tests/reliability``); ``python -m benchmarks reliability`` runs the long
ones (8 clients for 60 s; ``--quick`` or ``BATTLEGROUND_BENCH_QUICK=1``: 10 s).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import Server, percentile

TOKEN = "reliability-token"
TIMESTAMP = "2024-01-02T03:04:05"


def prepare(home: Path) -> tuple[dict[str, str], int]:
    """A fresh embedded home with one running experiment; returns the server's environment and its id."""
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    env = {"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": TOKEN,
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    env.pop("BATTLEGROUND_DATABASE_URL", None)
    settings = Settings.from_env(env)
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment("reliability", variants={"control": 0.5, "treatment": 0.5},
                                     start_at="2024-01-01")
    registry.start(exp.id)
    return env, exp.id


def stored(home: Path, experiment_id: int) -> tuple[int, int]:
    """(rows, distinct event ids) in the store."""
    from battleground.experiment.events import open_event_store
    from battleground.settings import Settings

    store = open_event_store(Settings.from_env({"BATTLEGROUND_HOME": str(home)}))
    ids = store.to_arrow(experiment_id).column("event_id").to_pylist()
    return len(ids), len(set(ids))


def _batch(experiment_id: int, tag: str, size: int) -> dict[str, Any]:
    return {"experiment": experiment_id, "events": [
        {"event_id": f"{tag}-{i}", "variant": "control" if i % 2 else "treatment", "user_id": f"{tag}-u{i}",
         "event_type": "exposure", "timestamp": TIMESTAMP} for i in range(size)]}


@dataclass(frozen=True)
class LoadResult:
    clients: int
    seconds: float
    requests: int
    errors: int
    distinct_sent: int
    stored_rows: int
    stored_distinct: int
    p50_ms: float
    p99_ms: float
    events_per_s: float

    def __str__(self) -> str:
        return (f"{self.clients} clients × {self.seconds:.0f} s: {self.requests} requests, {self.errors} errors, "
                f"sent {self.distinct_sent} distinct events, stored {self.stored_rows} rows "
                f"({self.stored_distinct} distinct); p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
                f"{self.events_per_s:,.0f} events/s")


def ingest_load(home: Path, *, clients: int = 4, seconds: float = 5.0, batch: int = 100,
                requests_per_client: int | None = None) -> LoadResult:
    """Run the load for ``seconds``, or, when ``requests_per_client`` is given, for exactly that many
    requests per client whatever the time (tests bound work by count, so a loaded machine passes)."""
    import httpx

    env, exp_id = prepare(home)
    latencies: list[float] = []
    errors: list[str] = []
    sent: list[int] = [0] * clients
    lock = threading.Lock()
    with Server(["ui"], env, health="/api/health", log=home / "server.log") as server:
        url = server.url + "/api/events"
        deadline = time.monotonic() + seconds

        def client(c: int) -> None:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(timeout=30, headers=headers) as http:
                b = 0
                while (b < requests_per_client if requests_per_client is not None
                       else time.monotonic() < deadline):
                    resend = b > 0 and b % 4 == 0
                    tag = f"c{c}-b{b - 1 if resend else b}"
                    started = time.perf_counter()
                    try:
                        response = http.post(url, json=_batch(exp_id, tag, batch))
                        ok = response.status_code == 200
                        if not ok:
                            message = f"{response.status_code}: {response.text[:200]}"
                    except httpx.HTTPError as exc:
                        ok, message = False, repr(exc)
                    with lock:
                        latencies.append(time.perf_counter() - started)
                        if not ok:
                            errors.append(message)
                    if ok and not resend:
                        sent[c] += batch
                    b += 1

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    rows, distinct = stored(home, exp_id)
    return LoadResult(clients=clients, seconds=elapsed, requests=len(latencies), errors=len(errors),
                      distinct_sent=sum(sent), stored_rows=rows, stored_distinct=distinct,
                      p50_ms=1e3 * percentile(latencies, 50), p99_ms=1e3 * percentile(latencies, 99),
                      events_per_s=len(latencies) * batch / elapsed)


@dataclass(frozen=True)
class FaultResult:
    kills: int
    batches: int
    acknowledged_events: int
    failed_attempts: int
    stored_rows: int
    stored_distinct: int

    def __str__(self) -> str:
        return (f"{self.kills} SIGKILLs over {self.batches} batches: {self.acknowledged_events} events acknowledged, "
                f"{self.failed_attempts} attempts failed and were re-sent, stored {self.stored_rows} rows "
                f"({self.stored_distinct} distinct)")


def kill_restart(home: Path, *, batches: int = 30, kills: int = 2, batch: int = 200) -> FaultResult:
    """One writer, a server killed ``kills`` times while batches are in flight."""
    import httpx

    env, exp_id = prepare(home)
    server = Server(["ui"], env, health="/api/health", log=home / "server.log").start()
    acked = 0
    failures = 0
    done = threading.Event()
    progress = [0]

    def writer() -> None:
        nonlocal acked, failures
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(timeout=10, headers=headers) as http:
            for b in range(batches):
                body = _batch(exp_id, f"w-b{b}", batch)
                end = time.monotonic() + 120
                while True:
                    try:
                        if http.post(server.url + "/api/events", json=body).status_code == 200:
                            acked += batch
                            progress[0] = b + 1
                            break
                    except httpx.HTTPError:
                        pass
                    failures += 1
                    if time.monotonic() > end:
                        raise TimeoutError(f"batch {b} was never acknowledged")
                    time.sleep(0.05)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for k in range(kills):
            target = (k + 1) * batches // (kills + 1)
            while progress[0] < target and not done.is_set():
                time.sleep(0.005)
            server.kill()
            server.start()
        thread.join(timeout=300)
    finally:
        server.stop()
    rows, distinct = stored(home, exp_id)
    return FaultResult(kills=kills, batches=batches, acknowledged_events=acked, failed_attempts=failures,
                       stored_rows=rows, stored_distinct=distinct)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    seconds = 10.0 if quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        print("ingest API load:", ingest_load(Path(tmp) / "load", clients=8, seconds=seconds), flush=True)
        print("server killed mid-ingest:", kill_restart(Path(tmp) / "kill", batches=100, kills=5), flush=True)
