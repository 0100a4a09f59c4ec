"""Reads of one request: one snapshot of the event store, cancelled when the client goes away.

:func:`snapshot_read` runs a view function in the thread pool inside
:func:`~battleground.storage._snapshot.read_snapshot` (so the results, the daily series and the end
conditions it computes come from the same rows) and, while it runs, watches the connection: when the
client disconnects, the statement running on PostgreSQL is cancelled (DuckDB: interrupted) instead of
running on for minutes and holding locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from battleground.storage._snapshot import ReadSnapshot, read_snapshot

__all__ = ["POLL_SECONDS", "snapshot_read"]

T = TypeVar("T")
POLL_SECONDS = 0.2


async def snapshot_read(request: Request, read: Callable[[], T]) -> T:
    """``read()`` from one snapshot, cancelled if the client disconnects before it returns."""
    snap = ReadSnapshot()

    def work() -> T:
        with read_snapshot(snap):
            return read()

    task = asyncio.ensure_future(run_in_threadpool(work))
    while True:
        done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            snap.cancel()
            return await task  # raises ReadCancelledError once the statement stops
