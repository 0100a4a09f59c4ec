"""Short versions of the reliability runs in ``benchmarks/bench_reliability.py`` (real servers on
loopback, bounded by request count): the ingest API under concurrent load, and a server SIGKILLed mid-ingest."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_reliability import ingest_load, kill_restart


def test_ingest_api_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    result = ingest_load(tmp_path, clients=4, batch=50, requests_per_client=8)
    print(result)
    assert result.requests == 4 * 8
    assert result.errors == 0
    # every fourth request re-sent a batch: stored exactly once each
    assert result.stored_rows == result.stored_distinct == result.distinct_sent
    assert result.p99_ms > 0


def test_server_killed_mid_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    result = kill_restart(tmp_path, batches=12, kills=2, batch=100)
    print(result)
    assert result.acknowledged_events == 12 * 100
    assert result.stored_rows == result.stored_distinct == result.acknowledged_events
