"""The embedded event store's concurrency rule: one process at a time, waiting politely.

DuckDB lets only one process open a database file for writing. battleground therefore opens the file
only for the duration of one operation (an ingest batch or a query), inside an exclusive ``flock`` on
``<file>.lock``. A second process waits for the lock (retrying with back-off) up to ``timeout`` seconds
and then raises :class:`StoreLockedError` naming the holder. The kernel releases the lock when its holder
dies (even by SIGKILL), and DuckDB's write-ahead log makes a batch all-or-nothing, so neither
corruption nor a half-written batch is possible.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from battleground.errors import StorageError

__all__ = ["StoreLockedError", "exclusive_lock", "pinned_lock"]


class StoreLockedError(StorageError, RuntimeError):
    """Another process held the embedded store for longer than the wait allows."""


class _PathState:
    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None
        # the flock this process keeps between operations (:func:`pinned_lock`), and how many pins hold it
        self.pinned_fd: int | None = None
        self.pins = 0


_states: dict[str, _PathState] = {}
_states_lock = threading.Lock()


def _state(path: str) -> _PathState:
    with _states_lock:
        state = _states.get(path)
        if state is None:
            state = _states[path] = _PathState()
        return state


def _holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def exclusive_lock(path: Path, *, timeout: float = 60.0) -> Iterator[bool]:
    """Hold the store at ``path`` exclusively; re-entrant within one thread.

    Yields ``True`` for the outermost holder in this process (who opens the database), ``False`` when
    nested. Raises :class:`StoreLockedError` after ``timeout`` seconds of waiting.
    """
    lock_path = path.with_name(path.name + ".lock")
    state = _state(str(lock_path))
    if not state.rlock.acquire(timeout=timeout):
        raise StoreLockedError(
            f"event store {path} is locked by another thread of this process; waited {timeout:g} s"
        )
    try:
        if state.depth > 0:
            state.depth += 1
            try:
                yield False
            finally:
                state.depth -= 1
            return
        if state.pinned_fd is not None:  # the process keeps the file: this thread's turn, no flock to take
            state.depth = 1
            try:
                yield True
            finally:
                state.depth = 0
            return
        fd = _flock(path, lock_path, timeout)
        state.fd, state.depth = fd, 1
        try:
            yield True
        finally:
            state.depth, state.fd = 0, None
            _unflock(fd)
    finally:
        state.rlock.release()


def _flock(path: Path, lock_path: Path, timeout: float) -> int:
    """Take the inter-process lock of ``path`` (waiting up to ``timeout`` s); returns its descriptor."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StoreLockedError(
                    f"event store {path} is locked by {_holder(lock_path)}; waited {timeout:g} s. "
                    "Only one process uses the embedded DuckDB store at a time: wait for it to "
                    "finish, raise the wait (BATTLEGROUND_LOCK_TIMEOUT), or use PostgreSQL "
                    "(BATTLEGROUND_DATABASE_URL) for many concurrent writers"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
    os.ftruncate(fd, 0)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    os.pwrite(fd, f"pid {os.getpid()} ({' '.join(sys.argv[:2])[:120]}) since {now}".encode(), 0)
    return fd


def _unflock(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def pinned_lock(path: Path, *, timeout: float = 60.0) -> Iterator[bool]:
    """Keep the store at ``path`` for this process for the whole block (a long-running server).

    Other processes wait as for :func:`exclusive_lock`. Threads of this process still take turns
    through :func:`exclusive_lock` (one operation at a time, as before), but without taking the
    inter-process lock again, so the owner of the pin can keep the database open between operations.
    Yields ``True`` for the first pin of the path in this process (nested pins share it).
    """
    lock_path = path.with_name(path.name + ".lock")
    state = _state(str(lock_path))
    if not state.rlock.acquire(timeout=timeout):
        raise StoreLockedError(
            f"event store {path} is locked by another thread of this process; waited {timeout:g} s"
        )
    try:
        first = state.pins == 0
        if first:
            if state.depth > 0:
                raise StoreLockedError(f"event store {path}: pin it before an operation, not inside one")
            state.pinned_fd = _flock(path, lock_path, timeout)
        state.pins += 1
    finally:
        state.rlock.release()
    try:
        yield first
    finally:
        with state.rlock:  # wait for the operation in flight (of any thread) to end
            state.pins -= 1
            if state.pins == 0 and state.pinned_fd is not None:
                fd, state.pinned_fd = state.pinned_fd, None
                _unflock(fd)
