"""A light HTTP/1.1 load generator for loopback benchmarks, run in its own process.

``N`` keep-alive connections on one asyncio loop (uvloop when installed), each sending its own list
of prebuilt requests one after the other (the next as soon as the answer is read), so the latency
measured is the server's and not the client's: no HTTP library, no client threads contending for
the GIL, nothing built while the clock runs. Phases run one after the other on fresh connections (a
``GET /health`` floor, then the case under test), each with a few warm-up requests per connection
that are not timed.

Used by :func:`load`: it writes the requests to a file and runs ``python -m benchmarks._httpload
<file>`` in a subprocess, which prints one JSON line per phase: ``{"name", "rate", "lat", "status"}``
(requests per second over the phase, latencies in ms after the warm-up, the count of each status).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WARMUP = 5


def request(method: str, path: str, *, body: Any = None, headers: Mapping[str, str] | None = None) -> str:
    """One HTTP/1.1 keep-alive request as text (``body`` is sent as JSON)."""
    data = "" if body is None else json.dumps(body, separators=(",", ":"))
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data.encode())}"]
    return "\r\n".join(lines) + "\r\n\r\n" + data


def load(port: int, phases: Sequence[tuple[str, Sequence[Sequence[str]]]], *, pause: float = 0.0,
         timeout: float = 1800) -> dict[str, dict[str, Any]]:
    """Run ``phases`` (name, one list of requests per connection, the first :data:`WARMUP` untimed)
    against ``127.0.0.1:port`` from a separate process, ``pause`` seconds between a connection's
    requests; the results by phase name."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"port": port, "pause": pause,
                   "phases": [[name, [list(c) for c in conns]] for name, conns in phases]}, f)
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks._httpload", f.name], capture_output=True,
                              text=True, timeout=timeout, check=False, cwd=Path(__file__).resolve().parents[1])
    finally:
        Path(f.name).unlink()
    if proc.returncode:
        raise RuntimeError(f"load generator failed:\n{proc.stderr[-3000:]}")
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {r["name"]: r for r in out}


async def _connection(port: int, requests: list[bytes], pause: float, lat: list[float], status: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, req in enumerate(requests):
            t = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if i >= WARMUP:
                lat.append((time.perf_counter() - t) * 1000)
                status[int(head[9:12])] += 1
            if pause:
                await asyncio.sleep(pause)
    finally:
        writer.close()


async def _phase(port: int, conns: list[list[bytes]], pause: float) -> tuple[float, list[float], Counter[int]]:
    lat: list[float] = []
    status: Counter[int] = Counter()
    t = time.perf_counter()
    await asyncio.gather(*(_connection(port, c, pause, lat, status) for c in conns))
    return sum(map(len, conns)) / (time.perf_counter() - t), lat, status


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    for name, conns in spec["phases"]:
        encoded = [[r.encode() for r in c] for c in conns]
        rate, lat, status = run(_phase(spec["port"], encoded, spec["pause"]))
        print(json.dumps({"name": name, "rate": rate, "lat": lat, "status": dict(status)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
