"""PostgreSQL restarted under load: writers get a clear error while it is down, then recover, and every
batch ends up stored exactly once (clients re-send until acknowledged; ingest is idempotent)."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage.events import StoreUnavailableError

BATCHES = 30
ROWS = 200


def _batch(client: int, b: int) -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": [f"c{client}-b{b}-{i}" for i in range(ROWS)],
        "variant": ["control", "treatment"] * (ROWS // 2),
        "user_id": [f"u{client}-{i}" for i in range(ROWS)],
        "event_type": "exposure",
        "timestamp": "2024-01-02T03:04:05",
    })


@pytest.mark.postgres
def test_writers_recover_from_a_postgres_restart(throwaway_postgres, tmp_path) -> None:
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path), "BATTLEGROUND_DATABASE_URL": throwaway_postgres.url})
    exp = Registry(settings.registry_url).create_experiment("restart", variants={"control": 0.5, "treatment": 0.5})
    store = open_event_store(settings)
    acked: list[tuple[int, int]] = []
    errors: list[str] = []
    unexpected: list[BaseException] = []

    def client(c: int) -> None:
        for b in range(BATCHES):
            deadline = time.monotonic() + 60
            while True:
                try:
                    ingest(store, _batch(c, b), experiment=exp.id)
                    acked.append((c, b))
                    break
                except StoreUnavailableError as exc:
                    errors.append(str(exc))
                    if time.monotonic() > deadline:
                        unexpected.append(exc)
                        return
                    time.sleep(0.1)
                except BaseException as exc:  # anything else is a failure of the test
                    unexpected.append(exc)
                    return
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(2)]
    for t in threads:
        t.start()
    while len(acked) < 6:
        time.sleep(0.01)
    throwaway_postgres.restart(down_seconds=1.0)
    for t in threads:
        t.join(timeout=120)
    assert not unexpected, unexpected
    assert len(acked) == 2 * BATCHES
    assert errors, "the restart was not felt by any writer"
    assert all(f"127.0.0.1:{throwaway_postgres.port}" in e and "re-send" in e for e in errors), errors[:3]
    assert store.count(exp.id) == 2 * BATCHES * ROWS


@pytest.mark.postgres
def test_postgres_crashes_lose_and_duplicate_nothing(throwaway_postgres, tmp_path) -> None:
    """The short version of ``bench_reliability``'s run 5: two immediate shutdowns (a crash, WAL recovery
    on restart) under two writers of tagged batches; every acknowledged batch is stored once, whole."""
    from benchmarks.bench_reliability import postgres_crashes

    r = postgres_crashes(tmp_path / "crash", throwaway_postgres.url,
                         lambda: throwaway_postgres.restart(0.2, mode="immediate"),
                         writers=2, batches=15, batch=50, crashes=2)
    assert r.acknowledged == 2 * 15 and r.stored_rows == r.stored_distinct == r.expected == 2 * 15 * 50
    assert r.whole_batches == 2 * 15 and r.refusals > 0, r
