"""The embedded event store: one DuckDB file, one process at a time (see ``_filelock``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground.storage._events_sql import COLUMNS, SCHEMA, render
from battleground.storage._filelock import StoreLockedError, exclusive_lock
from battleground.storage.events import EventStore

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["DuckDBEventStore"]


class DuckDBEventStore(EventStore):
    """Events in a DuckDB file (the embedded default, ``duckdb:///<home>/events.duckdb``).

    Concurrency rule: every operation opens the file inside an exclusive lock on ``<file>.lock`` and
    closes it afterwards; other processes wait up to ``lock_timeout`` seconds (default 60, or
    ``$BATTLEGROUND_LOCK_TIMEOUT``) and then get a :class:`StoreLockedError` naming the holder.
    Idempotency: a batch is inserted with an anti-join on ``event_id`` inside one transaction, which
    is exact because no other writer can run at the same time.
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
        self._con: duckdb.DuckDBPyConnection | None = None

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The open database, held exclusively for the duration of the ``with`` block."""
        import duckdb

        with exclusive_lock(self.path, timeout=self.lock_timeout) as outermost:
            if not outermost:
                assert self._con is not None
                yield self._con
                return
            try:
                con = duckdb.connect(str(self.path))
            except duckdb.IOException as exc:  # held by a process outside battleground's lock
                raise StoreLockedError(f"event store {self.path} is locked: {exc}") from exc
            try:
                con.execute(SCHEMA.format(primary_key=""))
                self._con = con
                yield con
            finally:
                self._con = None
                con.close()

    def _write(self, table: pa.Table) -> int:
        cols = ", ".join(COLUMNS)
        with self.connection() as con:
            con.register("bg_batch", table)
            try:
                con.execute("BEGIN TRANSACTION")
                before = con.execute("SELECT count(*) FROM events").fetchone()
                # First occurrence of each event_id within the batch, minus the ids already stored.
                con.execute(
                    f"""
                    INSERT INTO events ({cols})
                    SELECT {cols} FROM (
                        SELECT *, row_number() OVER (PARTITION BY event_id) AS bg_k FROM bg_batch
                    ) b
                    WHERE b.bg_k = 1
                      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = b.event_id)
                    """
                    if _has_duplicates(table)
                    else f"""
                    INSERT INTO events ({cols})
                    SELECT {cols} FROM bg_batch b
                    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = b.event_id)
                    """
                )
                after = con.execute("SELECT count(*) FROM events").fetchone()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("bg_batch")
        assert before is not None and after is not None
        return int(after[0]) - int(before[0])

    def _fetch(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self.connection() as con:
            return con.execute(render(sql, "duckdb"), params).fetchall()

    def count(self, experiment_id: int | None = None) -> int:
        sql = "SELECT count(*) FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = :experiment"
            params["experiment"] = int(experiment_id)
        rows = self._fetch(sql, params)
        return int(rows[0][0])

    def to_arrow(self, experiment_id: int | None = None) -> pa.Table:
        sql = f"SELECT {', '.join(COLUMNS)} FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = $experiment"
            params["experiment"] = int(experiment_id)
        with self.connection() as con:
            result = con.execute(sql + " ORDER BY ts, event_id", params)
            return result.fetch_arrow_table() if hasattr(result, "fetch_arrow_table") else result.arrow()


def _has_duplicates(table: pa.Table) -> bool:
    import pyarrow.compute as pc

    return bool(pc.count_distinct(table.column("event_id")).as_py() != table.num_rows)
