"""The PostgreSQL event store: batches bulk-loaded with COPY, deduplicated with ON CONFLICT."""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from battleground.storage._events_sql import (
    COLUMNS,
    KEY,
    PG_KEY_MIGRATION,
    conflicts_sql,
    render,
    schema,
)
from battleground.storage._pg import classify_error, ensure_database, psycopg_url
from battleground.storage._producers import (
    LOOKUP_SQL,
    PRODUCER_SCHEMA,
    RECORD_SQL,
    ProducerBatch,
    check_params,
    check_sequence,
    written,
)
from battleground.storage._snapshot import (
    ReadCancelledError,
    StatementTimeoutError,
    current_snapshot,
)
from battleground.storage.events import (
    EventStore,
    WriteResult,
    has_duplicate_ids,
)

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

__all__ = ["PostgresEventStore"]

_SCHEMA_LOCK = 7_311_402_023
_ready: set[str] = set()
# The first key of the advisory lock that serialises the writers of one producer (the second: its hash).
_PRODUCER_LOCK = 0x6267
# ANALYZE the table once this many rows were stored since the last ANALYZE of this process (or at once
# after a write into a table that was never analysed): a plan made from a 1-row estimate of a table that
# holds a million rows is how a dashboard read once ran for 18 minutes.
ANALYZE_ROWS = 50_000
_since_analyze: dict[str, int] = {}
DEFAULT_STATEMENT_TIMEOUT = 60.0


def default_statement_timeout() -> float:
    """``$BATTLEGROUND_STATEMENT_TIMEOUT`` (seconds; 0 = none) or 60."""
    text = os.environ.get("BATTLEGROUND_STATEMENT_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_STATEMENT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        from battleground.errors import SettingsError

        raise SettingsError(f"BATTLEGROUND_STATEMENT_TIMEOUT must be a number of seconds >= 0, got {text!r}")
    return value


class PostgresEventStore(EventStore):
    """Events in the ``events`` table of a PostgreSQL database.

    A batch is loaded with ``COPY`` into a temporary table and inserted with
    ``INSERT … SELECT … ORDER BY experiment_id, event_id ON CONFLICT (experiment_id, event_id) DO NOTHING``
    in one transaction: the primary key makes concurrent writers with overlapping ids store each id of an
    experiment exactly once, and taking the key locks in key order keeps them from dead-locking (a deadlock or serialization
    failure would still be retried, as the whole transaction rolls back). A writer that dies before
    its commit leaves nothing: the server rolls its transaction back. A server that cannot be reached
    raises :class:`~battleground.storage.events.StoreUnavailableError` naming it (retry); a permanent
    failure (a constraint, bad data, a permission denied, a missing table: see
    :func:`~battleground.storage._pg.classify_error`) raises
    :class:`~battleground.storage.events.StoreRefusedError` (do not retry).

    Every read carries ``statement_timeout`` (seconds, default 60 or ``$BATTLEGROUND_STATEMENT_TIMEOUT``;
    0: none) and raises :class:`StatementTimeoutError` past it; inside
    :func:`~battleground.storage._snapshot.read_snapshot` reads share one ``REPEATABLE READ READ ONLY``
    transaction and can be cancelled. Large ingests are followed by ``ANALYZE`` (:data:`ANALYZE_ROWS`).
    """

    backend = "postgresql"
    dialect = "postgres"

    def __init__(self, url: str, registry_url: str | None = None, *, statement_timeout: float | None = None) -> None:
        super().__init__(url, registry_url)
        self.dsn = psycopg_url(url)
        self.statement_timeout = default_statement_timeout() if statement_timeout is None else float(statement_timeout)

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        if self.dsn not in _ready:
            ensure_database(self.dsn)
            with psycopg.connect(self.dsn) as conn:
                try:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    conn.execute(schema("postgresql"))
                    conn.execute(PG_KEY_MIGRATION)
                    conn.execute(PRODUCER_SCHEMA)
                    conn.execute("CREATE INDEX IF NOT EXISTS ix_events_experiment ON events (experiment_id, event_type)")
                except psycopg.errors.InsufficientPrivilege:
                    # A read-only (or insert-only) role may not run DDL, not even IF NOT EXISTS; when the
                    # owner has created the table it can still use it, and what it may not do fails later
                    # with its own SQLSTATE.
                    conn.rollback()
                    if conn.execute("SELECT to_regclass('events')").fetchone() == (None,):
                        raise
            _ready.add(self.dsn)
        return psycopg.connect(self.dsn)

    def _write(self, table: pa.Table, producer: ProducerBatch | None = None) -> WriteResult:
        import numpy as np
        import psycopg
        import pyarrow as pa
        import pyarrow.csv as pacsv

        data = table.select(list(COLUMNS))
        names = list(COLUMNS)
        keys = ", ".join(KEY)
        order = keys
        if has_duplicate_ids(table):
            # ON CONFLICT DO NOTHING also skips ids repeated within the statement; ordering by the row
            # number keeps the first occurrence, as the DuckDB store does.
            data = data.append_column("bg_row", pa.array(np.arange(data.num_rows, dtype=np.int64)))
            names.append("bg_row")
            order = f"{keys}, bg_row"
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, write_options=pacsv.WriteOptions(include_header=False, batch_size=65536))
        payload = buffer.getbuffer()
        cols = ", ".join(COLUMNS)
        extra = ", bg_row BIGINT" if "bg_row" in names else ""
        for attempt in range(8):
            try:
                with self._connect() as conn, conn.cursor() as cur:
                    check = None
                    if producer is not None:
                        # one writer per producer at a time, so that the check is exact under retries
                        cur.execute("SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))", (_PRODUCER_LOCK, producer.producer))
                        cur.execute(render(LOOKUP_SQL, "psycopg"), producer.params())
                        found = cur.fetchone()
                        previous, seen = (found[0], found[1]) if found else (None, None)
                        check = check_sequence(producer, previous=previous, seen=bool(seen))
                    cur.execute(f"CREATE TEMP TABLE bg_batch (LIKE events{extra}) ON COMMIT DROP")
                    with cur.copy(f"COPY bg_batch ({', '.join(names)}) FROM STDIN WITH (FORMAT csv)") as copy:
                        step = 1 << 22
                        for i in range(0, len(payload), step):
                            copy.write(payload[i : i + step])
                    cur.execute(
                        f"INSERT INTO events ({cols}) SELECT {cols} FROM bg_batch ORDER BY {order} "
                        f"ON CONFLICT ({keys}) DO NOTHING"
                    )
                    inserted = int(cur.rowcount)
                    conflicts = 0
                    if inserted < table.num_rows:  # some ids were known: re-sent as they were, or changed?
                        cur.execute(conflicts_sql("bg_batch"))
                        row = cur.fetchone()
                        conflicts = int(row[0]) if row else 0
                    if check is not None and check.status != "replay":
                        cur.execute(render(RECORD_SQL, "psycopg"), check_params(producer, table.num_rows, inserted))
                    result = written(inserted, table.num_rows - inserted - conflicts, conflicts, check)
                self._maybe_analyze(inserted)
                return result
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                if attempt == 7:
                    raise self._classified(exc, writing=True) from exc
                time.sleep(0.05 * (attempt + 1))
            except psycopg.Error as exc:
                raise self._classified(exc, writing=True) from exc
        raise AssertionError("unreachable")

    def _maybe_analyze(self, inserted: int) -> None:
        """``ANALYZE events`` after large ingests (see :data:`ANALYZE_ROWS`); never fails the write."""
        import psycopg

        if inserted <= 0:
            return
        pending = _since_analyze.get(self.dsn, 0) + inserted
        try:
            with self._connect() as conn:
                if pending < ANALYZE_ROWS:
                    row = conn.execute(
                        "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL FROM pg_stat_user_tables "
                        "WHERE relid = to_regclass('events')"
                    ).fetchone()
                    if not (row and row[0]) or pending < 1_000:
                        _since_analyze[self.dsn] = pending
                        return
                conn.execute("ANALYZE events")
            _since_analyze[self.dsn] = 0
        except psycopg.Error:
            _since_analyze[self.dsn] = pending  # autovacuum will get to it; the batch is stored

    def _classified(self, exc: Exception, *, writing: bool) -> Exception:
        """:class:`StoreUnavailableError` (retry) or :class:`StoreRefusedError` (do not), by SQLSTATE."""
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(self.dsn)
        where = f"the event store (PostgreSQL at {params.get('host') or 'localhost'}:{params.get('port') or 5432})"
        return classify_error(exc, where=where, writing=writing)

    def _timeout_ms(self) -> int:
        return max(0, round(self.statement_timeout * 1000))

    def _open_snapshot(self, stack: contextlib.ExitStack) -> tuple[psycopg.Connection[Any], Callable[[], None]]:
        from psycopg import IsolationLevel

        conn = stack.enter_context(self._connect())
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        self._plan_settings(conn)  # the first statement opens the transaction
        return conn, conn.cancel_safe

    def _plan_settings(self, conn: psycopg.Connection[Any], *, scan: bool = True) -> None:
        conn.execute(f"SET LOCAL statement_timeout = {self._timeout_ms()}")
        if scan:
            # Right after a load the table has no statistics yet (autovacuum analyses it later),
            # and the planner then joins every event to every user in a nested loop: quadratic.
            # A whole-experiment aggregate is always a hash join of the users with their events.
            # (The penalty that setting puts on plan costs would then trigger JIT compilation,
            # seconds of it for a query that runs in milliseconds: off too.)
            conn.execute("SET LOCAL enable_nestloop = off")
            conn.execute("SET LOCAL jit = off")

    def _fetch(self, sql: str, params: dict[str, Any], *, scan: bool = False) -> list[tuple[Any, ...]]:
        import psycopg

        snap = current_snapshot()
        try:
            if snap is not None:
                conn = snap.connection(f"postgresql:{self.dsn}", self._open_snapshot)
                return conn.execute(render(sql, "psycopg"), params).fetchall()  # type: ignore[arg-type]
            with self._connect() as conn:
                self._plan_settings(conn, scan=scan)
                return conn.execute(render(sql, "psycopg"), params).fetchall()  # type: ignore[arg-type]
        except psycopg.errors.QueryCanceled as exc:
            if snap is not None and snap.cancelled:
                raise ReadCancelledError("the read was cancelled (the client went away)") from exc
            raise StatementTimeoutError(
                f"an event-store read ran past statement_timeout ({self.statement_timeout:g} s) and was "
                "cancelled; narrow the window, or raise BATTLEGROUND_STATEMENT_TIMEOUT"
            ) from exc
        except psycopg.Error as exc:
            raise self._classified(exc, writing=False) from exc

    def to_arrow(self, experiment_id: int | None = None) -> pa.Table:
        import pyarrow as pa

        sql = f"SELECT {', '.join(COLUMNS)} FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = :experiment"
            params["experiment"] = int(experiment_id)
        rows = self._fetch(sql + " ORDER BY ts, event_id", params)
        from battleground.storage._arrow import EVENT_SCHEMA

        columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
        return pa.table(
            {name: pa.array(list(col), type=EVENT_SCHEMA.field(name).type) for name, col in zip(COLUMNS, columns, strict=True)}
        )
