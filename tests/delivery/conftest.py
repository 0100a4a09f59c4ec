"""A small home for the delivery tests (issue 19 §4): one running experiment ``shop``, and an API app
with a write token, on either backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from tests.delivery._shop import TOKEN, make_shop

from battleground.settings import Settings


@pytest.fixture(params=["duckdb", "postgresql"])
def any_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings on each backend (PostgreSQL: a fresh database of the ``postgres_settings`` fixture)."""
    if request.param == "duckdb":
        return settings
    found: Settings = request.getfixturevalue("postgres_settings")
    return found


@pytest.fixture
def api(settings: Settings) -> Iterator[Any]:
    """A TestClient of the app over a DuckDB home with ``shop``, writable with :data:`AUTH`."""
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    make_shop(settings)
    with TestClient(create_app(dataclasses.replace(settings, api_token=TOKEN)), base_url="http://127.0.0.1") as c:
        yield c
