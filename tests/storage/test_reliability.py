"""Reliability of the event stores: concurrent writers, writers killed mid-batch, malformed batches.

Writers are separate processes (``tests/storage/_writer.py``), each building its settings from the
environment as a real program does.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from battleground.experiment.events import EventValidationError, ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._filelock import StoreLockedError

WRITER = Path(__file__).with_name("_writer.py")
START = dt.datetime(2022, 3, 1)


def _env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATTLEGROUND_")}
    env["BATTLEGROUND_HOME"] = str(s.home)
    if s.events_url.startswith("postgresql"):
        env["BATTLEGROUND_DATABASE_URL"] = s.events_url
    env["BATTLEGROUND_LOCK_TIMEOUT"] = "120"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _prepare(s: Settings) -> Registry:
    registry = Registry(s.registry_url)
    registry.create_experiment("load", variants={"control": 0.5, "treatment": 0.5}, start_at=START)
    registry.start("load")
    open_event_store(s).count()  # create the store before the writers race for it
    return registry


@pytest.fixture(params=["duckdb", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "duckdb" else "postgres_settings")


def test_eight_concurrent_writers_with_overlapping_ids(backend: Settings) -> None:
    """8 processes × 50k events; worker w writes ids [25k·w, 25k·w + 50k), so neighbours share 25k ids.
    PostgreSQL runs them truly concurrently (primary key + ON CONFLICT); the embedded store serialises
    them with its lock (each waits its turn, up to 120 s here). Either way every id is stored once.

    The workers are forked from a fresh launcher process that imported the libraries once (and opened
    nothing), so that 8 interpreters do not each pay the imports."""
    _prepare(backend)
    workers, n, stride = 8, 50_000, 25_000
    out = subprocess.run(
        [sys.executable, str(WRITER), "concurrent", str(workers), str(n), str(stride), "4"],
        env=_env(backend), capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    inserted = [int(line) for line in out.stdout.split()]
    assert len(inserted) == workers and all(0 <= k <= n for k in inserted)
    distinct = stride * (workers - 1) + n
    store = open_event_store(backend)
    assert sum(inserted) == distinct
    assert store.count() == distinct
    rows = store._fetch("SELECT COUNT(DISTINCT event_id), MIN(event_id), MAX(event_id) FROM events", {})
    assert tuple(rows[0]) == (distinct, "e0", "e99999")


def test_writer_killed_mid_batch_leaves_nothing(backend: Settings, tmp_path: Path) -> None:
    """SIGKILL while the batch's rows are inserted but not committed: the batch is absent, the store is
    usable at once (the lock dies with its holder), and re-sending the batch stores all of it."""
    _prepare(backend)
    n = 40_000
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), "killed", str(n), str(started)],
        env=_env(backend), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not started.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the writer never reached its write"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = open_event_store(backend)
    if backend.events_url.startswith("duckdb"):
        store.lock_timeout = 5.0  # type: ignore[attr-defined]  # the lock must be free already
    assert store.count() == 0
    sys.path.insert(0, str(WRITER.parent))
    try:
        from _writer import events
    finally:
        sys.path.remove(str(WRITER.parent))
    result = ingest(store, events(0, n))
    assert (result.inserted, store.count()) == (n, n)


def test_embedded_store_locked_error_names_the_holder(settings: Settings, tmp_path: Path) -> None:
    _prepare(settings)
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, str(WRITER), "hold-lock", "20", str(ready)], env=_env(settings))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        store = open_event_store(settings)
        store.lock_timeout = 0.3  # type: ignore[attr-defined]
        before = time.monotonic()
        with pytest.raises(StoreLockedError) as info:
            ingest(store, [{"event_id": "x", "experiment": "load", "variant": "control", "user_id": "u",
                            "event_type": "exposure", "timestamp": "2022-03-02"}])
        assert 0.3 <= time.monotonic() - before < 5
        message = str(info.value)
        assert f"is locked by pid {holder.pid}" in message and "_writer.py hold-lock" in message
        assert "BATTLEGROUND_LOCK_TIMEOUT" in message
    finally:
        holder.kill()
        holder.wait()
    assert open_event_store(settings).count() == 0


# --------------------------------------------------------------------------------------------------
# Property: any one malformed row rejects the batch with a message naming it, and writes nothing
# --------------------------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
                min_size=1, max_size=12)

# field → (a strategy of bad values, words the message must contain)
CORRUPTIONS: dict[str, list[tuple[Any, str]]] = {
    "event_id": [(None, "is empty"), ("   ", "is blank"), (2.5, "is a float"), (True, "is a bool")],
    "experiment": [("no-such-experiment", "no experiment 'no-such-experiment'"), (None, "is empty")],
    "variant": [("zzz", "is not a variant of experiment 'prop'"), ("", "is blank"), (None, "is empty")],
    "user_id": [(1.5, "is a float"), (None, "is empty"), ("\t", "is blank"), ([1], "is a list")],
    "event_type": [("", "is blank"), (None, "is empty"), (7.0, "is a float")],
    "timestamp": [
        (START - dt.timedelta(seconds=1), "before its start"),
        (dt.datetime(2022, 4, 1), "at or after its end"),
        (None, "is empty"),
        ("2022-13-45", "is a str"),
    ],
    "value": [(math.nan, "is nan"), (math.inf, "is inf"), (-math.inf, "is -inf"), ("1.0", "is a str")],
    "covariate": [(math.nan, "is nan"), ("x", "is a str")],
}


@st.composite
def corrupted_batches(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, str, str]:
    n = draw(st.integers(min_value=1, max_value=25))
    rows = []
    for i in range(n):
        rows.append({
            "event_id": f"p-{draw(_TEXT)}-{i}",
            "experiment": "prop",
            "variant": draw(st.sampled_from(["control", "treatment"])),
            "user_id": draw(st.one_of(_TEXT, st.integers(min_value=0, max_value=10**12))),
            "event_type": draw(st.sampled_from(["exposure", "purchase", "click"])),
            "timestamp": START + dt.timedelta(seconds=draw(st.integers(min_value=0, max_value=30 * 86400 - 1))),
            "value": draw(st.one_of(st.none(), st.floats(min_value=-1e15, max_value=1e15))),
            "covariate": draw(st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6))),
        })
    row = draw(st.integers(min_value=0, max_value=n - 1))
    field = draw(st.sampled_from(sorted(CORRUPTIONS)))
    bad, words = draw(st.sampled_from(CORRUPTIONS[field]))
    rows[row][field] = bad
    return rows, row, field, words


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=corrupted_batches())
def test_any_malformed_row_is_rejected_and_nothing_written(settings: Settings, case: Any) -> None:
    rows, row, field, words = case
    registry = Registry(settings.registry_url)
    if not registry.list():
        registry.create_experiment("prop", variants={"control": 0.5, "treatment": 0.5},
                                   start_at=START, end_at=dt.datetime(2022, 4, 1))
        ingest(open_event_store(settings), [{"event_id": "seed", "experiment": "prop", "variant": "control",
                                             "user_id": "u", "event_type": "exposure",
                                             "timestamp": START}])
    store = open_event_store(settings)
    with pytest.raises(EventValidationError) as info:
        ingest(store, rows)
    message = str(info.value)
    assert (info.value.row, info.value.field) == (row, field), message
    assert message.startswith(f"row {row}, field '{field}': ")
    assert words in message
    assert store.count() == 1
