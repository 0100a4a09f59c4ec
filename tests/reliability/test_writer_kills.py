"""Short runs of the fault benchmarks of issue 19 (``benchmarks/bench_reliability.py``), bounded by
count: writers SIGKILLed while ingesting straight into the store, on both backends, and the API server
SIGKILLed under ``battleground.client``. Nothing acknowledged is lost, nothing is stored twice, every
batch is whole, and with producer sequences a re-sent stored batch is a detected replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.bench_reliability import kill_restart_client, killed_writers


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_killed_writers_store_every_batch_once(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    r = killed_writers(tmp_path / "w", writers=2, batches=8, batch=100, kills=3, database_url=url, seed=1)
    assert (r.stored_rows, r.stored_distinct, r.expected) == (1600, 1600, 1600), str(r)
    assert r.whole_batches == 16 and r.gaps == 0, str(r)
    assert r.duplicate_rows == 0, str(r)  # a re-sent stored batch is a replay, never duplicates
    assert r.replayed_rows == 100 * r.replays


def test_server_killed_under_the_client(tmp_path: Path) -> None:
    r = kill_restart_client(tmp_path / "c", batches=8, kills=2, batch=50)
    assert (r.acknowledged_events, r.stored_rows, r.stored_distinct) == (400, 400, 400), str(r)
    assert r.duplicate_rows == 0 and r.replayed_rows == 50 * r.replays, str(r)


def test_lost_replies_are_replays_for_the_client_and_duplicates_for_the_baseline(tmp_path: Path) -> None:
    from benchmarks.bench_reliability import lost_replies

    client, baseline = lost_replies(tmp_path, batches=6, every=3, batch=20)
    assert (client.stored_rows, client.stored_distinct, baseline.stored_rows, baseline.stored_distinct) == (120,) * 4
    assert client.lost == 2 and (client.replays, client.replayed_rows, client.duplicate_rows) == (2, 40, 0), str(client)
    assert baseline.lost == 2 and baseline.duplicate_rows == 40, str(baseline)
