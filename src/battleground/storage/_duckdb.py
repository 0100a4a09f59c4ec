"""The embedded event store: one DuckDB file, one process at a time (see ``_filelock``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.errors import StorageError
from battleground.storage._events_sql import (
    COLUMNS,
    DUCKDB_VERSION,
    KEY,
    conflicts_sql,
    render,
    schema,
)
from battleground.storage._filelock import StoreLockedError, exclusive_lock, pinned_lock
from battleground.storage._producers import (
    LOOKUP_SQL,
    PRODUCER_SCHEMA,
    RECORD_SQL,
    ProducerBatch,
    check_params,
    check_sequence,
    written,
)
from battleground.storage._snapshot import ReadCancelledError, current_snapshot
from battleground.storage.events import EventStore, WriteResult, has_duplicate_ids

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["DuckDBEventStore"]

_CHUNK_ROWS = 1 << 20
# The connection of the (single) thread holding a store's lock, for nested operations in that thread.
_open: dict[str, duckdb.DuckDBPyConnection] = {}
# Files whose ``producer_batches`` table this process has created (or found).
_producers_ready: set[str] = set()
# The connection a pinned store keeps open between operations (:meth:`DuckDBEventStore.pin`).
_pinned: dict[str, duckdb.DuckDBPyConnection] = {}


class DuckDBEventStore(EventStore):
    """Events in a DuckDB file (the embedded default, ``duckdb:///<home>/events.duckdb``).

    Concurrency rule: every operation opens the file inside an exclusive lock on ``<file>.lock`` and
    closes it afterwards; other processes wait up to ``lock_timeout`` seconds (default 60, or
    ``$BATTLEGROUND_LOCK_TIMEOUT``) and then get a :class:`StoreLockedError` naming the holder.
    Idempotency: a batch is inserted with an anti-join on ``(experiment_id, event_id)`` inside one
    transaction, which is exact because no other writer can run at the same time. Layout changes are
    applied when a file is opened (:func:`migrate`). DuckDB writes a transaction to its
    write-ahead log at commit, so a writer killed before the commit leaves nothing behind.
    """

    backend = "duckdb"

    def __init__(self, url: str, registry_url: str | None = None, *, lock_timeout: float | None = None) -> None:
        super().__init__(url, registry_url)
        if not url.startswith("duckdb:///"):
            raise ValueError(f"DuckDB store URL must look like 'duckdb:///path/events.duckdb', got {url!r}")
        self.path = Path(url[len("duckdb:///") :]).expanduser().absolute()
        self.lock_timeout = (
            float(os.environ.get("BATTLEGROUND_LOCK_TIMEOUT", "60")) if lock_timeout is None else lock_timeout
        )

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The open database, held exclusively for the duration of the ``with`` block."""
        import duckdb

        key = str(self.path)
        with exclusive_lock(self.path, timeout=self.lock_timeout) as outermost:
            if not outermost:  # nested use in the thread that holds the lock: share its connection
                yield _open[key]
                return
            kept = _pinned.get(key)
            if kept is not None:  # pinned: this thread's turn on the connection kept open
                _open[key] = kept
                try:
                    yield kept
                finally:
                    _open.pop(key, None)
                return
            try:
                con = duckdb.connect(key)
            except duckdb.IOException as exc:  # held by a program that ignores battleground's lock
                raise StoreLockedError(
                    f"event store {self.path} is locked by another program ({exc}); close it and retry"
                ) from exc
            try:
                con.execute(schema("duckdb"))
                migrate(con)
                _open[key] = con
                yield con
            finally:
                _open.pop(key, None)
                con.close()

    def state(self) -> tuple[tuple[int, int], ...]:
        """(modification time in ns, size) of the database file and its write-ahead log: every commit
        changes one of them, a read changes neither, and reading them needs no connection or lock."""
        out = []
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = path.stat()
            except FileNotFoundError:
                out.append((0, 0))
            else:
                out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    @contextmanager
    def pin(self) -> Iterator[None]:
        """Keep the file locked and open in this process for the ``with`` block (a server's lifetime).

        Every operation in the block, from any thread of this process, still runs alone (threads take
        turns as without a pin) but on the connection kept open, so it pays neither the lock nor the
        open (nor the checkpoint of a close). Other processes wait for the block to end, as for one
        long operation. Nested pins share the first.
        """
        import duckdb

        key = str(self.path)
        with pinned_lock(self.path, timeout=self.lock_timeout) as first:
            if not first:
                yield
                return
            with exclusive_lock(self.path, timeout=self.lock_timeout):
                try:
                    con = duckdb.connect(key)
                except duckdb.IOException as exc:
                    raise StoreLockedError(
                        f"event store {self.path} is locked by another program ({exc}); close it and retry"
                    ) from exc
                try:
                    con.execute(schema("duckdb"))
                    migrate(con)
                except BaseException:
                    con.close()
                    raise
                _pinned[key] = con
            try:
                yield
            finally:
                with exclusive_lock(self.path, timeout=max(self.lock_timeout, 600.0)):  # after the operation in flight
                    _pinned.pop(key, None)
                    con.close()

    def _write(self, table: pa.Table, producer: ProducerBatch | None = None) -> WriteResult:
        # One transaction for the whole batch, inserted in chunks of about a million rows (the anti-join
        # of each chunk sees the chunks before it, so ids repeated across chunks are skipped too).
        duplicates = has_duplicate_ids(table)
        if duplicates:
            import numpy as np
            import pyarrow as pa

            table = table.append_column("bg_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        cols = ", ".join(COLUMNS)
        keys = ", ".join(KEY)
        same = " AND ".join(f"e.{c} = b.{c}" for c in KEY)
        with self.connection() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                check = None
                if producer is not None:  # no other writer runs: the store's lock serialises them
                    import duckdb

                    if str(self.path) not in _producers_ready:  # once per file and process
                        con.execute(PRODUCER_SCHEMA)
                        _producers_ready.add(str(self.path))
                    try:
                        found = con.execute(render(LOOKUP_SQL, "duckdb"), producer.params()).fetchall()[0]
                    except duckdb.CatalogException:  # the file was replaced since: create the table again
                        con.execute("ROLLBACK")
                        con.execute("BEGIN TRANSACTION")
                        con.execute(PRODUCER_SCHEMA)
                        found = con.execute(render(LOOKUP_SQL, "duckdb"), producer.params()).fetchall()[0]
                    previous, seen = found
                    check = check_sequence(producer, previous=previous, seen=bool(seen))
                stored = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
                if duplicates:
                    # The first occurrence of each event_id, minus the ids already stored.
                    sql = f"""
                        INSERT INTO events ({cols})
                        SELECT {cols} FROM (
                            SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY bg_row) AS bg_k
                            FROM bg_batch
                        ) b
                        WHERE b.bg_k = 1
                          AND NOT EXISTS (SELECT 1 FROM events e WHERE {same})
                    """
                elif stored == 0:
                    # An empty store and distinct ids in the batch: nothing to skip.
                    sql = f"INSERT INTO events ({cols}) SELECT {cols} FROM bg_batch"
                else:
                    sql = f"""
                        INSERT INTO events ({cols})
                        SELECT {cols} FROM bg_batch b
                        WHERE NOT EXISTS (SELECT 1 FROM events e WHERE {same})
                    """
                inserted = conflicts = 0
                for lo in range(0, table.num_rows, _CHUNK_ROWS):
                    chunk = table.slice(lo, _CHUNK_ROWS)
                    con.register("bg_batch", chunk)
                    try:
                        added = int(con.execute(sql).fetchall()[0][0])
                        inserted += added
                        if added < chunk.num_rows:  # some ids were known: re-sent as they were, or changed?
                            conflicts += int(con.execute(conflicts_sql("bg_batch")).fetchall()[0][0])
                    finally:
                        con.unregister("bg_batch")
                if check is not None and check.status != "replay":
                    con.execute(render(RECORD_SQL, "duckdb"), {**check_params(producer, table.num_rows, inserted)})
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise
        return written(inserted, table.num_rows - inserted - conflicts, conflicts, check)

    def _fetch(self, sql: str, params: dict[str, Any], *, scan: bool = False) -> list[tuple[Any, ...]]:
        import duckdb

        snap = current_snapshot()
        if snap is None:
            with self.connection() as con:
                return con.execute(render(sql, "duckdb"), params).fetchall()
        # One connection, held under the store's lock for the whole snapshot: no writer runs in between.
        con = snap.connection(f"duckdb:{self.path}", self._open_snapshot)
        try:
            return con.execute(render(sql, "duckdb"), params).fetchall()
        except duckdb.InterruptException as exc:
            raise ReadCancelledError("the read was cancelled (the client went away)") from exc

    def _open_snapshot(self, stack: contextlib.ExitStack) -> tuple[duckdb.DuckDBPyConnection, Callable[[], None]]:
        con = stack.enter_context(self.connection())
        return con, con.interrupt

    def to_arrow(self, experiment_id: int | None = None) -> pa.Table:
        sql = f"SELECT {', '.join(COLUMNS)} FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = $experiment"
            params["experiment"] = int(experiment_id)
        with self.connection() as con:
            relation = con.sql(sql + " ORDER BY ts, event_id", params=params)
            assert relation is not None
            return relation.to_arrow_table()



def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring an open events file to the newest layout (:data:`DUCKDB_VERSION`), step by step.

    Version 1 (files without ``battleground_schema``) keyed events on ``event_id`` alone; version 2 keys
    them on ``(experiment_id, event_id)``. DuckDB files never held a key constraint (the anti-join of
    :meth:`DuckDBEventStore._write` is the key), so the step keeps every row and records the version.
    """
    con.execute("CREATE TABLE IF NOT EXISTS battleground_schema (version INTEGER NOT NULL)")
    (found,) = con.execute("SELECT max(version) FROM battleground_schema").fetchall()[0]
    version = 1 if found is None else int(found)
    if version > DUCKDB_VERSION:
        raise StorageError(
            f"the events file has layout version {version}, newer than this battleground's "
            f"{DUCKDB_VERSION}; upgrade battleground to open it"
        )
    if version < DUCKDB_VERSION:
        con.execute("DELETE FROM battleground_schema")
        con.execute("INSERT INTO battleground_schema VALUES (?)", [DUCKDB_VERSION])
