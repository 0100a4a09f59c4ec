"""battleground.client against the real API app served by uvicorn on a free port (issue 19 §4): batches
with producer sequences, retries with backoff on 503 and connection failures only, never on a 4xx, and a
retry after a lost reply is a detected replay, not duplicates."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.delivery._shop import TOKEN, event, make_shop
from tests.storage.test_layering import _imports

from battleground.client import DeliveryError, EventClient, RequestRefusedError
from battleground.experiment.events import open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Live:
    """The dashboard app of ``settings`` (write token :data:`TOKEN`) under uvicorn in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = dataclasses.replace(settings, api_token=TOKEN)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        from battleground.web import create_app

        self.server = uvicorn.Server(uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=self.port,
                                                    log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(2000):  # bounded by count: 2000 × 5 ms
            if self.server.started:
                return
            time.sleep(0.005)
        raise AssertionError("uvicorn did not start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            assert self.thread is not None
            self.thread.join()


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    make_shop(settings)
    server = Live(settings)
    server.start()
    yield server
    server.stop()


class Sleeps(list[float]):
    """A recorder passed as the client's ``sleep``: the pauses it asked for (no real waiting)."""

    def __init__(self, on_sleep: Any = None) -> None:
        super().__init__()
        self.on_sleep = on_sleep

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(len(self))


def _events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [event(i, timestamp=dt.datetime(2022, 3, 2, 10, 0, i % 60)) for i in range(start, start + n)]


def test_batches_carry_consecutive_sequences(live: Live, settings: Settings) -> None:
    sleeps = Sleeps()
    with EventClient(live.url, token=TOKEN, producer="p", batch_size=10, sleep=sleeps) as client:
        results = client.send(_events(25))
        assert client.add(event(99)) is None  # buffered, sent on close
    assert [(r.sequence, r.status, r.inserted, r.attempts) for r in results] == [
        (0, "next", 10, 1), (1, "next", 10, 1), (2, "next", 5, 1)]
    assert sleeps == [] and open_event_store(settings).count() == 26


class LoseReplies(httpx.HTTPTransport):
    """Forwards each request, and for the first ``n`` drops the reply (the batch is stored; the client
    sees the connection reset), as when a server is killed between its commit and its answer."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n
        self.forwarded = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.forwarded += 1
        if self.left > 0:
            self.left -= 1
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_retry_after_a_lost_reply_is_a_replay(request: pytest.FixtureRequest, backend: str) -> None:
    settings: Settings = request.getfixturevalue("settings" if backend == "duckdb" else "postgres_settings")
    make_shop(settings)
    server = Live(settings)
    server.start()
    try:
        sleeps, transport = Sleeps(), LoseReplies(2)
        client = EventClient(server.url, token=TOKEN, producer="p", batch_size=40, transport=transport,
                             sleep=sleeps, seed=1)
        first = client.send(_events(40))[0]
        assert (first.status, first.attempts, transport.forwarded) == ("replay", 3, 3)
        assert (first.inserted, first.replays, first.duplicates, first.conflicts) == (0, 40, 0, 0)
        assert len(sleeps) == 2
        second = client.send(_events(40, start=40))[0]
        assert (second.sequence, second.status, second.inserted, second.attempts) == (1, "next", 40, 1)
        client.close()
        assert open_event_store(settings).count() == 80
    finally:
        server.stop()


def test_503_is_retried_honouring_retry_after(live: Live, settings: Settings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATTLEGROUND_LOCK_TIMEOUT", "0.2")  # read by the server's store on first use
    holder = contextlib.ExitStack()
    holder.enter_context(open_event_store(settings).connection())  # the store is busy: the server gets a 503
    sleeps = Sleeps(on_sleep=lambda n: holder.close())  # ... until the client's first pause
    client = EventClient(live.url, token=TOKEN, producer="p", batch_size=5, sleep=sleeps, backoff=0.01,
                         max_backoff=5.0)
    try:
        result = client.send(_events(5))[0]
    finally:
        holder.close()
    assert (result.status, result.inserted, result.attempts) == ("next", 5, 2)
    assert sleeps == [2.0]  # the server's Retry-After, under max_backoff
    assert open_event_store(settings).count() == 5


def test_connection_refused_is_retried_until_the_server_is_up(settings: Settings) -> None:
    make_shop(settings)
    server = Live(settings)  # not started: the port refuses connections
    sleeps = Sleeps(on_sleep=lambda n: server.start() if n == 3 else None)
    client = EventClient(server.url, token=TOKEN, producer="p", batch_size=5, sleep=sleeps, backoff=0.1,
                         max_backoff=0.3, seed=7)
    try:
        result = client.send(_events(5))[0]
    finally:
        server.stop()
    assert (result.status, result.inserted, result.attempts) == ("next", 5, 4)
    # backoff 0.1, 0.2, then capped at 0.3, each times a jitter in [0.5, 1]
    for pause, base in zip(sleeps, (0.1, 0.2, 0.3), strict=True):
        assert 0.5 * base <= pause <= base


def test_gives_up_after_the_retries_with_the_batch(settings: Settings) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    sleeps = Sleeps()
    client = EventClient(url, producer="p", batch_size=3, retries=3, sleep=sleeps, backoff=0.05)
    with pytest.raises(DeliveryError) as info:
        client.send(_events(3))
    assert (info.value.attempts, info.value.sequence, len(info.value.events)) == (4, 0, 3)
    assert "gave up after 4 tries of batch 0 (ConnectError" in str(info.value)
    assert len(sleeps) == 3 and client.next_sequence == 1  # the number stays spent: resend() reuses it


def test_4xx_is_never_retried(live: Live, settings: Settings) -> None:
    sleeps = Sleeps()
    client = EventClient(live.url, token=TOKEN, producer="p", batch_size=4, sleep=sleeps)
    bad = _events(4)
    bad[2]["variant"] = "nobody"
    with pytest.raises(RequestRefusedError) as info:
        client.send(bad)
    assert (info.value.status, info.value.row, info.value.field, info.value.sequence) == (422, 2, "variant", 0)
    wrong = EventClient(live.url, token="wrong", producer="q", sleep=sleeps)
    with pytest.raises(RequestRefusedError) as refused:
        wrong.send(_events(2))
    assert refused.value.status == 401
    assert sleeps == [] and open_event_store(settings).count() == 0


def test_other_5xx_is_not_retried_and_503_runs_out() -> None:
    calls = []

    def answer(status: int) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            calls.append(status)
            return httpx.Response(status, json={"detail": "no", "retryable": status == 503})
        return httpx.MockTransport(handle)

    sleeps = Sleeps()
    with pytest.raises(DeliveryError, match=r"HTTP 500"):
        EventClient("http://x", producer="p", transport=answer(500), sleep=sleeps).send(_events(1))
    assert calls == [500] and sleeps == []
    with pytest.raises(DeliveryError, match="gave up after 3 tries"):
        EventClient("http://x", producer="p", transport=answer(503), sleep=sleeps, retries=2).send(_events(1))
    assert calls == [500, 503, 503, 503] and len(sleeps) == 2


def test_partial_through_the_client(live: Live, settings: Settings) -> None:
    registry = Registry(open_event_store(settings).registry_url)
    registry.start("shop", at=dt.datetime(2022, 3, 1))
    registry.stop("shop", "done", at=dt.datetime(2022, 3, 3))
    rows = _events(4)
    rows[1]["timestamp"] = dt.datetime(2022, 3, 4)
    with pytest.raises(RequestRefusedError) as info:
        EventClient(live.url, token=TOKEN, producer="a").send(rows)
    assert [r["row"] for r in info.value.rejected] == [1]
    result = EventClient(live.url, token=TOKEN, producer="b", partial=True).send(rows)[0]
    assert result.inserted == 3 and [r["event_id"] for r in result.rejected] == ["e1"]


def test_client_bad_options_and_imports() -> None:
    from battleground.errors import ClientError

    for bad in ({"batch_size": 0}, {"batch_size": 10**6}, {"retries": -1}, {"sequence": True}, {"backoff": -1.0}):
        with pytest.raises(ClientError):
            EventClient("http://x", **bad)
    import battleground.client as module

    names = {name for _, name in _imports(Path(module.__file__))}
    ours = {n for n in names if n.startswith("battleground")}
    assert ours and all(n.startswith("battleground.errors") for n in ours), names  # httpx and errors only
