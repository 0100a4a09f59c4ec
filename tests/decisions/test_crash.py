"""A SIGKILL of the decision server mid-load: clients re-send every unacknowledged decision (same id)
until a restarted server acknowledges it; then every decision is logged exactly once, and each answer
a client heard before the crash is the one in the log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from tests.decisions.conftest import AUTH, TOKEN, seed_home

from battleground.settings import Settings
from battleground.storage.decisions import open_decision_log


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "battleground", "serve-decisions", "--port", str(port), "--no-updater"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "the decision server exited before it came up"
        time.sleep(0.1)
    raise AssertionError("the decision server did not come up in 60 s")


def test_sigkill_loses_and_duplicates_no_decision(settings: Settings) -> None:
    home = seed_home(settings)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    n_clients, per_client, kill_after = 4, 60, 80
    acked: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    retries = [0]

    def client(c: int) -> None:
        with httpx.Client(timeout=5) as http:
            for i in range(per_client):
                body = {"unit_id": f"c{c}-u{i % 5}", "policy": "solo", "context": [1.0, i / per_client],
                        "decision_id": f"c{c}-{i}"}
                for _ in range(3000):  # re-send until acknowledged (bounded)
                    try:
                        r = http.post(f"{url}/decide", json=body, headers=AUTH)
                        if r.status_code == 200:
                            with lock:
                                acked[body["decision_id"]] = r.json()
                            break
                    except httpx.HTTPError:
                        pass
                    retries[0] += 1
                    time.sleep(0.02)

    proc = _start(home.home, port)
    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
        for t in threads:
            t.start()
        while len(acked) < kill_after and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no shutdown handler runs
        proc.wait(30)
        before = dict(acked)
        proc = _start(home.home, port)
        for t in threads:
            t.join(300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    total = n_clients * per_client
    assert len(acked) == total and retries[0] > 0  # the crash was felt and every decision acknowledged
    log = open_decision_log(home)
    assert log.count("solo") == (total, total, 0)
    stored = log.read(policy="solo")
    by_id = dict(zip(stored.decision_id.tolist(), stored.action.tolist(), strict=True))
    assert all(by_id[k] == a["action"] for k, a in acked.items())
    assert all(by_id[k] == a["action"] for k, a in before.items())  # what was heard before the crash was kept
