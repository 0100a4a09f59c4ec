"""Group commit: one thread writes the decision log; a request waits for the commit of its batch.

Requests put their rows on a queue and wait on a future. The writer takes everything queued (up to
``max_batch`` rows), writes it in one transaction and resolves every future, so the commit cost is
shared by the requests that arrived meanwhile and an acknowledged decision is always stored.

The writer keeps the store for its whole life (``idle=None``, the default; :meth:`DecisionLog.hold`):
the embedded DuckDB file stays locked and open from the start, so no batch pays the lock, the open
and the checkpoint of a close (about 100 ms at load 7 on the 2-core test machine, against 8–12 ms for a
batch on the open connection), and other threads of the process still take turns on it; a
PostgreSQL connection stays open. Other processes wait for the DuckDB file until the service stops
(use PostgreSQL when they must read during traffic), or give ``idle`` seconds after which an idle
writer lets the store go (the former behaviour). After a failed batch the writer reconnects.

Other work on the store (the updater's reads) goes through :meth:`GroupWriter.call`, so it runs in
the same thread, between batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from battleground.storage.decisions import DecisionLog, DecisionRow, RewardRow

__all__ = ["GroupWriter"]

_STOP = object()


class GroupWriter:
    """The single writer of a :class:`DecisionLog`."""

    def __init__(self, log: DecisionLog, *, max_batch: int = 512, idle: float | None = None) -> None:
        self.log = log
        self.max_batch = max_batch
        self.idle = idle
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="battleground-decision-writer", daemon=True)
        self.batches = 0
        self._thread.start()

    def decide(self, row: DecisionRow) -> Future[tuple[DecisionRow, bool]]:
        """Log ``row``; the future gives the stored decision and whether it was new."""
        fut: Future[Any] = Future()
        self._queue.put(("decision", row, fut))
        return fut

    def reward(self, row: RewardRow, known: DecisionRow | None = None) -> Future[str]:
        """Attach an outcome; the future gives ``stored``/``duplicate``/``conflict``/``unknown``."""
        fut: Future[Any] = Future()
        self._queue.put(("reward", (row, known), fut))
        return fut

    def call(self, fn: Callable[[DecisionLog], Any]) -> Future[Any]:
        """Run ``fn(log)`` in the writer thread (inside its store session)."""
        fut: Future[Any] = Future()
        self._queue.put(("call", fn, fut))
        return fut

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread
    def _take(self, first: Any) -> list[Any]:
        jobs = [first]
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        job: Any = None
        while True:
            if job is None and self.idle is not None:  # a writer that lets go connects on demand
                job = self._queue.get()
            if job is _STOP:
                return
            try:
                with self.log.hold():
                    if job is None:  # a long-lived writer holds the store before the first request
                        job = self._queue.get()
                        if job is _STOP:
                            return
                    while True:
                        jobs = self._take(job)
                        stop = any(j is _STOP for j in jobs)
                        healthy = self._process([j for j in jobs if j is not _STOP])
                        if stop:
                            return
                        if not healthy:  # reconnect for the next batch
                            break
                        try:
                            job = self._queue.get(timeout=self.idle)
                        except queue.Empty:
                            break
                        if job is _STOP:
                            return
            except Exception as exc:  # the store is down: every waiting request hears it
                if job is not None and job is not _STOP and not job[2].done():
                    job[2].set_exception(exc)
                self._fail_pending(exc)
                job = self._queue.get()  # retry with the next request, not in a busy loop
                continue
            job = None

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and not job[2].done():
                job[2].set_exception(exc)

    def _process(self, jobs: list[Any]) -> bool:
        decisions = [j for j in jobs if j[0] == "decision"]
        rewards = [j for j in jobs if j[0] == "reward"]
        calls = [j for j in jobs if j[0] == "call"]
        healthy = True
        if decisions:
            healthy &= self._settle(decisions, lambda: self.log.log([j[1] for j in decisions]))
        if rewards:
            known = {j[1][1].decision_id: j[1][1] for j in rewards if j[1][1] is not None}
            healthy &= self._settle(rewards, lambda: self.log.reward([j[1][0] for j in rewards], known))
        for _, fn, fut in calls:
            try:
                fut.set_result(fn(self.log))
            except BaseException as exc:
                fut.set_exception(exc)
        self.batches += 1
        return healthy

    @staticmethod
    def _settle(jobs: list[Any], write: Callable[[], list[Any]]) -> bool:
        try:
            results = write()
        except BaseException as exc:
            for j in jobs:
                j[2].set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return False
        for j, result in zip(jobs, results, strict=True):
            j[2].set_result(result)
        return True
