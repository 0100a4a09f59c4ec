"""POST /api/events takes CSV and JSON-lines bodies too; a bad row in the middle names its line
(1-based, the CSV header is line 1) and its field, and nothing is stored (issue 19 §3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.delivery._shop import AUTH, HEADER, event

from battleground.experiment.events import open_event_store
from battleground.settings import Settings


def _csv(rows: list[str]) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def _rows(n: int) -> list[str]:
    return [f"e{i},shop,control,u{i},exposure,2022-03-02T10:00:00,{i}.5" for i in range(n)]


def test_csv_body_is_stored(api: Any, settings: Settings) -> None:
    r = api.post("/api/events", content=_csv(_rows(6)), headers={**AUTH, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 6
    values = sorted(open_event_store(settings).to_arrow().column("value").to_pylist())
    assert values == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


@pytest.mark.parametrize(("bad", "field"), [
    ("e4,shop,control,u4,exposure,2022-03-02T10:00:00,abc", "value"),
    ("e4,shop,contrl,u4,exposure,2022-03-02T10:00:00,1", "variant"),
    ("e4,shop,control,u4,exposure,never,1", "timestamp"),
])
def test_bad_csv_row_in_the_middle_names_line_and_field(api: Any, settings: Settings, bad: str, field: str) -> None:
    rows = _rows(9)
    rows[4] = bad
    r = api.post("/api/events", content=_csv(rows), headers={**AUTH, "content-type": "text/csv; charset=utf-8"})
    assert r.status_code == 422, r.text
    body = r.json()
    # header = line 1, row 0 = line 2, ..., row 4 = line 6
    assert (body["line"], body["row"], body["field"]) == (6, 4, field), body
    assert body["detail"].startswith(f"line 6 of the request body (row 4), field '{field}'"), body
    assert "nothing was stored" in body["detail"]
    assert open_event_store(settings).count() == 0


def test_bad_jsonl_row_in_the_middle_names_line_and_field(api: Any, settings: Settings) -> None:
    lines = [json.dumps(event(i, value=1.0)) for i in range(7)]
    lines[3] = json.dumps(event(3, value="1.0"))  # strict types: text is not a number
    body = ("\n".join([*lines[:2], "", *lines[2:]]) + "\n").encode()  # a blank line counts
    r = api.post("/api/events", content=body, headers={**AUTH, "content-type": "application/x-ndjson"})
    assert r.status_code == 422, r.text
    assert (r.json()["line"], r.json()["row"], r.json()["field"]) == (5, 3, "value"), r.json()
    assert r.json()["detail"].startswith("line 5 of the request body (row 3), field 'value': '1.0'")
    assert open_event_store(settings).count() == 0
    broken = b"\n".join([json.dumps(event(0)).encode(), b"{oops", json.dumps(event(2)).encode()])
    r = api.post("/api/events", content=broken, headers={**AUTH, "content-type": "application/x-ndjson"})
    assert r.status_code == 422 and r.json()["detail"].startswith("line 2 of the request body is not JSON")


def test_csv_body_with_experiment_query(api: Any, settings: Settings) -> None:
    header = "event_id,variant,user_id,event_type,timestamp"
    body = f"{header}\na,control,u1,exposure,2022-03-02\nb,treatment,u2,exposure,2022-03-02\n".encode()
    r = api.post("/api/events?experiment=shop", content=body, headers={**AUTH, "content-type": "text/csv"})
    assert r.status_code == 200 and r.json()["inserted"] == 2, r.text
    r = api.post("/api/events", content=b"", headers={**AUTH, "content-type": "text/csv"})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    assert open_event_store(settings).count() == 2


def test_json_body_still_reports_pydantic_rows(api: Any) -> None:
    r = api.post("/api/events", json={"events": [event(0), event(1, value="x")]}, headers=AUTH)
    assert r.status_code == 422 and (r.json()["row"], r.json()["field"]) == (1, "value"), r.json()
    r = api.post("/api/events", content=b"{broken", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = api.post("/api/events", json={"events": [event(0)]})
    assert r.status_code == 401


def test_experiment_query_follows_the_contract(api: Any, settings: Settings) -> None:
    body = b"event_id,variant,user_id,event_type,timestamp\na,control,u1,exposure,2022-03-02\n"
    headers = {**AUTH, "content-type": "text/csv"}
    for bad in ("%00", "a%0Ab", "0", "99999999999"):
        r = api.post(f"/api/events?experiment={bad}", content=body, headers=headers)
        assert r.status_code == 422 and r.json()["field"] == "experiment", (bad, r.text)
    r = api.post("/api/events?experiment=1", content=body, headers=headers)  # digits are the id
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    assert open_event_store(settings).count() == 1


def test_integer_ids_are_their_decimal_text_on_every_entry_point(api: Any, settings: Settings) -> None:
    """The JSON body takes integer ids as the Python API and the files do (stored as decimal text); a
    bool or a float is still refused, naming the field."""
    import pandas as pd

    from battleground.experiment.events import ingest

    r = api.post("/api/events", json={"events": [event(0, event_id=7, user_id=42)]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    ingest(open_event_store(settings), pd.DataFrame([event(1, event_id=8, user_id=43)]))
    stored = open_event_store(settings).to_arrow().to_pandas().sort_values("event_id")
    assert stored[["event_id", "user_id"]].values.tolist() == [["7", "42"], ["8", "43"]]
    for bad in (True, 1.5, 2**70):
        r = api.post("/api/events", json={"events": [event(2, user_id=bad)]}, headers=AUTH)
        assert r.status_code == 422 and r.json()["field"] == "user_id", (bad, r.text)
    with pytest.raises(ValueError, match=r"user_id.*does not fit in 64 bits; send a longer id as text"):
        ingest(open_event_store(settings), pd.DataFrame([event(3, user_id=2**70)], dtype=object))
    assert open_event_store(settings).count() == 2
