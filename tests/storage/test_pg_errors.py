"""PostgreSQL failures are classified by SQLSTATE: transient ones (connection lost, server shutting down,
deadlock, serialization failure) say "re-send"; permanent ones (a constraint, bad data, a permission
denied, a missing table) say "do not", so a producer never retries them forever. Against the real
server, in a fresh database (and a throwaway role) per test."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._pg import classify_error, is_transient
from battleground.storage.events import StoreRefusedError, StoreUnavailableError


def _batch(n: int, start: int = 0, value: float = 1.0) -> list[dict[str, Any]]:
    return [{"event_id": f"e{i}", "experiment": "errs", "variant": "control", "user_id": f"u{i}",
             "event_type": "exposure", "timestamp": dt.datetime(2022, 3, 5, 10), "value": value}
            for i in range(start, start + n)]


@pytest.fixture
def prepared(postgres_settings: Settings) -> Settings:
    Registry(postgres_settings.registry_url).create_experiment("errs", variants={"control": 0.5, "treatment": 0.5})
    assert ingest(postgres_settings, _batch(3)).inserted == 3
    return postgres_settings


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [("08006", True), ("08001", True), ("57P01", True), ("57P03", True), ("40001", True), ("40P01", True),
     ("53300", True), ("23505", False), ("23514", False), ("22001", False), ("22P02", False),
     ("54000", False), ("42501", False), ("42P01", False), ("28P01", False), ("3D000", False),
     ("53100", False), ("25006", False)],
)
def test_sqlstates_are_classified(sqlstate: str, transient: bool) -> None:
    exc = psycopg.errors.lookup(sqlstate)("boom")
    assert is_transient(exc) is transient
    out = classify_error(exc, where="the event store", writing=True)
    assert isinstance(out, StoreUnavailableError if transient else StoreRefusedError)
    if transient:
        assert "re-send it" in str(out)
    else:
        assert isinstance(out, StoreRefusedError) and out.sqlstate == sqlstate and not out.retryable
        assert "re-sending it will fail the same way" in str(out) and f"SQLSTATE {sqlstate}" in str(out)
        assert out.status == (422 if sqlstate[:2] in ("22", "23", "54") else 500)


def test_a_connection_that_cannot_be_made_is_transient() -> None:
    assert is_transient(psycopg.OperationalError("connection refused"))  # no SQLSTATE at all


def test_a_check_constraint_is_a_permanent_data_error(prepared: Settings) -> None:
    with _admin(prepared.events_url) as conn:
        conn.execute("ALTER TABLE events ADD CONSTRAINT small_values CHECK (value < 100)")
    with pytest.raises(StoreRefusedError) as refused:
        ingest(prepared, _batch(2, start=10, value=500.0))
    assert refused.value.sqlstate == "23514" and refused.value.status == 422
    assert "small_values" in str(refused.value) and "re-sending it will fail the same way" in str(refused.value)
    assert open_event_store(prepared).count() == 3  # untouched


def test_a_dropped_table_is_permanent(prepared: Settings) -> None:
    store = open_event_store(prepared)
    with _admin(prepared.events_url) as conn:
        conn.execute("DROP TABLE events")
    with pytest.raises(StoreRefusedError) as refused:
        store.write_batch(_table(prepared))
    assert refused.value.sqlstate == "42P01" and refused.value.status == 500
    assert "battleground db upgrade" in str(refused.value)
    with pytest.raises(StoreRefusedError):  # reads too
        store.count()


def _table(s: Settings) -> Any:
    from battleground.experiment.events import read_events, validate_events

    return validate_events(read_events(_batch(2, start=20)), Registry(s.registry_url))


@pytest.fixture
def reader(prepared: Settings) -> Iterator[Settings]:
    """The same database through a role that may read but not write (a revoked INSERT)."""
    role = f"bg_ro_{uuid.uuid4().hex[:10]}"
    with _admin(prepared.events_url) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    base, _, rest = prepared.events_url.partition("://")
    url = f"{base}://{role}@{rest.split('@', 1)[1]}"
    try:
        yield Settings.from_env({"BATTLEGROUND_HOME": str(prepared.home), "BATTLEGROUND_DATABASE_URL": url})
    finally:
        with _admin(prepared.events_url) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_a_revoked_permission_is_permanent_and_names_the_privilege(reader: Settings) -> None:
    with pytest.raises(StoreRefusedError) as refused:
        ingest(reader, _batch(2, start=30))
    assert refused.value.sqlstate == "42501" and refused.value.status == 500
    assert "lacks a privilege" in str(refused.value)
    assert not isinstance(refused.value, StoreUnavailableError)


def test_the_api_answers_a_permanent_failure_without_retry_after(reader: Settings) -> None:
    import dataclasses

    from fastapi.testclient import TestClient

    from battleground.web import create_app

    app = create_app(dataclasses.replace(reader, api_token="t"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.post("/api/events", json={"experiment": "errs", "events": [
            {**e, "timestamp": e["timestamp"].isoformat()} for e in _batch(1, start=40)]},
                        headers={"Authorization": "Bearer t"})
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["retryable"] is False and body["sqlstate"] == "42501" and "Retry-After" not in r.headers
    assert "re-send" not in body["detail"].replace("re-sending it will fail", "")


def _decision(i: int) -> Any:
    from battleground.storage.decisions import DecisionRow

    return DecisionRow(decision_id=f"d{i}", policy="lints", experiment_id=None, variant=None, unit_id=f"u{i}",
                       context=(0.5,), action=1, propensity=0.5, policy_version=1, trains=True,
                       ts=dt.datetime(2022, 3, 5, 10, tzinfo=dt.UTC))


def test_the_decision_log_classifies_a_wrong_password_as_permanent(prepared: Settings) -> None:
    from battleground.storage.decisions import open_decision_log

    base, _, rest = prepared.events_url.partition("://")
    host = rest.split("@", 1)[1]
    with pytest.raises(StoreRefusedError) as refused:
        open_decision_log(f"{base}://nobody_{uuid.uuid4().hex[:6]}:planted-secret@{host}").log([_decision(1)])
    assert refused.value.sqlstate in ("28000", "28P01") and "check the user and password" in str(refused.value)
    assert "planted-secret" not in str(refused.value) and not isinstance(refused.value, StoreUnavailableError)


def test_the_decision_log_classifies_a_revoked_insert_as_permanent(prepared: Settings, reader: Settings) -> None:
    from battleground.storage.decisions import open_decision_log

    open_decision_log(prepared.events_url).log([_decision(1)])  # the tables exist, owned by the admin
    with _admin(prepared.events_url) as conn:
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO "
                     + reader.events_url.split("://", 1)[1].split("@", 1)[0])
    log = open_decision_log(reader.events_url)
    assert log.count()[0] == 1  # a role that may only read reads
    with pytest.raises(StoreRefusedError) as refused:
        log.log([_decision(2)])
    assert refused.value.sqlstate == "42501" and "lacks a privilege" in str(refused.value)
    assert open_decision_log(prepared.events_url).count()[0] == 1  # untouched


def test_a_role_that_may_only_read_reads_the_event_store(reader: Settings) -> None:
    assert open_event_store(reader).count() == 3  # no DDL on first connect gets in its way
