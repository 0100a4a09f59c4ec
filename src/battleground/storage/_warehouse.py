"""Warehouse-native sums: the shared queries compiled for an engine and run where the events live.

An :class:`Engine` runs SQL text and returns rows: DuckDB (in-process, over tables or Parquet/Delta
files in place), any SQLAlchemy URL (PostgreSQL, MariaDB/MySQL, …), a Spark session, or ClickHouse
in-process through chdb. :class:`WarehouseEventStore` is a read-only :class:`EventStore` over one
engine and one relation in battleground's event schema (a table, or a source's mapping of the user's
table, see ``_sources.py``): every sum it returns comes from the same compiled definition as the
embedded stores, and only the per-variant sums come back.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from battleground._redact import redact_url
from battleground.errors import StorageError
from battleground.storage.events import EventStore, StoreUnavailableError, WriteResult

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

__all__ = [
    "ChdbEngine",
    "DuckDBEngine",
    "Engine",
    "ReadOnlySourceError",
    "SparkEngine",
    "SqlAlchemyEngine",
    "WarehouseEventStore",
    "open_engine",
]

# Instants outside this range are clamped before they become literals (ClickHouse's DateTime64 ends in
# 2299; the open bounds of the stores are 1900 and 9999). Events themselves lie in 1900–2261.
_LOW = dt.datetime(1900, 1, 1)
_HIGH = dt.datetime(2261, 12, 31)


class ReadOnlySourceError(StorageError, RuntimeError):
    """A warehouse source is read in place: battleground never writes events into it."""


class Engine(Protocol):
    """Runs SQL text of one dialect (sqlglot's name) and returns all rows as tuples."""

    dialect: str

    def fetch(self, sql: str) -> list[tuple[Any, ...]]: ...


class DuckDBEngine:
    """DuckDB in this process (``connection``: an open one; default a new in-memory database)."""

    dialect = "duckdb"

    def __init__(self, connection: Any = None) -> None:
        import duckdb

        self.connection = connection if connection is not None else duckdb.connect(":memory:")

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.connection.execute(sql).fetchall()]


class SqlAlchemyEngine:
    """Any database SQLAlchemy reaches (``mysql+pymysql://…``, ``postgresql+psycopg://…``, …); the SQL
    goes to the driver as it is (all values are literals), so no placeholder syntax is involved."""

    _DIALECTS: ClassVar[dict[str, str]] = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgres", "sqlite": "sqlite",
                 "mssql": "tsql", "oracle": "oracle", "snowflake": "snowflake", "bigquery": "bigquery",
                 "trino": "trino", "redshift": "redshift", "databricks": "databricks", "clickhouse": "clickhouse"}

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.url = url
        self.engine = create_engine(url, pool_pre_ping=True)
        name = self.engine.dialect.name
        if name not in self._DIALECTS:
            raise StorageError(f"no SQL dialect known for SQLAlchemy dialect {name!r} of {redact_url(url)!r}")
        self.dialect = self._DIALECTS[name]

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        from sqlalchemy.exc import OperationalError

        try:
            raw = self.engine.raw_connection()
        except OperationalError as exc:
            raise StoreUnavailableError(f"source database {redact_url(self.url)} cannot be reached: {exc.orig}; "
                                        "check the URL, the server and the credentials") from exc
        try:
            cursor = raw.cursor()
            cursor.execute(sql)
            rows = [tuple(r) for r in cursor.fetchall()]
            cursor.close()
            return rows
        finally:
            raw.close()


class SparkEngine:
    """A Spark session (``session``; default the active one, or a new one built from ``config``)."""

    dialect = "spark"

    def __init__(self, session: Any = None, config: dict[str, str] | None = None) -> None:
        if session is None:
            from pyspark.sql import SparkSession

            builder = SparkSession.builder
            for key, value in (config or {}).items():
                builder = builder.config(key, value)
            session = builder.getOrCreate()
        self.session = session

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of ``sql``, run with the session's time zone set to UTC (battleground's instants
        are UTC: the query's literals and its TIMESTAMP columns are read so), and the user's setting
        put back. Spark hands TIMESTAMP values to Python in the process's local time; they come back
        as naive UTC, as every engine gives them."""
        conf = self.session.conf
        zone = conf.get("spark.sql.session.timeZone")
        conf.set("spark.sql.session.timeZone", "UTC")
        try:
            frame = self.session.sql(sql)
            rows = frame.collect()
            instants = [i for i, f in enumerate(frame.schema.fields) if f.dataType.typeName() == "timestamp"]
        finally:
            conf.set("spark.sql.session.timeZone", zone)
        if not instants:
            return [tuple(r) for r in rows]
        out = []
        for r in rows:
            values = list(r)
            for i in instants:
                if values[i] is not None:  # naive local time → the instant → naive UTC
                    values[i] = values[i].astimezone(dt.UTC).replace(tzinfo=None)
            out.append(tuple(values))
        return out


class ChdbEngine:
    """ClickHouse in this process through chdb (``session``: a ``chdb.session.Session``; default a new
    one in memory). NULL semantics as in standard SQL: outer joins give NULLs, aggregates of no rows
    NULL, and instants are UTC."""

    dialect = "clickhouse"
    # prefer_column_name_to_alias: `MIN(variant) AS variant` must not shadow the column inside other
    # aggregates (ClickHouse resolves aliases everywhere in a query, unlike standard SQL)
    _SETTINGS = (" SETTINGS join_use_nulls = 1, aggregate_functions_null_for_empty = 1, session_timezone = 'UTC',"
                 " prefer_column_name_to_alias = 1")

    def __init__(self, session: Any = None) -> None:
        if session is None:
            from chdb import session as chs

            session = chs.Session()
        self.session = session

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        table = self.session.query(sql + self._SETTINGS, "ArrowTable")
        return [tuple(r.values()) for r in table.to_pylist()]


def open_engine(connection: Any, config: dict[str, str] | None = None) -> Engine:
    """An engine from a connection setting: ``"duckdb"`` (in memory), ``"spark"`` (the active session,
    or one built from ``config``), ``"chdb"``, a SQLAlchemy URL, or an engine object already built."""
    if hasattr(connection, "fetch") and hasattr(connection, "dialect"):
        return connection  # type: ignore[no-any-return]
    if connection in (None, "duckdb"):
        return DuckDBEngine()
    if connection == "spark":
        return SparkEngine(config=config)
    if connection in ("chdb", "clickhouse"):
        return ChdbEngine()
    if isinstance(connection, str) and "://" in connection:
        return SqlAlchemyEngine(connection)
    raise StorageError(
        f"a source connection must be 'duckdb', 'spark', 'chdb' or a SQLAlchemy URL, got {connection!r}"
    )


class WarehouseEventStore(EventStore):
    """Read-only sums over ``relation`` (battleground's event columns) on ``engine``.

    Args:
        engine: where the SQL runs.
        relation: a table name, or a sqlglot expression (a query) giving the columns ``experiment_id,
            variant, user_id, event_type, ts, value, covariate``; default the table ``events``.
        registry_url: the registry (for the facade functions that look metrics up by name).
        name: what errors call this store (a source's name).
    """

    backend = "warehouse"

    def __init__(self, engine: Engine, relation: str | exp.Expression = "events", registry_url: str = "",
                 *, name: str = "") -> None:
        from sqlglot import exp

        self.engine = engine
        self.dialect = engine.dialect
        self.relation: exp.Expression | None = (
            None if relation == "events" else exp.to_table(relation) if isinstance(relation, str) else relation
        )
        self.name = name or f"{engine.dialect} source"
        self.url = f"warehouse:{self.name}"
        self.registry_url = registry_url

    def __repr__(self) -> str:
        return f"WarehouseEventStore({self.name!r}, dialect={self.dialect!r})"

    def compiled(self, sql: str, params: dict[str, Any], *, pretty: bool = False) -> str:
        """``sql`` as this engine runs it (values bound as literals, ``events`` replaced by the relation)."""
        from battleground.storage._compile import compile_sql

        bound = {k: min(max(v, _LOW), _HIGH) if isinstance(v, dt.datetime) else v for k, v in params.items()}
        return compile_sql(sql, self.dialect, bound, events=self.relation, pretty=pretty)

    def _query(self, sql: str, params: dict[str, Any], *, scan: bool = False) -> list[tuple[Any, ...]]:
        return self._fetch(sql, params, scan=scan)

    def _fetch(self, sql: str, params: dict[str, Any], *, scan: bool = False) -> list[tuple[Any, ...]]:
        return self.engine.fetch(self.compiled(sql, params))

    def _write(self, table: pa.Table, producer: Any = None) -> WriteResult:
        raise ReadOnlySourceError(
            f"{self.name} is read in place; battleground never writes events into it (ingest into the "
            "battleground store instead, or write to the source with its own tools)"
        )

    def to_arrow(self, experiment_id: int | None = None) -> pa.Table:
        import pyarrow as pa

        from battleground.storage._arrow import EVENT_SCHEMA
        from battleground.storage._events_sql import COLUMNS

        cols = [c for c in COLUMNS if c != "event_id"]
        sql = f"SELECT {', '.join(cols)} FROM events"
        params: dict[str, Any] = {}
        if experiment_id is not None:
            sql += " WHERE experiment_id = :experiment"
            params["experiment"] = int(experiment_id)
        rows = self._fetch(sql + " ORDER BY ts", params)
        data = list(zip(*rows, strict=True)) if rows else [() for _ in cols]
        return pa.table({c: pa.array(list(v), type=EVENT_SCHEMA.field(c).type) for c, v in zip(cols, data, strict=True)})



def sums_sql(
    experiment_id: int,
    metrics: Any,
    dialect: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    multiple_exposures: str = "exclude",
    relation: str | exp.Expression | None = None,
    pretty: bool = True,
    attributes: Any = None,
) -> str:
    """The metric-sums query of an experiment as ``dialect`` runs it, values bound (what
    ``battleground events sql`` prints, for engines that cannot run here); ``attributes``: with the
    CUPED++ sums of these numeric user attributes (``EventStore.experiment_sums``)."""
    from battleground.storage._compile import compile_sql, dialect_name
    from battleground.storage._sums_sql import metric_sums_many_sql
    from battleground.storage.events import _attributes, _definitions, _params

    defs = _definitions(metrics)
    attrs = _attributes(attributes)
    params = {k: min(max(v, _LOW), _HIGH) if isinstance(v, dt.datetime) else v
              for k, v in _params(experiment_id, defs, start, end).items()}
    params.update({f"at{i}": a for i, a in enumerate(attrs or ())})
    from sqlglot import exp as _exp

    events = _exp.to_table(relation) if isinstance(relation, str) else relation
    covariates = None if attrs is None else len(attrs)
    return compile_sql(metric_sums_many_sql(defs, multiple_exposures, covariates=covariates), dialect_name(dialect), params,
                       events=events, pretty=pretty)
