"""One consistent, cancellable read of the event stores: :func:`read_snapshot`.

Inside ``with read_snapshot() as snap:`` every read of an event store (any store object with the same
URL, in this context) goes through one connection: on PostgreSQL one ``REPEATABLE READ READ ONLY``
transaction, so the results, the daily series and the end conditions of one request see the same rows
while writers keep committing; on DuckDB one connection held under the store's lock, so no writer runs in
between. ``snap.cancel()`` (from any thread, e.g. when the HTTP client went away) cancels the statement
running on those connections; the read then raises :class:`ReadCancelledError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

from battleground.errors import StorageError

__all__ = ["ReadCancelledError", "ReadSnapshot", "StatementTimeoutError", "current_snapshot", "read_snapshot"]


class ReadCancelledError(StorageError, RuntimeError):
    """A read was cancelled because whoever asked for it went away."""


class StatementTimeoutError(StorageError, TimeoutError):
    """A read ran past the store's ``statement_timeout`` and was cancelled by the server."""


class ReadSnapshot:
    """The connections of one consistent read (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[str, Any] = {}
        self._cancels: list[Callable[[], None]] = []
        self._stack = contextlib.ExitStack()
        self.cancelled = False

    def connection(self, key: str, open_: Callable[[contextlib.ExitStack], tuple[Any, Callable[[], None]]]) -> Any:
        """The snapshot's connection for store ``key``, opened by ``open_`` on first use (which enters
        what it holds into the stack and returns the connection and how to cancel its statement)."""
        with self._lock:
            if self.cancelled:
                raise ReadCancelledError("the read was cancelled (the client went away)")
            if key not in self._conns:
                conn, cancel = open_(self._stack)
                self._conns[key] = conn
                self._cancels.append(cancel)
            return self._conns[key]

    def cancel(self) -> None:
        """Cancel the statements running on this snapshot's connections (safe from any thread)."""
        with self._lock:
            self.cancelled = True
            cancels = list(self._cancels)
        for cancel in cancels:
            with contextlib.suppress(Exception):
                cancel()

    def close(self) -> None:
        with self._lock:
            self._conns.clear()
            self._cancels.clear()
        self._stack.close()


_current: contextvars.ContextVar[ReadSnapshot | None] = contextvars.ContextVar("bg_read_snapshot", default=None)


def current_snapshot() -> ReadSnapshot | None:
    """The snapshot of the enclosing :func:`read_snapshot`, if any."""
    return _current.get()


@contextlib.contextmanager
def read_snapshot(snapshot: ReadSnapshot | None = None) -> Iterator[ReadSnapshot]:
    """Read every event store from one snapshot inside the block (nested blocks share the outer one)."""
    outer = _current.get()
    if outer is not None and snapshot is None:
        yield outer
        return
    snap = snapshot or ReadSnapshot()
    token = _current.set(snap)
    try:
        yield snap
    finally:
        _current.reset(token)
        snap.close()
