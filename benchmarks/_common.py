"""What the benchmark areas share: best-of timing, servers on loopback (a free port, a process, a
readiness wait, percentiles of latencies), and side virtual environments for the libraries we compare
against but do not depend on (installed from PyPI on first use, timed in a subprocess)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


class SideEnvError(RuntimeError):
    """A side environment could not be created or a package could not be installed into it."""


def pins_like_ours(*distributions: str) -> list[str]:
    """``name==version`` of each distribution as installed here, so a side environment computes with the
    same numpy/scipy/... as the project's."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in distributions]


def side_python(venv: Path, pins: Sequence[str], probe: str, *, timeout: float = 300.0) -> Path:
    """The python of the side virtual environment ``venv`` in which the Python code ``probe`` runs.

    Cached: when ``probe`` already runs there nothing is installed. Otherwise the environment is created
    if missing (uv when available, else ``venv`` + pip) and ``pins`` are installed into it, each step
    bounded by ``timeout`` seconds. Raises :class:`SideEnvError` with the installer's reason (the first
    and last lines of its output) when that fails; the project's own environment is never touched.
    """
    python = venv / "bin" / "python"
    probe_cmd = [str(python), "-c", probe]
    if python.exists() and subprocess.run(probe_cmd, capture_output=True).returncode == 0:
        return python
    uv = shutil.which("uv") is not None
    steps: list[list[str]] = []
    if not python.exists():
        steps.append(["uv", "venv", str(venv), "--python", sys.executable, "-q"] if uv
                     else [sys.executable, "-m", "venv", str(venv)])
    steps.append(["uv", "pip", "install", "--python", str(python), "-q", *pins] if uv
                 else [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins])
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SideEnvError(f"`{' '.join(cmd[:3])} ...` timed out after {timeout:.0f} s") from None
        if done.returncode != 0:
            raise SideEnvError(_tail(done.stderr or done.stdout) or f"`{' '.join(cmd[:3])} ...` exited {done.returncode}")
    done = subprocess.run(probe_cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SideEnvError(f"installed {' '.join(pins)} but `{probe}` fails: {_tail(done.stderr)}")
    return python


def _tail(text: str, width: int = 300) -> str:
    """An installer's error on one line: its first two lines (what failed) and its last (the root cause)."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    picked = kept if len(kept) <= 3 else [*kept[:2], kept[-1]]
    return " | ".join(picked)[:width]


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs of ``fn`` (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``proc`` dies."""
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} came up")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout:.0f} s")


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


class Server:
    """``python -m battleground <args> --port N`` in its own process group, on 127.0.0.1 (``launch``:
    other interpreter arguments in place of ``-m battleground``, e.g. ``-c <code>``)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], *, health: str, port: int | None = None,
                 log: Path | None = None, launch: Sequence[str] = ("-m", "battleground")) -> None:
        self.args = list(args)
        self.launch = list(launch)
        self.env = {**os.environ, **env}
        self.port = port or free_port()
        self.health = health
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen([sys.executable, *self.launch, *self.args, "--port", str(self.port)],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(self.url + self.health, timeout, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown handlers run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
