"""File ingest errors name the file's physical line (the header counts, blank lines count), the field
and the value; nothing of the file is stored (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.events import EventValidationError, ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings

HEADER = "event_id,experiment,variant,user_id,event_type,timestamp,value"


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    store = open_event_store(settings)
    Registry(store.registry_url).create_experiment(
        "shop", variants={"control": 0.5, "treatment": 0.5},
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase"}])
    return store


def _csv_rows(n: int = 8) -> list[str]:
    return [f"e{i},shop,control,u{i},exposure,2022-03-02T10:00:00,1.5" for i in range(n)]


@pytest.mark.parametrize(("bad", "field", "value"), [
    ("e4,shop,control,u4,exposure,2022-03-02T10:00:00,abc", "value", "'abc'"),
    ("e4,shop,contrl,u4,exposure,2022-03-02T10:00:00,1.5", "variant", "'contrl'"),
    ("e4,shop,control,u4,exposure,yesterday,1.5", "timestamp", "'yesterday'"),
    ("e4,shop,control,u4,exposure,2022-03-02T10:00:00,true", "value", "'true'"),
])
def test_csv_error_names_the_physical_line(settings: Settings, tmp_path: Path, bad: str, field: str,
                                           value: str) -> None:
    store = _store(settings)
    rows = _csv_rows()
    rows[4] = bad
    # a blank line before the bad row: pyarrow skips it, the line count must not
    text = "\n".join([HEADER, *rows[:2], "", *rows[2:]]) + "\n"
    path = tmp_path / "events.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EventValidationError) as info:
        ingest(store, path)
    # header = line 1, rows 0-1 = lines 2-3, blank = line 4, rows 2-3 = lines 5-6, row 4 = line 7
    assert info.value.line == 7 and info.value.row == 4 and info.value.field == field
    message = str(info.value)
    assert message.startswith("line 7 of events.csv (row 4), field "), message
    assert f"'{field}'" in message and value in message
    assert str(tmp_path) not in message  # the file's name, not its full path
    assert store.count() == 0


def test_jsonl_error_names_the_physical_line(settings: Settings, tmp_path: Path) -> None:
    store = _store(settings)
    recs = [{"event_id": f"e{i}", "experiment": "shop", "variant": "control", "user_id": f"u{i}",
             "event_type": "exposure", "timestamp": "2022-03-02T10:00:00", "value": 1.5} for i in range(8)]
    lines = [json.dumps(r) for r in recs]
    lines[5] = json.dumps({**recs[5], "value": "x"})
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*lines[:3], "", "", *lines[3:]]) + "\n", encoding="utf-8")
    with pytest.raises(EventValidationError) as info:
        ingest(store, path)
    assert (info.value.line, info.value.row, info.value.field) == (8, 5, "value")
    assert str(info.value).startswith("line 8 of events.jsonl (row 5), field 'value': 'x'")
    lines[5] = json.dumps({**recs[5], "variant": "contrl"})
    path.write_text("\n".join([*lines[:3], "", "", *lines[3:]]) + "\n", encoding="utf-8")
    with pytest.raises(EventValidationError, match=r"^line 8 of events.jsonl \(row 5\), field 'variant': 'contrl'"):
        ingest(store, path)
    assert store.count() == 0


def test_cli_names_the_line(settings: Settings, tmp_path: Path) -> None:
    _store(settings)
    rows = _csv_rows()
    rows[5] = "e5,shop,control,u5,exposure,2022-03-02T10:00:00,1e400"
    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["events", "ingest", str(path)],
                                env={"BATTLEGROUND_HOME": str(settings.home), "COLUMNS": "250"})
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "line 7 of e.csv (row 5), field 'value'" in out, out
    assert "inf" in out
    assert open_event_store(settings).count() == 0


def test_valid_numbers_in_csv_still_read(settings: Settings, tmp_path: Path) -> None:
    store = _store(settings)
    rows = _csv_rows(4)
    rows[1] = "e1,shop,control,u1,exposure,2022-03-02T10:00:00,"
    rows[2] = "e2,shop,control,u2,exposure,2022-03-02T10:00:00,-3"
    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    assert ingest(store, path).inserted == 4
    values = sorted(store.to_arrow().column("value").to_pylist(), key=lambda v: (v is None, v))
    assert values == [-3.0, 1.5, 1.5, None]
