"""Fixtures of the warehouse tests: one event set, loaded into each engine; one Spark session.

Every engine runs for real: DuckDB and chdb in-process, PostgreSQL and MariaDB on the local servers
(each run in a fresh database, dropped afterwards), Spark in local mode (``local[2]``, UI off, two
shuffle partitions), started once for the session.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from battleground.storage._arrow import EVENT_SCHEMA

MARIADB_ADMIN_URL = os.environ.get("BATTLEGROUND_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
START = dt.datetime(2024, 3, 1)
EXPERIMENT = 7


def make_events(seed: int = 11, users: int = 400, experiment: int = EXPERIMENT) -> pa.Table:
    """Seeded events with every case the rules distinguish: exposures (some users in two variants, some
    exposed twice), events before the exposure (lookback) and after windows, empty values, covariates."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    k = 0

    def add(variant: str, user: str, kind: str, ts: dt.datetime, value: float | None = None,
            covariate: float | None = None) -> None:
        nonlocal k
        rows.append({"event_id": f"e{k}", "experiment_id": experiment, "variant": variant, "user_id": user,
                     "event_type": kind, "ts": ts, "value": value, "covariate": covariate})
        k += 1

    for u in range(users):
        user = f"u{u}"
        variant = ("control", "treatment", "other")[int(rng.integers(3))]
        t0 = START + dt.timedelta(seconds=int(rng.integers(0, 20 * 86400)), microseconds=int(rng.integers(1_000_000)))
        add(variant, user, "exposure", t0)
        if rng.random() < 0.1:
            add(variant, user, "exposure", t0 + dt.timedelta(hours=float(rng.uniform(1, 50))))
        if rng.random() < 0.05:
            add("control" if variant != "control" else "treatment", user, "exposure",
                t0 + dt.timedelta(hours=float(rng.uniform(-5, 30))))
        for _ in range(int(rng.poisson(4))):
            kind = ("purchase", "visit", "click")[int(rng.integers(3))]
            ts = t0 + dt.timedelta(days=float(rng.uniform(-10, 12)))
            value = None if rng.random() < 0.2 else float(np.round(rng.gamma(2.0, 15.0) + 1e6 * (kind == "visit"), 4))
            cov = float(rng.normal(3, 1)) if rng.random() < 0.05 else None
            add(variant, user, kind, ts, value, cov)
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


@pytest.fixture(scope="session")
def events_table() -> pa.Table:
    return make_events()


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for the whole test run."""
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)  # type: ignore[attr-defined]
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]").appName("battleground-tests")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC").config("spark.driver.memory", "1g")
        .config("spark.sql.ansi.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database for one test; dropped afterwards."""
    import sqlalchemy as sa

    name = f"bg_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(MARIADB_ADMIN_URL)
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment failure
        pytest.fail(f"MariaDB at {MARIADB_ADMIN_URL} cannot be reached ({exc}); start it (see .ci/run) "
                    "or set BATTLEGROUND_TEST_MARIADB_URL")
    base, _, _ = MARIADB_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()
