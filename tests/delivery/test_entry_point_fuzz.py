"""One input contract on every entry point and backend (issue 19, "Tests").

One hypothesis strategy of event batches (valid rows mixed with contract-breaking values) goes through
every entry point — the Python API, ``battleground events ingest FILE`` for CSV, JSON lines and Parquet,
and ``POST /api/events`` with JSON, CSV and JSON-lines bodies — on the embedded DuckDB store and on
PostgreSQL. Each example snapshots the store (count and a checksum of every row), sends the batch, and
then either (a) it was accepted and the store holds exactly the old rows plus the sent rows, value for
value, or (b) the contract's error came back naming the field (``EventValidationError``, exit code 1 with
``error: … field …``, HTTP 422 with ``field``) and the store is unchanged. A batch holding a value that
breaks the contract in every encoding must be refused. Nothing else is allowed: no 5xx, no traceback,
no raw driver error. The number of cases per entry point is printed at the end of the run.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from tests.delivery._shop import AUTH, TOKEN, make_shop

from battleground.experiment.events import EventStore, EventValidationError, ingest
from battleground.settings import Settings

FIELDS = ("event_id", "experiment", "variant", "user_id", "event_type", "timestamp", "value", "covariate")
NUMBERS = ("value", "covariate")
DAY = dt.datetime(2022, 3, 2)
CASES: Counter[str] = Counter()  # (entry point, backend, outcome) → examples
_SERIAL = iter(range(10**9))


@dataclasses.dataclass(frozen=True)
class Bad:
    """A value that breaks the contract; ``always``: in every encoding (text files flatten some types,
    e.g. the string ``"1.5"`` in a CSV cell is the number 1.5)."""

    value: Any
    always: bool = True


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp", "Zs")),
                min_size=1, max_size=10)
_BAD_TEXT = st.sampled_from([Bad("x" * 201), Bad("a\x00b"), Bad("a\nb"), Bad("a\tb"), Bad("a\x7fb"),
                             Bad("   ")])
_BAD_NUMBER = st.sampled_from([Bad(1e200), Bad(-1e200), Bad(math.nan, always=False), Bad(math.inf),
                                Bad(True, always=False), Bad("1.5", always=False), Bad("abc")])
_NUMBER = st.one_of(st.none(), st.floats(min_value=-1e15, max_value=1e15, allow_nan=False),
                    st.integers(-10**6, 10**6).map(float))
_BAD = {
    "event_id": _BAD_TEXT,
    "experiment": st.sampled_from([Bad("no-such"), Bad(0), Bad(2**40), Bad(True, always=False), Bad("a\x00")]),
    "variant": st.sampled_from([Bad("contrl"), Bad("x" * 201), Bad("c\x01")]),
    "user_id": _BAD_TEXT,
    "event_type": _BAD_TEXT,
    "timestamp": st.sampled_from([Bad("never"), Bad("2022-13-45"), Bad("2022-03-02T25:00:00"),
                                  Bad(1646215200, always=False)]),
    "value": _BAD_NUMBER,
    "covariate": _BAD_NUMBER,
}


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1–6 rows of experiment ``shop``; each field of each row is, rarely, a contract-breaking value."""
    serial = next(_SERIAL)
    rows = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        row: dict[str, Any] = {
            "event_id": f"f{serial}-{i}-{draw(_TEXT)}",
            "experiment": "shop",
            "variant": draw(st.sampled_from(["control", "treatment"])),
            "user_id": draw(_TEXT),
            "event_type": draw(st.sampled_from(["exposure", "purchase", "click"])),
            "timestamp": (DAY + dt.timedelta(seconds=draw(st.integers(0, 86399)))).isoformat()
            + draw(st.sampled_from(["", "", "", ".000001", ".123456789", "+05:00", "Z"])),
            "value": draw(_NUMBER),
            "covariate": draw(_NUMBER),
        }
        for field in FIELDS:
            if draw(st.integers(0, 39)) == 0:
                row[field] = draw(_BAD[field])
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Bad) else value


def _cell(value: Any) -> str:
    value = _plain(value)
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


# -- entry points: each takes (rows, context) and returns None (accepted) or the error text --------------


@dataclasses.dataclass
class Context:
    settings: Settings
    store: EventStore
    tmp: Path
    client: Any


def _python(rows: list[dict[str, Any]], ctx: Context) -> str | None:
    try:
        ingest(ctx.store, [{k: _plain(v) for k, v in r.items()} for r in rows])
    except EventValidationError as exc:
        assert exc.field in FIELDS, exc
        return f"field '{exc.field}': {exc}"
    return None


def _write(rows: list[dict[str, Any]], path: Path) -> None:
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(FIELDS)
            w.writerows([_cell(r[k]) for k in FIELDS] for r in rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({k: _plain(v) for k, v in r.items()}) + "\n" for r in rows),
                        encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, Any] = {}
        for k in FIELDS:
            plain = [_plain(r[k]) for r in rows]
            if k in NUMBERS and all(v is None or type(v) is float for v in plain):
                columns[k] = pa.array(plain, pa.float64())
            else:
                columns[k] = pa.array([None if v is None else str(v) for v in plain], pa.string())
        pq.write_table(pa.table(columns), path)


def _cli(suffix: str) -> Any:
    def send(rows: list[dict[str, Any]], ctx: Context) -> str | None:
        from typer.testing import CliRunner

        from battleground.cli import app

        path = ctx.tmp / f"batch{next(_SERIAL)}{suffix}"
        _write(rows, path)
        env = {"BATTLEGROUND_HOME": str(ctx.settings.home), "COLUMNS": "400"}
        if ctx.store.backend == "postgresql":
            env["BATTLEGROUND_DATABASE_URL"] = ctx.settings.events_url
        result = CliRunner().invoke(app, ["events", "ingest", str(path)], env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output, result.output
        if result.exit_code == 0:
            return None
        assert result.exit_code == 1 and "error:" in result.output, result.output
        return result.output

    return send


def _http(kind: str) -> Any:
    def send(rows: list[dict[str, Any]], ctx: Context) -> str | None:
        if kind == "json":
            body = json.dumps({"events": [{k: _plain(v) for k, v in r.items()} for r in rows]}).encode()
            ctype = "application/json"
        elif kind == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(FIELDS)
            w.writerows([_cell(r[k]) for k in FIELDS] for r in rows)
            body, ctype = buf.getvalue().encode(), "text/csv"
        else:
            body = "".join(json.dumps({k: _plain(v) for k, v in r.items()}) + "\n" for r in rows).encode()
            ctype = "application/x-ndjson"
        r = ctx.client.post("/api/events", content=body, headers={**AUTH, "content-type": ctype})
        assert r.status_code in (200, 422), (r.status_code, r.text)
        if r.status_code == 200:
            return None
        detail = r.json()
        return f"field '{detail.get('field')}': {detail.get('detail')}"

    return send


ENTRY_POINTS = {
    "python": _python,
    "cli-csv": _cli(".csv"), "cli-jsonl": _cli(".jsonl"), "cli-parquet": _cli(".parquet"),
    "http-json": _http("json"), "http-csv": _http("csv"), "http-ndjson": _http("ndjson"),
}


# -- the store's snapshot and the rows a batch should add ----------------------------------------------


def _rows_of(store: EventStore) -> list[tuple[Any, ...]]:
    t = store.to_arrow()
    cols = [t.column(c).to_pylist() for c in ("event_id", "variant", "user_id", "event_type", "ts", *NUMBERS)]
    return sorted(zip(*cols, strict=True), key=repr)


def _snapshot(store: EventStore) -> tuple[int, str]:
    rows = _rows_of(store)
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def _utc_us(text: str) -> dt.datetime:
    """The stored time of an ISO string: UTC, naive, truncated to microseconds."""
    import pandas as pd

    ts = pd.Timestamp(text)
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    stored: dt.datetime = ts.floor("us").to_pydatetime()
    return stored


def _expected(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    seen: dict[str, tuple[Any, ...]] = {}
    for r in rows:
        numbers = [_plain(r[k]) for k in NUMBERS]
        seen.setdefault(r["event_id"], (r["event_id"], r["variant"], str(r["user_id"]), r["event_type"],
                                        _utc_us(r["timestamp"]), *(None if v is None else float(v) for v in numbers)))
    return list(seen.values())


@pytest.fixture(params=["duckdb", "postgresql"])
def context(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[Context]:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    s = settings if request.param == "duckdb" else request.getfixturevalue("postgres_settings")
    store = make_shop(s)
    with TestClient(create_app(dataclasses.replace(s, api_token=TOKEN)), base_url="http://127.0.0.1") as c:
        yield Context(s, store, tmp_path, c)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@hsettings(max_examples=12, derandomize=True, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=batches())
def test_entry_point_stores_exactly_the_batch_or_refuses_it(context: Context, entry: str,
                                                            rows: list[dict[str, Any]]) -> None:
    store = context.store
    before_rows = _rows_of(store)
    before = _snapshot(store)
    error = ENTRY_POINTS[entry](rows, context)
    bad = {k for r in rows for k, v in r.items() if isinstance(v, Bad)}
    always_bad = {k for r in rows for k, v in r.items() if isinstance(v, Bad) and v.always}
    outcome = "accepted" if error is None else "refused"
    CASES[f"{entry:<12} {store.backend:<10} {outcome}"] += 1
    if error is not None:
        assert _snapshot(store) == before, (entry, error)
        assert bad, f"{entry} refused a valid batch: {error}\n{rows}"
        assert any(f"'{k}'" in error for k in bad), (entry, bad, error)
        return
    assert not always_bad, f"{entry} accepted {always_bad} that break the contract: {rows}"
    after = _rows_of(store)
    assert sorted(before_rows + _expected(rows), key=repr) == after, entry


@pytest.mark.parametrize("entry", ["python", "cli-csv", "http-ndjson"])
def test_nanosecond_iso_times_are_truncated_to_microseconds(context: Context, entry: str) -> None:
    """Regression (found by the fuzz): an ISO string with nanoseconds raised a raw ArrowInvalid (Python),
    a traceback (CLI) or a 500 (HTTP CSV/JSON lines); it is truncated to microseconds like an Arrow
    nanosecond column and a JSON body."""
    row = {"event_id": f"ns-{entry}", "experiment": "shop", "variant": "control", "user_id": "u",
           "event_type": "exposure", "timestamp": "2022-03-02T10:00:00.123456789", "value": 2.5, "covariate": None}
    assert ENTRY_POINTS[entry]([row], context) is None
    stored = context.store.to_arrow().to_pylist()
    assert [(r["event_id"], r["ts"], r["value"]) for r in stored] == [
        (f"ns-{entry}", dt.datetime(2022, 3, 2, 10, 0, 0, 123456), 2.5)]


def test_zz_print_case_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the fuzz cases per entry point, backend and outcome (run after the property test)."""
    with capsys.disabled():
        print("\nentry-point fuzz cases:")
        for key, n in sorted(CASES.items()):
            print(f"  {key} {n:>4}")
        print(f"  total {sum(CASES.values())}")
