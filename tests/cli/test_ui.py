"""`battleground ui` says where it listens once it is ready, and a port in use is one clean line
(issue 13 §4)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATTLEGROUND_")}
    return {**env, "BATTLEGROUND_HOME": str(home), "PYTHONPATH": SRC, "COLUMNS": "200"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ui_prints_its_url_when_ready(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "battleground", "ui", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    try:
        reader.join(timeout=120)
        assert first and f"http://127.0.0.1:{port}" in first[0], (first, proc.poll())
        # printed only once the server listens: the page answers right away
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_ui_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "battleground", "ui", "--port", str(port)],
                             capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [f"error: port {port} on 127.0.0.1 is in use; stop what runs there or pick another "
                     "with --port"], out.stderr
