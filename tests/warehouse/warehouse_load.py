"""Loading one Arrow table of events into each engine (test set-up, not part of battleground)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from battleground.storage._warehouse import ChdbEngine, DuckDBEngine, SparkEngine, SqlAlchemyEngine

COLUMNS = ("experiment_id", "variant", "user_id", "event_type", "ts", "value", "covariate")


def duckdb_engine(table: pa.Table) -> DuckDBEngine:
    engine = DuckDBEngine()
    engine.connection.register("source_arrow", table)
    engine.connection.execute("CREATE TABLE events AS SELECT * FROM source_arrow")
    return engine


def spark_engine(spark: Any, table: pa.Table, name: str = "events", *, instants: bool = False) -> SparkEngine:
    """The events as a Spark temporary view; ``instants``: ``ts`` as Spark's TIMESTAMP (an instant,
    shown in the session's time zone) instead of TIMESTAMP_NTZ."""
    from pyspark.sql.types import (
        DoubleType,
        IntegerType,
        StringType,
        StructField,
        StructType,
        TimestampNTZType,
        TimestampType,
    )

    schema = StructType([
        StructField("event_id", StringType()), StructField("experiment_id", IntegerType()),
        StructField("variant", StringType()), StructField("user_id", StringType()),
        StructField("event_type", StringType()), StructField("ts", TimestampType() if instants else TimestampNTZType()),
        StructField("value", DoubleType()), StructField("covariate", DoubleType()),
    ])
    rows = [tuple(r.values()) for r in table.to_pylist()]
    if instants:  # the stored naive times are UTC: hand Spark aware datetimes so it keeps the instants
        at = list(schema.names).index("ts")
        rows = [(*r[:at], r[at].replace(tzinfo=dt.UTC), *r[at + 1:]) for r in rows]
    spark.createDataFrame(rows, schema).createOrReplaceTempView(name)
    return SparkEngine(spark)


def chdb_engine(table: pa.Table) -> ChdbEngine:
    engine = ChdbEngine()
    engine.session.query(
        "CREATE TABLE events (event_id String, experiment_id Int32, variant String, user_id String, "
        "event_type String, ts DateTime64(6, 'UTC'), value Nullable(Float64), covariate Nullable(Float64)) "
        "ENGINE = Memory"
    )
    values = ",".join(
        f"('{r['event_id']}', {r['experiment_id']}, '{r['variant']}', '{r['user_id']}', '{r['event_type']}', "
        f"'{r['ts']:%Y-%m-%d %H:%M:%S.%f}', {_num(r['value'])}, {_num(r['covariate'])})"
        for r in table.to_pylist()
    )
    engine.session.query(f"INSERT INTO events VALUES {values}")
    return engine


def mariadb_engine(url: str, table: pa.Table) -> SqlAlchemyEngine:
    engine = SqlAlchemyEngine(url)
    raw = engine.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            "CREATE TABLE events (event_id VARCHAR(64) NOT NULL, experiment_id INT NOT NULL, "
            "variant VARCHAR(64) NOT NULL, user_id VARCHAR(64) NOT NULL, event_type VARCHAR(64) NOT NULL, "
            "ts DATETIME(6) NOT NULL, value DOUBLE, covariate DOUBLE, KEY (experiment_id, user_id)) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )
        cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        [tuple(r.values()) for r in table.to_pylist()])
        raw.commit()
    finally:
        raw.close()
    return engine


def _num(v: float | None) -> str:
    return "NULL" if v is None else repr(float(v))
