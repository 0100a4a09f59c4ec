"""The PostgreSQL event store: batches bulk-loaded with COPY, deduplicated with ON CONFLICT."""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING, Any

from battleground.storage._events_sql import COLUMNS, SCHEMA, render
from battleground.storage._pg import ensure_database, psycopg_url
from battleground.storage.events import EventStore

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

__all__ = ["PostgresEventStore"]

_SCHEMA_LOCK = 7_311_402_023
_ready: set[str] = set()


class PostgresEventStore(EventStore):
    """Events in the ``events`` table of a PostgreSQL database.

    A batch is loaded with ``COPY`` into a temporary table and inserted with
    ``INSERT … SELECT DISTINCT ON (event_id) … ORDER BY event_id ON CONFLICT (event_id) DO NOTHING`` in
    one transaction: concurrent writers with overlapping ids store each id exactly once, and taking the
    row locks in ``event_id`` order keeps them from dead-locking (a deadlock or serialization failure
    would still be retried, as the whole transaction rolls back).
    """

    backend = "postgresql"

    def __init__(self, url: str, registry_url: str | None = None) -> None:
        super().__init__(url, registry_url)
        self.dsn = psycopg_url(url)

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        if self.dsn not in _ready:
            ensure_database(self.dsn)
            with psycopg.connect(self.dsn) as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(SCHEMA.format(primary_key=" PRIMARY KEY"))
                conn.execute("CREATE INDEX IF NOT EXISTS ix_events_experiment ON events (experiment_id, event_type)")
            _ready.add(self.dsn)
        return psycopg.connect(self.dsn)

    def _write(self, table: pa.Table) -> int:
        import psycopg
        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(
            table.select(list(COLUMNS)), buffer,
            write_options=pacsv.WriteOptions(include_header=False, batch_size=65536),
        )
        payload = buffer.getbuffer()
        cols = ", ".join(COLUMNS)
        for attempt in range(8):
            try:
                with self._connect() as conn, conn.cursor() as cur:
                    cur.execute("CREATE TEMP TABLE bg_batch (LIKE events) ON COMMIT DROP")
                    with cur.copy(f"COPY bg_batch ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
                        step = 1 << 22
                        for i in range(0, len(payload), step):
                            copy.write(payload[i : i + step])
                    cur.execute(
                        f"INSERT INTO events ({cols}) "
                        f"SELECT DISTINCT ON (event_id) {cols} FROM bg_batch ORDER BY event_id "
                        "ON CONFLICT (event_id) DO NOTHING"
                    )
                    return int(cur.rowcount)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == 7:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _fetch(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            return conn.execute(render(sql, "psycopg"), params).fetchall()  # type: ignore[arg-type]

    def count(self, experiment_id: int | None = None) -> int:
        sql = "SELECT count(*) FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = :experiment"
            params["experiment"] = int(experiment_id)
        return int(self._fetch(sql, params)[0][0])

    def to_arrow(self, experiment_id: int | None = None) -> pa.Table:
        import pyarrow as pa

        sql = f"SELECT {', '.join(COLUMNS)} FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = :experiment"
            params["experiment"] = int(experiment_id)
        rows = self._fetch(sql + " ORDER BY ts, event_id", params)
        from battleground.storage._arrow import EVENT_SCHEMA

        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS]
        return pa.table(
            {name: pa.array(list(col), type=EVENT_SCHEMA.field(name).type) for name, col in zip(COLUMNS, columns, strict=True)}
        )
