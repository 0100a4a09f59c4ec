"""Per-producer sequence numbers (issue 19 §4): a gap, a late batch and a replay are detected and
reported; a replay's rows are replays, not duplicates, and changed content is still a conflict. Both
backends, the Python API, the CLI and the HTTP API."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.delivery._shop import AUTH, HEADER, TOKEN, event, make_shop
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.events import EventValidationError, ingest, open_event_store
from battleground.settings import Settings


def _batch(seq: int, n: int = 5) -> list[dict[str, Any]]:
    return [event(seq * 100 + i) for i in range(n)]


def test_next_replay_gap_late(any_settings: Settings) -> None:
    store = make_shop(any_settings)
    first = ingest(store, _batch(0), producer="p1", sequence=0)
    assert first.sequence is not None
    assert (first.sequence.status, first.sequence.previous, first.inserted) == ("next", None, 5)
    second = ingest(store, _batch(1), producer="p1", sequence=1)
    assert second.sequence is not None and (second.sequence.status, second.sequence.previous) == ("next", 0)
    again = ingest(store, _batch(1), producer="p1", sequence=1)  # a retry whose reply was lost
    assert again.sequence is not None and again.sequence.status == "replay"
    assert (again.inserted, again.duplicates, again.replays, again.conflicts) == (0, 0, 5, 0)
    gap = ingest(store, _batch(4), producer="p1", sequence=4)
    assert gap.sequence is not None
    assert (gap.sequence.status, gap.sequence.missing, gap.inserted) == ("gap", (2, 3), 5)
    late = ingest(store, _batch(2), producer="p1", sequence=2)
    assert late.sequence is not None and (late.sequence.status, late.sequence.previous) == ("late", 4)
    assert late.inserted == 5
    # another producer counts on its own; an untagged re-send is a duplicate, as before
    other = ingest(store, _batch(0), producer="p2", sequence=0)
    assert other.sequence is not None and other.sequence.status == "next"
    assert (other.inserted, other.duplicates, other.replays) == (0, 5, 0)
    plain = ingest(store, _batch(4))
    assert (plain.duplicates, plain.replays, plain.sequence) == (5, 0, None)
    assert store.count() == 20
    # a replay with changed content: the changed row is a conflict, the others replays
    changed = _batch(4)
    changed[0]["user_id"] = "someone-else"
    r = ingest(store, changed, producer="p1", sequence=4)
    assert r.sequence is not None and r.sequence.status == "replay"
    assert (r.inserted, r.replays, r.conflicts, r.duplicates) == (0, 4, 1, 0)
    assert r.received == r.inserted + r.duplicates + r.conflicts + r.replays + len(r.rejected)


def test_refused_batch_leaves_no_sequence(any_settings: Settings) -> None:
    store = make_shop(any_settings)
    bad = _batch(0)
    bad[2]["variant"] = "nobody"
    with pytest.raises(EventValidationError):
        ingest(store, bad, producer="p", sequence=0)
    ok = ingest(store, _batch(0), producer="p", sequence=0)
    assert ok.sequence is not None and ok.sequence.status == "next" and ok.inserted == 5
    # a partial batch whose every row is refused is still a stored batch: its retry is a replay
    everything_bad = [dict(e, variant="nobody") for e in _batch(1)]
    empty = ingest(store, everything_bad, producer="p", sequence=1, partial=True)
    assert (empty.inserted, len(empty.rejected), empty.sequence and empty.sequence.status) == (0, 5, "next")
    retry = ingest(store, everything_bad, producer="p", sequence=1, partial=True)
    assert retry.sequence is not None and retry.sequence.status == "replay"


@pytest.mark.parametrize(("producer", "sequence", "field"), [
    ("p", None, "sequence"), (None, 3, "producer"), ("p", -1, "sequence"), ("p", True, "sequence"),
    ("p", "1", "sequence"), ("p", 2**63, "sequence"), ("", 1, "producer"), ("a\nb", 1, "producer"), (7, 1, "producer"),
])
def test_bad_tags_are_refused(settings: Settings, producer: Any, sequence: Any, field: str) -> None:
    store = make_shop(settings)
    with pytest.raises(EventValidationError) as info:
        ingest(store, _batch(0), producer=producer, sequence=sequence)
    assert info.value.field == field, str(info.value)
    assert store.count() == 0


def test_concurrent_retries_of_one_batch_store_it_once(any_settings: Settings) -> None:
    store = make_shop(any_settings)
    ingest(store, _batch(0, 1), producer="warm-up", sequence=0)  # create the tables before racing
    results: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            results.append(ingest(open_event_store(any_settings), _batch(7, 50), producer="racer", sequence=7))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    statuses = sorted(r.sequence.status for r in results)
    assert statuses == ["next", "replay", "replay", "replay"]
    assert sum(r.inserted for r in results) == 50
    assert sum(r.replays for r in results) == 150 and sum(r.duplicates for r in results) == 0
    assert store.count() == 51


def test_cli_reports_replay_and_gap(settings: Settings, tmp_path: Path) -> None:
    make_shop(settings)
    path = tmp_path / "b.csv"
    path.write_text("\n".join([HEADER, *(f"e{i},shop,control,u{i},exposure,2022-03-02,1" for i in range(3))]) + "\n",
                    encoding="utf-8")
    env = {"BATTLEGROUND_HOME": str(settings.home), "COLUMNS": "300"}
    args = ["events", "ingest", str(path), "--producer", "nightly"]
    out = [" ".join(CliRunner().invoke(app, [*args, "--sequence", s], env=env).output.split()) for s in ("0", "0", "3")]
    assert "inserted 3" in out[0] and "producer 'nightly' sequence 0: the producer's next batch" in out[0], out
    assert "replays 3" in out[1] and "duplicates 0" in out[1] and "a replay" in out[1], out
    assert "after a gap: sequences 1–2 have not arrived" in out[2], out


def test_http_sequences(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    make_shop(settings)
    with TestClient(create_app(dataclasses.replace(settings, api_token=TOKEN)), base_url="http://127.0.0.1") as c:
        body = {"events": _batch(0), "producer": "web-1", "sequence": 0}
        r = c.post("/api/events", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 5, "inserted": 5, "duplicates": 0, "conflicts": 0, "replays": 0,
                            "sequence": {"producer": "web-1", "sequence": 0, "status": "next"}}
        r = c.post("/api/events", json=body, headers=AUTH).json()
        assert (r["replays"], r["duplicates"], r["sequence"]["status"], r["sequence"]["previous"]) == (5, 0, "replay", 0)
        csv = ("\n".join([HEADER, "x1,shop,control,v1,exposure,2022-03-02,1"]) + "\n").encode()
        r = c.post("/api/events?producer=web-1&sequence=5", content=csv, headers={**AUTH, "content-type": "text/csv"})
        assert r.status_code == 200, r.text
        assert r.json()["sequence"] == {"producer": "web-1", "sequence": 5, "status": "gap", "previous": 0,
                                        "missing": [1, 4]}
        for bad in ({"producer": "web-1"}, {"sequence": 1}, {"producer": "web-1", "sequence": "1"},
                    {"producer": "web-1", "sequence": -1}, {"producer": "web-1", "sequence": True}):
            r = c.post("/api/events", json={"events": _batch(9), **bad}, headers=AUTH)
            assert r.status_code == 422, (bad, r.text)
        assert open_event_store(settings).count() == 6


def test_duckdb_file_replaced_in_the_same_process(settings: Settings) -> None:
    store = make_shop(settings)
    assert ingest(store, _batch(0), producer="p", sequence=0).inserted == 5
    store.path.unlink()  # a new, empty events file at the same path (the table cache must not lie)
    again = ingest(open_event_store(settings), _batch(0), producer="p", sequence=0)
    assert again.sequence is not None and (again.sequence.status, again.inserted) == ("next", 5)
