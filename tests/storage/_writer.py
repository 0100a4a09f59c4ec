"""A writer process for the reliability tests (run as a script: ``python _writer.py MODE ...``).

The store comes from the environment (``BATTLEGROUND_HOME`` / ``BATTLEGROUND_DATABASE_URL``), so that
every process builds its own settings at its edge, as a real program would.

Modes:
    concurrent WORKERS N STRIDE BATCHES          fork WORKERS processes; worker w ingests N events with ids
                                                 [w*STRIDE, +N) in BATCHES batches, all starting together;
                                                 print each worker's number of rows inserted
    killed N STARTED_FILE                        ingest one batch of N events, but stop inside the write
                                                 transaction (after rows went in, before the commit),
                                                 touch STARTED_FILE and wait there to be killed
    hold-lock SECONDS READY_FILE                 hold the embedded store's lock for SECONDS
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from battleground.experiment.events import ingest, open_event_store
from battleground.settings import Settings

START = dt.datetime(2022, 3, 1)


def events(first: int, n: int, experiment: str = "load") -> pa.Table:
    """Events with ids ``e<first>`` … ``e<first + n - 1>``; the content depends only on the id."""
    ids = np.arange(first, first + n)
    return pa.table({
        "event_id": pc.binary_join_element_wise("e", pc.cast(pa.array(ids), pa.string()), ""),
        "experiment": pa.array([experiment] * n),
        "variant": pa.array(np.where(ids % 2 == 0, "control", "treatment")),
        "user_id": pa.array(ids % 5000),
        "event_type": pa.array(np.where(ids % 3 == 0, "purchase", "exposure")),
        "timestamp": pa.array(np.datetime64(START, "us") + (ids * 1_000_000).astype("timedelta64[us]")),
        "value": pa.array((ids % 7).astype(np.float64)),
    })


def _preload() -> None:
    """Import what a writer needs once, before forking, so that the workers start in milliseconds (the
    forked workers are fresh: no connection, thread pool or file is open before the fork)."""
    import duckdb  # noqa: F401
    import pandas  # noqa: F401  (DuckDB imports it to scan Arrow tables)
    import psycopg  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import sqlalchemy.orm  # noqa: F401

    import battleground.experiment.register
    import battleground.storage._db
    import battleground.storage._duckdb
    import battleground.storage._postgres  # noqa: F401


def _worker(worker: int, n: int, stride: int, batches: int, ready_w: int, go_r: int) -> int:
    store = open_event_store(Settings.from_env())
    table = events(worker * stride, n)
    store.count()  # connect (and find the schema) before the start signal
    os.write(ready_w, b"R")
    os.read(go_r, 1)
    inserted = 0
    step = -(-n // batches)
    for lo in range(0, n, step):
        inserted += ingest(store, table.slice(lo, step)).inserted
    return inserted


def concurrent(workers: int, n: int, stride: int, batches: int) -> None:
    _preload()
    children = []
    for w in range(workers):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                inserted = _worker(w, n, stride, batches, ready_w, go_r)
                os.write(ready_w, f"{inserted}\n".encode())
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.close(ready_w)
        os.close(go_r)
        children.append((pid, ready_r, go_w))
    for _, ready_r, _ in children:
        assert os.read(ready_r, 1) == b"R", "a worker failed before the start"
    for _, _, go_w in children:  # all at once
        os.write(go_w, b"G")
    failed = 0
    for pid, ready_r, _ in children:
        chunks = []
        while chunk := os.read(ready_r, 64):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
        print(b"".join(chunks).decode().strip() or "failed")
    if failed:
        raise SystemExit(f"{failed} worker(s) failed")


class _Stall(Exception):
    pass


def _stall(started: Path) -> None:
    started.touch()
    time.sleep(120)  # the test kills us here, inside the open transaction
    raise _Stall("not killed")


class _DuckProxy:
    """The real DuckDB connection, except that the COMMIT of a batch stalls (every chunk is inserted by
    then, inside the open transaction)."""

    def __init__(self, con: Any, started: Path) -> None:
        self._con, self._started, self._inserts = con, started, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().upper() == "COMMIT":
            _stall(self._started)
        return self._con.execute(sql, *args)


class _PgCursorProxy:
    def __init__(self, cur: Any, started: Path) -> None:
        self._cur, self._started = cur, started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)

    def __enter__(self) -> _PgCursorProxy:
        self._cur.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cur.__exit__(*exc)

    def execute(self, sql: str, *args: Any) -> Any:
        out = self._cur.execute(sql, *args)
        if sql.lstrip().upper().startswith("INSERT INTO EVENTS"):
            _stall(self._started)  # the rows are in, the transaction is not committed
        return out


class _PgConnProxy:
    def __init__(self, conn: Any, started: Path) -> None:
        self._conn, self._started = conn, started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> _PgConnProxy:
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._conn.__exit__(*exc)

    def cursor(self) -> _PgCursorProxy:
        return _PgCursorProxy(self._conn.cursor(), self._started)


def killed(n: int, started: Path) -> None:
    store = open_event_store(Settings.from_env())
    table = events(0, n)
    if store.backend == "duckdb":
        import battleground.storage._duckdb as duck

        duck._CHUNK_ROWS = max(1, n // 10)  # several INSERTs inside the one transaction
        real = duck.DuckDBEventStore.connection

        @contextmanager
        def stalling(self: Any) -> Iterator[Any]:
            with real(self) as con:
                yield _DuckProxy(con, started)

        duck.DuckDBEventStore.connection = stalling  # type: ignore[method-assign]
    else:
        import battleground.storage._postgres as pgstore

        real_connect = pgstore.PostgresEventStore._connect
        pgstore.PostgresEventStore._connect = (  # type: ignore[method-assign]
            lambda self: _PgConnProxy(real_connect(self), started)
        )
    ingest(store, table)


def hold_lock(seconds: float, ready: Path) -> None:
    from battleground.storage._filelock import exclusive_lock

    store = open_event_store(Settings.from_env())
    with exclusive_lock(store.path, timeout=5):  # type: ignore[attr-defined]
        ready.touch()
        time.sleep(seconds)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "concurrent":
        concurrent(int(args[0]), int(args[1]), int(args[2]), int(args[3]))
    elif mode == "killed":
        killed(int(args[0]), Path(args[1]))
    elif mode == "hold-lock":
        hold_lock(float(args[0]), Path(args[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
