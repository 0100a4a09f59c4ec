"""A small Python client of the event API (``POST /api/events``): batches, retries, producer sequences.

:class:`EventClient` collects events into batches and sends each batch once, with a producer id and a
sequence number of its own (0, 1, 2, …). Delivery rules:

* **Retried, with backoff:** a 503 (the store cannot be reached right now; its ``Retry-After`` is
  honoured) and connection failures (refused, reset, dropped before the reply, a connect timeout). A
  retry keeps the batch's sequence number, so when the first try was stored and only its reply was
  lost, the server reports the retry as a *replay* (:attr:`SendResult.replays`), not as duplicates.
* **Never retried:** every 4xx (a bad batch, a missing token, a read-only server: the same batch would
  be refused again), raised as :class:`RequestRefusedError` naming the row, line and field the server
  named; other 5xx (the store refused the data for good) and read timeouts (the server may still be
  working; send the batch again with :meth:`EventClient.resend`), raised as :class:`DeliveryError`.
* Backoff: ``backoff × 2^attempt`` seconds, capped at ``max_backoff``, times a seeded jitter in
  [0.5, 1]; after ``retries`` retries a :class:`DeliveryError` carries the batch and its sequence.

Example:
    >>> from battleground.client import EventClient
    >>> client = EventClient("http://127.0.0.1:8000", token="secret", producer="checkout-1", batch_size=500)
    >>> client.producer, client.next_sequence
    ('checkout-1', 0)
    >>> client.close()  # nothing buffered: nothing is sent
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from battleground.errors import ClientError

if TYPE_CHECKING:
    import httpx

__all__ = ["DeliveryError", "EventClient", "RequestRefusedError", "SendResult"]

RETRY_STATUS = 503


class RequestRefusedError(ClientError, ValueError):
    """The server refused a batch with a 4xx; sending it again would be refused again.

    Attributes:
        status: the HTTP status (401, 403, 413, 422, …).
        detail: the server's message.
        row, line, field: where in the batch the server found the problem, when it said.
        rejected: for a batch refused whole because the experiments refuse some rows (a time after the
            stop), those rows; ``partial=True`` stores the others.
        sequence: the batch's sequence number.
    """

    def __init__(self, status: int, body: dict[str, Any], sequence: int | None) -> None:
        detail = str(body.get("detail") or f"HTTP {status}")
        super().__init__(f"the server refused the batch (HTTP {status}): {detail}")
        self.status = status
        self.detail = detail
        self.row = body.get("row")
        self.line = body.get("line")
        self.field = body.get("field")
        self.rejected = tuple(body.get("rejected") or ())
        self.sequence = sequence


class DeliveryError(ClientError, RuntimeError):
    """A batch could not be delivered: the retries ran out, or the failure is not one to retry.

    The batch may or may not be stored (a reply can be lost after the commit); :meth:`EventClient.resend`
    with :attr:`events` and :attr:`sequence` is always safe: the server reports a replay if it was.

    Attributes:
        events: the batch.
        sequence: its sequence number.
        attempts: how many times it was sent.
        status: the last HTTP status, if a reply came.
    """

    def __init__(self, message: str, *, events: tuple[Mapping[str, Any], ...], sequence: int, attempts: int,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.events = events
        self.sequence = sequence
        self.attempts = attempts
        self.status = status


@dataclass(frozen=True)
class SendResult:
    """What the server did with one batch (see ``POST /api/events``).

    Attributes:
        sequence: the batch's sequence number; status: ``"next"``, ``"gap"``, ``"late"`` or
            ``"replay"`` (``missing``: for a gap, the first and last sequence the server has not seen).
        received, inserted, duplicates, conflicts, replays: the server's counts.
        rejected: with ``partial``, the rows the experiments refused.
        attempts: how many times the batch was sent (1: no retry).
    """

    sequence: int
    status: str
    received: int
    inserted: int
    duplicates: int = 0
    conflicts: int = 0
    replays: int = 0
    missing: tuple[int, int] | None = None
    rejected: tuple[dict[str, Any], ...] = ()
    attempts: int = 1


def _default_producer() -> str:
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"an event value must be JSON (text, a number, a datetime), got {type(value).__name__}")


def _retryable_transport_errors() -> tuple[type[Exception], ...]:
    import httpx

    # connection refused/reset, the server gone before its reply, a connect that timed out
    return (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


@dataclass
class EventClient:
    """Send events to a battleground API server in batches, with retries and producer sequences.

    Args:
        url: the server's base URL (``http://host:port``).
        token: the server's ``BATTLEGROUND_API_TOKEN`` (sent as a bearer token).
        producer: this sender's id (default: host, process id and a random suffix, so a new client starts
            a new sequence); sequence: the first batch's sequence number (a producer that keeps its id
            across restarts passes the next number it has not sent).
        batch_size: events per batch (:meth:`add` sends when a batch is full).
        experiment: the experiment of events that do not name one.
        partial: ask the server to store the accepted part of a batch straddling an experiment's stop.
        retries: how many times a batch is sent again after a 503 or a connection failure.
        backoff, max_backoff: the first and the largest pause between tries, in seconds.
        timeout: seconds to wait for each reply.
        seed: the jitter's seed; sleep: how to pause (tests pass a recorder); transport: an
            ``httpx`` transport (tests), by default a plain HTTP connection pool.
    """

    url: str
    token: str | None = None
    producer: str = field(default_factory=_default_producer)
    sequence: int = 0
    batch_size: int = 1000
    experiment: int | str | None = None
    partial: bool = False
    retries: int = 5
    backoff: float = 0.2
    max_backoff: float = 10.0
    timeout: float = 30.0
    seed: int | None = None
    sleep: Callable[[float], None] = time.sleep
    transport: Any = None
    _buffer: list[Mapping[str, Any]] = field(default_factory=list, init=False, repr=False)
    _http: Any = field(default=None, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 50_000:
            raise ClientError(f"batch_size must be a whole number from 1 to 50000 (the server's cap), "
                              f"got {self.batch_size!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ClientError(f"retries must be a whole number ≥ 0, got {self.retries!r}")
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int) or self.sequence < 0:
            raise ClientError(f"sequence must be a whole number ≥ 0, got {self.sequence!r}")
        if not (self.backoff >= 0 and self.max_backoff >= 0):
            raise ClientError(f"backoff and max_backoff must be ≥ 0 seconds, got {self.backoff!r}, {self.max_backoff!r}")
        self._rng = random.Random(self.seed)

    @property
    def next_sequence(self) -> int:
        """The sequence number the next batch will carry."""
        return self.sequence

    # ------------------------------------------------------------------ sending
    def add(self, event: Mapping[str, Any]) -> SendResult | None:
        """Buffer one event; when the buffer holds ``batch_size`` events, send them (the result)."""
        self._buffer.append(event)
        return self.flush() if len(self._buffer) >= self.batch_size else None

    def send(self, events: Iterable[Mapping[str, Any]]) -> list[SendResult]:
        """Send events now, in batches of ``batch_size`` (after any buffered ones)."""
        out: list[SendResult] = []
        for e in events:
            sent = self.add(e)
            if sent is not None:
                out.append(sent)
        last = self.flush()
        return [*out, last] if last is not None else out

    def flush(self) -> SendResult | None:
        """Send the buffered events as one batch (``None`` when there are none)."""
        if not self._buffer:
            return None
        batch, self._buffer = tuple(self._buffer), []
        sequence = self.sequence
        self.sequence += 1  # the number is spent even if delivery fails: resend() keeps it
        return self.resend(batch, sequence)

    def resend(self, events: Iterable[Mapping[str, Any]], sequence: int) -> SendResult:
        """Send a batch under a given sequence number (again, after a :class:`DeliveryError`)."""
        import httpx

        batch = tuple(events)
        body: dict[str, Any] = {"events": list(batch), "producer": self.producer, "sequence": int(sequence)}
        if self.experiment is not None:
            body["experiment"] = self.experiment
        if self.partial:
            body["partial"] = True
        payload = json.dumps(body, default=_json_default, allow_nan=False).encode("utf-8")
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        attempt = 0
        while True:
            attempt += 1
            why: str
            wait: float | None = None
            status: int | None = None
            try:
                reply = self._client().post("/api/events", content=payload, headers=headers)
            except _retryable_transport_errors() as exc:
                why = f"{type(exc).__name__}: {exc}"
            except httpx.TimeoutException as exc:
                raise DeliveryError(
                    f"no reply within {self.timeout:g} s ({type(exc).__name__}); the batch may have been "
                    f"stored: resend it with sequence {sequence} (a replay is detected)",
                    events=batch, sequence=sequence, attempts=attempt) from exc
            else:
                status = reply.status_code
                if status == 200:
                    return self._result(reply.json(), sequence, attempt)
                found = _body(reply)
                if 400 <= status < 500:
                    raise RequestRefusedError(status, found, sequence)
                if status != RETRY_STATUS:
                    raise DeliveryError(f"the server failed the batch (HTTP {status}): {found.get('detail', '')}",
                                        events=batch, sequence=sequence, attempts=attempt, status=status)
                why = f"HTTP 503: {found.get('detail', '')}"
                wait = _retry_after(reply.headers.get("retry-after"))
            if attempt > self.retries:
                raise DeliveryError(f"gave up after {attempt} tries of batch {sequence} ({why})",
                                    events=batch, sequence=sequence, attempts=attempt, status=status)
            self.sleep(self._pause(attempt - 1, wait))

    def _pause(self, retry: int, retry_after: float | None) -> float:
        base = min(self.max_backoff, self.backoff * 2**retry)
        pause = base * (0.5 + 0.5 * self._rng.random())
        if retry_after is not None:
            pause = max(pause, min(retry_after, self.max_backoff))
        return pause

    def _result(self, body: dict[str, Any], sequence: int, attempts: int) -> SendResult:
        seq = body.get("sequence") or {}
        missing = seq.get("missing")
        return SendResult(
            sequence=sequence, status=str(seq.get("status", "next")), received=int(body["received"]),
            inserted=int(body["inserted"]), duplicates=int(body.get("duplicates", 0)),
            conflicts=int(body.get("conflicts", 0)), replays=int(body.get("replays") or 0),
            missing=(int(missing[0]), int(missing[1])) if missing else None,
            rejected=tuple(body.get("rejected") or ()), attempts=attempts,
        )

    def _client(self) -> httpx.Client:
        import httpx

        if self._http is None:
            self._http = httpx.Client(base_url=self.url.rstrip("/"), timeout=self.timeout, transport=self.transport)
        return self._http

    def close(self) -> None:
        """Send what is buffered, then close the connections."""
        try:
            self.flush()
        finally:
            if self._http is not None:
                self._http.close()
                self._http = None

    def __enter__(self) -> EventClient:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        elif self._http is not None:  # an error: keep the buffer (the caller decides), free the sockets
            self._http.close()
            self._http = None


def _body(reply: Any) -> dict[str, Any]:
    try:
        found = reply.json()
    except ValueError:
        return {"detail": reply.text[:300]}
    return found if isinstance(found, dict) else {"detail": str(found)[:300]}


def _retry_after(value: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header (a number; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
