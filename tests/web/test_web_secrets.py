"""No reply, page or log line of the dashboard shows a password, the token or the home folder: a secret
is planted in the database URL and the token, every error path is hit, and everything is grepped."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from battleground.settings import Settings

PASSWORD = "pl4nted-db-secret"
TOKEN = "pl4nted-api-token"
HTML = {"accept": "text/html"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _with_password(url: str, port: int | None = None) -> str:
    scheme, _, rest = url.partition("://")
    user_host, _, db = rest.partition("/")
    user, _, host = user_host.rpartition("@")
    if port is not None:
        host = f"{host.split(':')[0]}:{port}"
    return f"{scheme}://{user or 'postgres'}:{PASSWORD}@{host}/{db}"


def _settings(home: Path, url: str) -> Settings:
    return Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_DATABASE_URL": url,
                              "BATTLEGROUND_API_TOKEN": TOKEN})


@pytest.fixture
def secret_client(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Any, Settings]]:
    from fastapi.testclient import TestClient

    from battleground.experiment.register import Registry
    from battleground.web import create_app

    settings = _settings(tmp_path / ".battleground", _with_password(postgres_url))
    registry = Registry(settings.registry_url)  # the local server trusts: the password is only planted
    exp = registry.create_experiment("leaky", metrics=[{"name": "m", "kind": "proportion", "numerator": "buy"}],
                                     start_at="2022-03-01")
    registry.start(exp.id)
    with TestClient(create_app(settings), base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c, settings


def _assert_clean(texts: list[str], settings: Settings) -> None:
    for text in texts:
        assert PASSWORD not in text, text[:500]
        assert TOKEN not in text, text[:500]
        assert str(settings.home) not in text, text[:500]


def _error_paths(c: Any) -> list[Any]:
    event = {"event_id": "e1", "variant": "control", "user_id": "u1", "event_type": "exposure",
             "timestamp": "2022-03-02T10:00:00"}
    return [
        c.get("/api/experiments/999999"),
        c.get("/api/experiments/no-such-name"),
        c.get("/api/experiments/999999/results"),
        c.get("/api/experiments/leaky/results", params={"start": "yesterday"}),
        c.get("/api/experiments/999999/audit"),
        c.get("/experiments/999999", headers=HTML),
        c.get("/experiments/999999/report", headers=HTML),
        c.get("/no-such-page", headers=HTML),
        c.post("/api/events", json={"experiment": 999999, "events": [event]}, headers=AUTH),
        c.post("/api/events", json={"experiment": "leaky", "events": [{**event, "variant": "nope"}]}, headers=AUTH),
        c.post("/api/events", json={"events": [event]}, headers=AUTH),
        c.post("/api/events", content=b"{not json", headers={**AUTH, "content-type": "application/json"}),
        c.post("/api/events", json={"experiment": "leaky", "events": [event]}),
        c.post("/api/events", json={"experiment": "leaky", "events": [event]},
               headers={"Authorization": "Bearer wrong"}),
    ]


@pytest.mark.postgres
def test_no_error_reply_or_log_line_shows_a_secret(
    secret_client: tuple[Any, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    c, settings = secret_client
    with caplog.at_level(logging.DEBUG):
        replies = _error_paths(c)
        statuses = [r.status_code for r in replies]
        assert statuses == [404, 404, 404, 422, 404, 404, 404, 404, 422, 422, 422, 422, 401, 401], statuses
        texts = [r.text for r in replies] + [str(dict(r.headers)) for r in replies]
        texts += [c.get(u, headers=HTML).text for u in ("/", "/experiments/leaky", "/api/experiments")]
    # the reproduction: the 404 named the registry by its full URL, password included
    assert "leaky" not in replies[0].text and "999999" in replies[0].text
    _assert_clean([*texts, caplog.text], settings)
    assert "registry.db" not in replies[0].text and "postgresql" not in replies[0].text


@pytest.mark.postgres
def test_an_unreachable_store_is_reported_without_its_password(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    from fastapi.testclient import TestClient

    from battleground.web import create_app

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = _settings(tmp_path / ".battleground", _with_password(postgres_url, port=port))
    with caplog.at_level(logging.DEBUG), TestClient(
        create_app(settings), base_url="http://127.0.0.1", raise_server_exceptions=False
    ) as c:
        replies = [c.get("/api/experiments"), c.get("/", headers=HTML), c.get("/api/experiments/1"),
                   c.post("/api/events", json={"experiment": 1, "events": [{
                       "event_id": "e", "variant": "a", "user_id": "u", "event_type": "exposure",
                       "timestamp": "2022-03-02T10:00:00"}]}, headers=AUTH)]
    assert [r.status_code for r in replies] == [503, 503, 503, 503], [r.text for r in replies]
    assert "unavailable" in replies[0].json()["detail"]
    _assert_clean([r.text for r in replies] + [caplog.text], settings)


def test_errors_and_reprs_redact_at_the_source(tmp_path: Path) -> None:
    from battleground.errors import SettingsError
    from battleground.storage.events import registry_url_for

    url = f"postgresql://ana:{PASSWORD}@db.internal:5432/battleground"
    s = _settings(tmp_path / "h", url)
    assert PASSWORD not in repr(s) and TOKEN not in repr(s) and str(tmp_path) not in repr(s)
    with pytest.raises(SettingsError) as bad:
        Settings.from_env({"BATTLEGROUND_DATABASE_URL": f"mysql://ana:{PASSWORD}@db/x"})
    assert PASSWORD not in str(bad.value) and "mysql://ana:***@db/x" in str(bad.value)
    with pytest.raises(ValueError) as bad_store:
        registry_url_for(f"mysql://ana:{PASSWORD}@db/x")
    assert PASSWORD not in str(bad_store.value)
