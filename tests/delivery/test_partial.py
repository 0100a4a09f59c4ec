"""A batch straddling an experiment's stop (issue 19 §4): refused whole by default, naming every refused
row and why; with ``partial`` the valid part is stored and the refused rows come back. Both backends,
the Python API, the CLI and the HTTP API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from tests.delivery._shop import AUTH, HEADER, TOKEN, event, make_shop
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.events import EventValidationError, ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings

STOP = dt.datetime(2022, 3, 3)


def _stopped_shop(settings: Settings) -> Any:
    store = make_shop(settings)
    registry = Registry(store.registry_url)
    registry.start("shop", at=dt.datetime(2022, 3, 1))
    registry.stop("shop", "target reached", at=STOP)
    return store


def _straddling(n: int = 10, late: tuple[int, ...] = (3, 7, 8, 9)) -> list[dict[str, Any]]:
    """``n`` events on 2022-03-02, except rows ``late``, which are after the stop."""
    return [event(i, timestamp="2022-03-03T10:00:00" if i in late else "2022-03-02T10:00:00") for i in range(n)]


def test_default_refuses_whole_batch_naming_every_late_row(any_settings: Settings) -> None:
    store = _stopped_shop(any_settings)
    with pytest.raises(EventValidationError) as info:
        ingest(store, _straddling())
    exc = info.value
    assert (exc.row, exc.field) == (3, "timestamp")
    assert [r.row for r in exc.rejected] == [3, 7, 8, 9]
    assert [r.event_id for r in exc.rejected] == ["e3", "e7", "e8", "e9"]
    assert all("at or after its stop (2022-03-03T00:00:00)" in r.reason for r in exc.rejected)
    message = str(exc)
    assert message.startswith("row 3, field 'timestamp': 2022-03-03T10:00:00 is at or after its stop"), message
    assert "in all 4 of the batch's 10 rows are refused: 4 are at or after its stop" in message, message
    assert "(rows 3, 7, 8, 9)" in message and "partial=True" in message and "other 6 rows" in message
    assert store.count() == 0


def test_partial_stores_the_valid_part_and_returns_the_rest(any_settings: Settings) -> None:
    store = _stopped_shop(any_settings)
    result = ingest(store, _straddling(), partial=True)
    assert (result.received, result.inserted, result.duplicates, result.conflicts) == (10, 6, 0, 0)
    assert [(r.row, r.field, r.event_id) for r in result.rejected] == [
        (3, "timestamp", "e3"), (7, "timestamp", "e7"), (8, "timestamp", "e8"), (9, "timestamp", "e9")]
    assert sorted(store.to_arrow().column("event_id").to_pylist()) == ["e0", "e1", "e2", "e4", "e5", "e6"]
    # re-sending the same batch: the stored part is a duplicate, the late part is refused again
    again = ingest(store, _straddling(), partial=True)
    assert (again.inserted, again.duplicates, len(again.rejected)) == (0, 6, 4)
    assert store.count() == 6


def test_partial_reports_variants_and_keeps_contract_errors_whole(any_settings: Settings) -> None:
    store = _stopped_shop(any_settings)
    rows = _straddling(6, late=(5,))
    rows[1]["variant"] = "contrl"
    result = ingest(store, rows, partial=True)
    assert [(r.row, r.field) for r in result.rejected] == [(1, "variant"), (5, "timestamp")]
    assert "'contrl' is not a variant of experiment 'shop'" in result.rejected[0].reason
    assert result.inserted == 4
    rows = _straddling(6, late=(5,))
    rows[2]["value"] = "1.5"  # breaks the input contract: the producer has a bug, nothing is stored
    with pytest.raises(EventValidationError, match=r"row 2, field 'value'"):
        ingest(store, rows, partial=True)
    assert store.count() == 4
    with pytest.raises(EventValidationError, match="partial must be True or False"):
        ingest(store, rows, partial="yes")  # type: ignore[arg-type]


def _csv_file(tmp_path: Path) -> Path:
    rows = [f"e{i},shop,control,u{i},exposure,{'2022-03-04' if i in (2, 5) else '2022-03-02'},1" for i in range(7)]
    path = tmp_path / "late.csv"
    path.write_text("\n".join([HEADER, *rows[:4], "", *rows[4:]]) + "\n", encoding="utf-8")
    return path


def test_cli_names_lines_and_partial_lists_them(settings: Settings, tmp_path: Path) -> None:
    _stopped_shop(settings)
    path = _csv_file(tmp_path)
    env = {"BATTLEGROUND_HOME": str(settings.home), "COLUMNS": "300"}
    result = CliRunner().invoke(app, ["events", "ingest", str(path)], env=env)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    # header line 1, rows 0-3 on lines 2-5, a blank line 6, rows 4-6 on lines 7-9: rows 2 and 5 = lines 4, 8
    assert "line 4 of late.csv (row 2), field 'timestamp'" in out, out
    assert "(lines 4, 8)" in out and "--partial" in out, out
    assert open_event_store(settings).count() == 0
    result = CliRunner().invoke(app, ["events", "ingest", str(path), "--partial"], env=env)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "inserted 5" in out and "rejected 2 (not stored)" in out, out
    assert "rejected line 4 ('e2'), field 'timestamp': 2022-03-04T00:00:00 is at or after its stop" in out, out
    assert "rejected line 8 ('e5')" in out
    assert open_event_store(settings).count() == 5


@pytest.fixture
def stopped_api(any_settings: Settings) -> Any:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    _stopped_shop(any_settings)
    with TestClient(create_app(dataclasses.replace(any_settings, api_token=TOKEN)), base_url="http://127.0.0.1") as c:
        yield c, any_settings


def test_http_default_422_lists_rows_and_partial_stores(stopped_api: Any, tmp_path: Path) -> None:
    client, settings = stopped_api
    r = client.post("/api/events", json={"events": _straddling()}, headers=AUTH)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["rejected_count"] == 4 and [x["row"] for x in body["rejected"]] == [3, 7, 8, 9]
    assert "nothing was stored" in body["detail"] and "partial" in body["detail"]
    assert open_event_store(settings).count() == 0
    r = client.post("/api/events", json={"events": _straddling(), "partial": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["received"], body["inserted"]) == (10, 6)
    assert [(x["row"], x["event_id"], x["field"]) for x in body["rejected"]] == [
        (3, "e3", "timestamp"), (7, "e7", "timestamp"), (8, "e8", "timestamp"), (9, "e9", "timestamp")]
    assert "at or after its stop" in body["rejected"][0]["reason"]
    # a CSV body: the refused rows carry their lines
    csv = _csv_file(tmp_path).read_bytes()
    r = client.post("/api/events?partial=true", content=csv, headers={**AUTH, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert [(x["line"], x["event_id"]) for x in r.json()["rejected"]] == [(4, "e2"), (8, "e5")]
    # e0, e1, e4 and e6 came in the JSON batch already, with other content (kept); e3 is new
    assert (r.json()["inserted"], r.json()["conflicts"]) == (1, 4)
    assert open_event_store(settings).count() == 7
    r = client.post("/api/events", json={"events": _straddling(), "partial": "yes"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == "partial"
    assert json.loads(r.text)["detail"]
