"""A throwaway PostgreSQL cluster for fault runs: made with ``initdb`` on a spare port, never the shared
server, removed afterwards (used by ``bench_reliability`` and the fault tests in ``tests/reliability``)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class ClusterUnavailableError(RuntimeError):
    """PostgreSQL's server binaries (``initdb``, ``pg_ctl``) are not installed."""


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise ClusterUnavailableError("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")
    return Path(initdb).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A private PostgreSQL server: ``url`` points at database ``battleground`` (created on first use)."""

    bindir: Path
    datadir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/battleground"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.datadir / "server.log"), "-w", "-t", "30",
                  "-o", f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` is a clean shutdown; ``immediate`` is a crash (no checkpoint, WAL recovery on start)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def restart(self, down_seconds: float, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started private cluster for the ``with`` block; stopped and deleted afterwards."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="bg-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(datadir, "postgres")
    cluster = Cluster(bindir, datadir, _free_port())
    cluster._run("initdb", "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync")
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
