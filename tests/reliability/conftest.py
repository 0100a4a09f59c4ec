"""A throwaway PostgreSQL cluster for fault tests: made with ``initdb`` on a spare port, never the shared
server, removed afterwards. Tests that need it fail (never skip) when PostgreSQL's binaries are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")
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

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@pytest.fixture
def throwaway_postgres() -> Iterator[Cluster]:
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
