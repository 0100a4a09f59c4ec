"""Fixtures shared by the whole suite.

PostgreSQL tests use the real server at ``BATTLEGROUND_TEST_POSTGRES_URL`` (default: the local server,
database ``test``), each test in a fresh database that is dropped afterwards. They never skip: a
server that cannot be reached fails them loudly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from battleground.settings import Settings, quiet_third_party_telemetry

quiet_third_party_telemetry()

DATA = Path(__file__).parent / "data"
POSTGRES_ADMIN_URL = os.environ.get(
    "BATTLEGROUND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings living in a temporary home folder."""
    return Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    import psycopg

    name = f"bg_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment failure
        pytest.fail(
            f"PostgreSQL at {POSTGRES_ADMIN_URL} cannot be reached ({exc}); "
            "start it (see .ci/run) or set BATTLEGROUND_TEST_POSTGRES_URL"
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(POSTGRES_ADMIN_URL, name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_settings(tmp_path: Path, postgres_url: str) -> Settings:
    """Settings whose registry and events live in a fresh PostgreSQL database."""
    return Settings.from_env(
        {
            "BATTLEGROUND_HOME": str(tmp_path / ".battleground"),
            "BATTLEGROUND_DATABASE_URL": postgres_url,
        }
    )


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the local Spark session runs on one xdist worker (``--dist loadgroup``), so the
    suite starts one JVM rather than one per worker."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("spark"))
