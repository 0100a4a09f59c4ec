"""Reliability on loopback: the ingest API under load, and a server killed mid-ingest.

1. Load: ``clients`` threads POST batches to ``/api/events`` of ``battleground ui`` for ``seconds``;
   every fourth request re-sends the previous batch. Counts errors, checks the store holds exactly the
   distinct event ids sent, and records p50/p99 latency and throughput.
2. Faults: one writer sends batches while the server is SIGKILLed and restarted ``kills`` times; the
   writer re-sends a batch until it is acknowledged. Every acknowledged event must be stored, once.

3. Killed writers (issue 19 §4): ``writers`` processes ingest straight into the store (DuckDB: the
   store-lock holder is what gets killed; PostgreSQL: any writer), each batch tagged with its producer
   id and sequence; writers are SIGKILLed ``kills`` times at seeded moments and restarted, resuming
   from their last acknowledged batch. Every batch must be stored once, whole; a batch whose commit
   landed but whose acknowledgement did not comes back as a detected *replay*. The baseline in the same
   run: the same faults without producer tags, where such a re-send is only counted as duplicates.
4. The API server SIGKILLed under :class:`battleground.client.EventClient` (retries with backoff; the
   baseline is run 2's re-send loop): nothing acknowledged is lost, nothing stored twice, and re-sent
   batches that had been stored are reported as replays.

The tests run short versions (``tests/reliability``, ``tests/delivery``); ``python -m benchmarks
reliability`` runs the long ones (8 clients for 60 s; ``--quick`` or ``BATTLEGROUND_BENCH_QUICK=1``:
10 s); ``--postgres URL`` adds run 3 on a PostgreSQL database (a throwaway one: it is written to).

5. PostgreSQL crashed under load (``pg_ctl stop -m immediate``: no checkpoint, WAL recovery on the next
   start) on a throwaway cluster made with ``initdb`` on a spare port, ``crashes`` times while
   ``writers`` threads ingest tagged batches and re-send each until it is acknowledged. Every
   acknowledged batch must be stored once and whole; a batch committed just before a crash whose reply
   was lost comes back as a replay. Runs whenever PostgreSQL's server binaries are installed.
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


# ---------------------------------------------------------------------------------------------------
# 3. writers killed while they ingest straight into the store
# ---------------------------------------------------------------------------------------------------

def _writer_env(home: Path, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "BATTLEGROUND_HOME": str(home), "BATTLEGROUND_LOCK_TIMEOUT": "120"}
    env.pop("BATTLEGROUND_DATABASE_URL", None)
    if database_url:
        env["BATTLEGROUND_DATABASE_URL"] = database_url
    return env


def _prepare_store(env: dict[str, str], name: str) -> int:
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    registry = Registry(Settings.from_env(env).registry_url)
    exp = registry.create_experiment(name, variants={"control": 0.5, "treatment": 0.5}, start_at="2024-01-01")
    registry.start(exp.id)
    return exp.id


def writer_process(writer: int, batches: int, batch: int, ack_file: str, tagged: bool) -> None:
    """One writer (run as ``python -m benchmarks.bench_reliability writer …``): ingest batches
    ``next … batches-1`` where ``next`` follows the last line of ``ack_file``; append ``seq status
    inserted duplicates replays`` to it after each acknowledged batch."""
    from battleground.experiment.events import ingest, open_event_store
    from battleground.settings import Settings

    store = open_event_store(Settings.from_env(dict(os.environ)))
    path = Path(ack_file)
    lines = path.read_text().splitlines() if path.exists() else []
    start = int(lines[-1].split()[0]) + 1 if lines else 0
    with path.open("a") as out:
        for seq in range(start, batches):
            body = _batch(0, f"w{writer}-b{seq}", batch)["events"]
            tag = {"producer": f"{os.environ['BENCH_RUN']}-writer-{writer}", "sequence": seq} if tagged else {}
            r = ingest(store, body, experiment=os.environ["BENCH_RUN"], **tag)
            status = r.sequence.status if r.sequence is not None else "-"
            out.write(f"{seq} {status} {r.inserted} {r.duplicates} {r.replays}\n")
            out.flush()


@dataclass(frozen=True)
class WriterKillResult:
    backend: str
    tagged: bool
    writers: int
    batches: int
    kills: int
    seconds: float
    stored_rows: int
    stored_distinct: int
    expected: int
    whole_batches: int
    replays: int
    replayed_rows: int
    duplicate_rows: int
    gaps: int

    def __str__(self) -> str:
        tag = "with producer sequences" if self.tagged else "baseline, untagged"
        return (f"{self.backend}, {tag}: {self.writers} writers × {self.batches} batches, {self.kills} SIGKILLs, "
                f"{self.seconds:.1f} s: stored {self.stored_rows} rows ({self.stored_distinct} distinct) of "
                f"{self.expected}; {self.whole_batches}/{self.writers * self.batches} batches whole; "
                f"replays detected {self.replays} ({self.replayed_rows} rows), rows reported as duplicates "
                f"{self.duplicate_rows}, gaps {self.gaps}; {self.expected / self.seconds:,.0f} events/s")


def killed_writers(home: Path, *, writers: int = 4, batches: int = 40, batch: int = 500, kills: int = 6,
                   tagged: bool = True, database_url: str | None = None, seed: int = 0) -> WriterKillResult:
    """Run 3: writers SIGKILLed at seeded moments (by acknowledged-batch count) and restarted."""
    import random
    import signal
    import subprocess
    import sys

    home.mkdir(parents=True, exist_ok=True)
    env = {**_writer_env(home, database_url), "BENCH_RUN": f"run-{home.name}"}
    exp_id = _prepare_store(env, env["BENCH_RUN"])
    rng = random.Random(seed)
    acks = [home / f"writer-{w}.acks" for w in range(writers)]

    def spawn(w: int) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "benchmarks.bench_reliability", "writer", str(w), str(batches), str(batch),
                str(acks[w]), "tagged" if tagged else "plain"]
        return subprocess.Popen(args, env=env, cwd=Path(__file__).parent.parent, start_new_session=True)

    def acked(w: int) -> int:
        return len(acks[w].read_text().splitlines()) if acks[w].exists() else 0

    t0 = time.perf_counter()
    procs = [spawn(w) for w in range(writers)]
    total = writers * batches
    # the k-th kill comes once (k+1)/(kills+1) of all batches are acknowledged, at a seeded writer
    for k in range(kills):
        target = (k + 1) * total // (kills + 1)
        while sum(acked(w) for w in range(writers)) < target:
            time.sleep(0.002)
        alive = [w for w in range(writers) if procs[w].poll() is None]
        if not alive:
            break
        w = rng.choice(alive)
        os.killpg(procs[w].pid, signal.SIGKILL)
        procs[w].wait()
        procs[w] = spawn(w)
    for w, p in enumerate(procs):
        if p.wait(timeout=600) != 0:
            raise RuntimeError(f"writer {w} failed with exit code {p.returncode}")
    seconds = time.perf_counter() - t0
    from battleground.experiment.events import open_event_store
    from battleground.settings import Settings

    table = open_event_store(Settings.from_env(env)).to_arrow(exp_id)
    ids = table.column("event_id").to_pylist()
    per_batch: dict[str, int] = {}
    for i in ids:
        key = i.rsplit("-", 1)[0]
        per_batch[key] = per_batch.get(key, 0) + 1
    replays = replayed = duplicates = gaps = 0
    for path in acks:
        for line in path.read_text().splitlines():
            _, status, _, dup, rep = line.split()
            replays += status == "replay"
            gaps += status in ("gap", "late")
            replayed += int(rep)
            duplicates += int(dup)
    return WriterKillResult(
        backend="postgresql" if database_url else "duckdb", tagged=tagged, writers=writers, batches=batches,
        kills=kills, seconds=seconds, stored_rows=len(ids), stored_distinct=len(set(ids)),
        expected=writers * batches * batch, whole_batches=sum(1 for n in per_batch.values() if n == batch),
        replays=replays, replayed_rows=replayed, duplicate_rows=duplicates, gaps=gaps)


# ---------------------------------------------------------------------------------------------------
# 4. the API server killed under battleground.client
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientKillResult:
    kills: int
    batches: int
    acknowledged_events: int
    attempts: int
    stored_rows: int
    stored_distinct: int
    replays: int
    replayed_rows: int
    duplicate_rows: int
    seconds: float

    def __str__(self) -> str:
        return (f"{self.kills} SIGKILLs over {self.batches} batches in {self.seconds:.1f} s: "
                f"{self.acknowledged_events} events acknowledged, {self.attempts} sends "
                f"({self.attempts - self.batches} retries), stored {self.stored_rows} rows "
                f"({self.stored_distinct} distinct); replays detected {self.replays} ({self.replayed_rows} rows), "
                f"rows reported as duplicates {self.duplicate_rows}")


def kill_restart_client(home: Path, *, batches: int = 30, kills: int = 2, batch: int = 200) -> ClientKillResult:
    """Run 4: one :class:`EventClient`, a server killed ``kills`` times while batches are in flight."""
    from battleground.client import EventClient

    env, exp_id = prepare(home)
    server = Server(["ui"], env, health="/api/health", log=home / "server.log").start()
    results: list[Any] = []
    failure: list[BaseException] = []
    client = EventClient(server.url, token=TOKEN, producer="bench-client", batch_size=batch, experiment=exp_id,
                         retries=200, backoff=0.02, max_backoff=0.5, timeout=30, seed=0)

    def writer() -> None:
        try:
            for b in range(batches):
                events = _batch(exp_id, f"c-b{b}", batch)["events"]
                results.extend(client.send(events))
        except BaseException as exc:  # reported below
            failure.append(exc)

    t0 = time.perf_counter()
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for k in range(kills):
            target = (k + 1) * batches // (kills + 1)
            while len(results) < target and thread.is_alive():
                time.sleep(0.005)
            server.kill()
            server.start()
        thread.join(timeout=600)
    finally:
        server.stop()
        client.close()
    if failure:
        raise failure[0]
    seconds = time.perf_counter() - t0
    rows, distinct = stored(home, exp_id)
    return ClientKillResult(
        kills=kills, batches=batches, acknowledged_events=sum(r.received for r in results),
        attempts=sum(r.attempts for r in results), stored_rows=rows, stored_distinct=distinct,
        replays=sum(r.status == "replay" for r in results), replayed_rows=sum(r.replays for r in results),
        duplicate_rows=sum(r.duplicates for r in results), seconds=seconds)


@dataclass(frozen=True)
class LostReplyResult:
    mode: str
    batches: int
    lost: int
    stored_rows: int
    stored_distinct: int
    replays: int
    replayed_rows: int
    duplicate_rows: int

    def __str__(self) -> str:
        return (f"{self.mode}: {self.batches} batches, {self.lost} replies lost after the commit: stored "
                f"{self.stored_rows} rows ({self.stored_distinct} distinct); re-sends reported as replays "
                f"{self.replays} ({self.replayed_rows} rows), rows reported as duplicates {self.duplicate_rows}")


def lost_replies(home: Path, *, batches: int = 50, every: int = 10, batch: int = 200) -> tuple[LostReplyResult, ...]:
    """The fault a SIGKILL between the commit and the reply causes, made exact: the reply of every
    ``every``-th batch is dropped after the server stored it (the client sees a reset connection), for
    :class:`~battleground.client.EventClient` and for the baseline re-send loop of run 2, each against
    its own server and store."""
    import httpx

    from battleground.client import EventClient

    class Drop(httpx.HTTPTransport):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.dropped = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            response.read()
            self.calls += 1
            if self.calls % every == 0:
                self.dropped += 1
                response.close()
                raise httpx.ReadError("connection reset after the commit", request=request)
            return response

    out = []
    for mode in ("battleground.client", "baseline re-send loop"):
        env, exp_id = prepare(home / mode.split()[0])
        transport = Drop()
        replays = replayed = duplicates = 0
        with Server(["ui"], env, health="/api/health", log=home / "lost.log") as server:
            if mode == "battleground.client":
                client = EventClient(server.url, token=TOKEN, producer="lost", batch_size=batch, experiment=exp_id,
                                     transport=transport, backoff=0.01, seed=0)
                for b in range(batches):
                    for r in client.send(_batch(exp_id, f"l-b{b}", batch)["events"]):
                        replays += r.status == "replay"
                        replayed += r.replays
                        duplicates += r.duplicates
                client.close()
            else:
                with httpx.Client(base_url=server.url, transport=transport, timeout=30,
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                    for b in range(batches):
                        while True:
                            try:
                                reply = http.post("/api/events", json=_batch(exp_id, f"l-b{b}", batch))
                            except httpx.HTTPError:
                                continue
                            duplicates += int(reply.json()["duplicates"])
                            break
        rows, distinct = stored(home / mode.split()[0], exp_id)
        out.append(LostReplyResult(mode, batches, transport.dropped, rows, distinct, replays, replayed, duplicates))
    return tuple(out)


def sequence_overhead(home: Path, *, batches: int = 60, batch: int = 500,
                      database_url: str | None = None) -> tuple[float, float]:
    """Median seconds per batch of :func:`~battleground.experiment.events.ingest` without and with a
    producer tag, alternating batch by batch in one process (the baseline: the untagged batch)."""
    import statistics

    from battleground.experiment.events import ingest, open_event_store
    from battleground.settings import Settings

    home.mkdir(parents=True, exist_ok=True)
    env = {**_writer_env(home, database_url), "BENCH_RUN": f"run-{home.name}"}
    _prepare_store(env, env["BENCH_RUN"])
    store = open_event_store(Settings.from_env(env))
    plain: list[float] = []
    tagged: list[float] = []
    for b in range(2 * batches):
        events = _batch(0, f"o-b{b}", batch)["events"]
        tag = {"producer": f"{env['BENCH_RUN']}-p", "sequence": b // 2} if b % 2 else {}
        t0 = time.perf_counter()
        ingest(store, events, experiment=env["BENCH_RUN"], **tag)
        (tagged if tag else plain).append(time.perf_counter() - t0)
    return statistics.median(plain), statistics.median(tagged)


# ---------------------------------------------------------------------------------------------------
# 5. PostgreSQL crashed under load, on a throwaway cluster
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CrashResult:
    crashes: int
    writers: int
    batches: int
    acknowledged: int
    stored_rows: int
    stored_distinct: int
    expected: int
    whole_batches: int
    replays: int
    refusals: int
    seconds: float

    def __str__(self) -> str:
        return (f"{self.crashes} crashes (immediate shutdown) under {self.writers} writers × {self.batches} "
                f"batches in {self.seconds:.1f} s: {self.acknowledged} batches acknowledged, stored "
                f"{self.stored_rows} rows ({self.stored_distinct} distinct) of {self.expected}; "
                f"{self.whole_batches}/{self.writers * self.batches} batches whole; replays detected "
                f"{self.replays}; {self.refusals} sends refused while the server was down (re-sent)")


def postgres_crashes(home: Path, url: str, crash: Any, *, writers: int = 4, batches: int = 40, batch: int = 200,
                     crashes: int = 3, seed: int = 0) -> CrashResult:
    """Run 5: ``crash()`` (stop the cluster immediately, start it again) at seeded acknowledged counts."""
    import random

    import pandas  # noqa: F401  (imported before the writer threads: a first import in two threads races)
    import pyarrow  # noqa: F401

    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry
    from battleground.settings import Settings
    from battleground.storage.events import StoreUnavailableError

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_DATABASE_URL": url})
    run = f"crash-{home.name}"
    exp = Registry(settings.registry_url).create_experiment(run, variants={"control": 0.5, "treatment": 0.5},
                                                            start_at="2024-01-01")
    Registry(settings.registry_url).start(exp.id, at="2024-01-01")
    store = open_event_store(settings)
    acked: list[tuple[int, int]] = []
    replays = [0]
    refusals = [0]
    failures: list[BaseException] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for seq in range(batches):
            body = _batch(exp.id, f"w{w}-b{seq}", batch)["events"]
            deadline = time.monotonic() + 120
            while True:
                try:
                    r = ingest(store, body, experiment=exp.id, producer=f"{run}-writer-{w}", sequence=seq)
                    break
                except StoreUnavailableError:  # the server is down or recovering: re-send
                    with lock:
                        refusals[0] += 1
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            with lock:
                acked.append((w, seq))
                replays[0] += r.sequence is not None and r.sequence.status == "replay"

    def guarded(w: int) -> None:
        try:
            writer(w)
        except BaseException as exc:  # reported after the run
            failures.append(exc)

    rng = random.Random(seed)
    total = writers * batches
    marks = sorted(rng.sample(range(total // 10, total * 9 // 10), crashes))
    t0 = time.perf_counter()
    threads = [threading.Thread(target=guarded, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for mark in marks:
        while len(acked) < mark and any(t.is_alive() for t in threads):
            time.sleep(0.002)
        crash()
    for t in threads:
        t.join(timeout=600)
    seconds = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"a writer failed: {failures[0]!r}")
    ids = store.to_arrow(exp.id).column("event_id").to_pylist()
    per_batch: dict[str, int] = {}
    for i in ids:
        key = i.rsplit("-", 1)[0]
        per_batch[key] = per_batch.get(key, 0) + 1
    return CrashResult(crashes=crashes, writers=writers, batches=batches, acknowledged=len(acked),
                       stored_rows=len(ids), stored_distinct=len(set(ids)), expected=total * batch,
                       whole_batches=sum(1 for n in per_batch.values() if n == batch), replays=replays[0],
                       refusals=refusals[0], seconds=seconds)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    postgres = argv[argv.index("--postgres") + 1] if "--postgres" in argv else None
    seconds = 10.0 if quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        print("ingest API load:", ingest_load(Path(tmp) / "load", clients=8, seconds=seconds), flush=True)
        print("server killed mid-ingest:", kill_restart(Path(tmp) / "kill", batches=100, kills=5), flush=True)
        print("server killed under battleground.client:",
              kill_restart_client(Path(tmp) / "client", batches=100, kills=5), flush=True)
        for found in lost_replies(Path(tmp) / "lost"):
            print("replies lost after the commit:", found, flush=True)
        for tagged in (False, True):
            print("writers killed:", killed_writers(Path(tmp) / f"writers-{tagged}", writers=4, batches=50,
                                                    batch=500, kills=10, tagged=tagged), flush=True)
        plain, tagged_s = sequence_overhead(Path(tmp) / "overhead")
        print(f"ingest of 500 events, median per batch (DuckDB): untagged {1e3 * plain:.1f} ms, with a producer "
              f"sequence {1e3 * tagged_s:.1f} ms ({tagged_s / plain:.2f}×)", flush=True)
        if postgres:
            plain, tagged_s = sequence_overhead(Path(tmp) / "pg-overhead", database_url=postgres)
            print(f"ingest of 500 events, median per batch (PostgreSQL): untagged {1e3 * plain:.1f} ms, with a "
                  f"producer sequence {1e3 * tagged_s:.1f} ms ({tagged_s / plain:.2f}×)", flush=True)
            for tagged in (False, True):
                print("writers killed:", killed_writers(Path(tmp) / f"pg-writers-{tagged}", writers=4, batches=50,
                                                        batch=500, kills=10, tagged=tagged,
                                                        database_url=postgres), flush=True)
        from benchmarks._pgcluster import ClusterUnavailableError, throwaway_cluster

        try:
            with throwaway_cluster() as cluster:
                print("PostgreSQL crashed under load:",
                      postgres_crashes(Path(tmp) / "pg-crash", cluster.url,
                                       lambda: cluster.restart(0.5, mode="immediate"),
                                       writers=4, batches=50, batch=500, crashes=5), flush=True)
        except ClusterUnavailableError as exc:
            print(f"PostgreSQL crashed under load: not run ({exc})", flush=True)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["writer"]:
        w, n, size, ack, mode = sys.argv[2:7]
        writer_process(int(w), int(n), int(size), ack, mode == "tagged")
    else:
        main(sys.argv[1:])
