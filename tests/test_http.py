"""The HTTP hardening shared by every server: token and body cap before the body is read, security
headers, trusted hosts, constant-time comparison. Driven at the ASGI level so that the bytes a server
pulls from a streaming body are counted exactly."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterator
from typing import Any

import pytest

from battleground.settings import Settings

TOKEN = "gate-test-token"
CHUNK = 64 * 1024


class Body:
    """A streaming request body: ``total`` bytes in 64 KiB chunks; counts what the server pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    def chunks(self) -> Iterator[bytes]:
        sent = 0
        while sent < self.total:
            n = min(CHUNK, self.total - sent)
            sent += n
            self.pulled += n
            yield b" " * n


def call(app: Any, method: str, path: str, *, headers: dict[str, str] | None = None,
         body: Body | None = None, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI app; the body is pulled chunk by chunk only when the app asks."""
    raw = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "path": path, "raw_path": path.encode(), "query_string": b"", "headers": raw,
             "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "root_path": ""}
    chunks = body.chunks() if body is not None else iter(())
    pending = next(chunks, None)
    out: dict[str, Any] = {"status": 0, "headers": {}, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal pending
        if pending is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        data, pending = pending, next(chunks, None)
        return {"type": "http.request", "body": data, "more_body": pending is not None}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    async def run() -> None:
        await app(scope, receive, send)

    asyncio.run(run())
    return out["status"], out["headers"], out["body"]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from battleground.web import create_app

    home = tmp_path_factory.mktemp("gate") / ".battleground"
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": TOKEN,
                                  "BATTLEGROUND_MAX_BODY_BYTES": str(1024 * 1024)})
    return create_app(settings)


def test_a_body_without_a_token_is_refused_before_a_byte_is_read(dashboard: Any) -> None:
    body = Body(500 * 1024 * 1024)  # 500 MB, streamed: never materialised
    status, _, reply = call(dashboard, "POST", "/api/events", body=body,
                            headers={"content-type": "application/json"})
    assert status == 401 and b"Authorization" in reply
    assert body.pulled <= CHUNK  # at most the first chunk, buffered by the caller before the call
    status, _, _ = call(dashboard, "POST", "/api/events", body=(wrong := Body(10 * CHUNK)),
                        headers={"authorization": "Bearer nope"})
    assert status == 401 and wrong.pulled <= CHUNK


def test_a_declared_length_over_the_cap_is_refused_at_once(dashboard: Any) -> None:
    body = Body(5 * 1024 * 1024)
    status, _, reply = call(dashboard, "POST", "/api/events", body=body, headers={
        "authorization": f"Bearer {TOKEN}", "content-length": str(body.total)})
    assert status == 413 and b"1,048,576 bytes" in reply
    assert body.pulled <= CHUNK


def test_a_chunked_body_is_cut_at_the_cap(dashboard: Any) -> None:
    body = Body(500 * 1024 * 1024)  # no Content-Length: counted as it streams
    status, headers, reply = call(dashboard, "POST", "/api/events", body=body, headers={
        "authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    assert status == 413, reply
    assert body.pulled <= 1024 * 1024 + 2 * CHUNK
    assert headers["x-frame-options"] == "DENY"


def test_a_body_under_the_cap_still_goes_through(dashboard: Any) -> None:
    status, _, _ = call(dashboard, "POST", "/api/events", body=Body(100), headers={
        "authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    assert status == 422  # 100 spaces are no batch; the app itself answered


def test_untrusted_hosts_are_refused(dashboard: Any) -> None:
    """DNS rebinding: a page on attacker.example resolving to 127.0.0.1 sends its own Host."""
    assert call(dashboard, "GET", "/api/health")[0] == 200
    assert call(dashboard, "GET", "/api/health", host="localhost:8080")[0] == 200
    status, headers, _ = call(dashboard, "GET", "/api/experiments", host="attacker.example")
    assert status == 400 and headers["x-content-type-options"] == "nosniff"


def test_configured_hosts_are_trusted(tmp_path: Any) -> None:
    from battleground.web import create_app

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / "h"),
                                  "BATTLEGROUND_ALLOWED_HOSTS": "dash.internal, *.corp.example"})
    app = create_app(settings)
    assert call(app, "GET", "/api/health", host="dash.internal")[0] == 200
    assert call(app, "GET", "/api/health", host="bi.corp.example")[0] == 200
    assert call(app, "GET", "/api/health", host="corp.example.evil")[0] == 400


def test_token_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from battleground._http import AuthFailure, check_token

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    check_token(TOKEN, f"Bearer {TOKEN}")
    with pytest.raises(AuthFailure) as wrong:
        check_token(TOKEN, "Bearer gate-test-tokeX")
    assert wrong.value.status == 401 and len(calls) == 2
    with pytest.raises(AuthFailure) as none:
        check_token(None, f"Bearer {TOKEN}")
    assert none.value.status == 403


def test_incremental_router_can_require_the_token(tmp_path: Any) -> None:
    from fastapi import FastAPI

    from battleground._http import harden
    from battleground.incremental import create_router

    app = FastAPI()
    app.include_router(create_router(tmp_path / "ck", api_token=TOKEN), prefix="/incremental")
    harden(app, token=TOKEN, needs_token=lambda m, p: p.startswith("/incremental"))
    assert call(app, "POST", "/incremental/score", body=Body(10))[0] == 401
    assert call(app, "GET", "/incremental/model")[0] == 401
    status, headers, reply = call(app, "GET", "/incremental/model", headers={"authorization": f"Bearer {TOKEN}"})
    assert status == 503 and str(tmp_path) not in reply.decode()  # no checkpoint yet, and no path shown
    assert headers["content-security-policy"].startswith("default-src 'none'")
    # the router alone (mounted in someone else's app) refuses too
    bare = FastAPI()
    bare.include_router(create_router(tmp_path / "ck", api_token=TOKEN), prefix="/incremental")
    assert call(bare, "GET", "/incremental/model")[0] == 401


def _raw(app: Any, path: str, data: bytes, *, split: int | None = None, content_type: str | None = "application/json",
         token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    """POST ``data`` (optionally in two chunks cut at ``split``) and return the status and JSON reply."""
    import json

    class Fixed(Body):
        def chunks(self) -> Iterator[bytes]:
            parts = [data] if split is None else [data[:split], data[split:]]
            for p in parts:
                self.pulled += len(p)
                yield p

    headers = {"authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["content-type"] = content_type
    status, _, reply = call(app, "POST", path, body=Fixed(len(data)), headers=headers)
    return status, json.loads(reply)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=latin-1", None])
def test_a_body_that_is_not_utf8_is_422_naming_the_byte(dashboard: Any, content_type: str | None) -> None:
    """Latin-1 'é' (0xe9) where UTF-8 was due: 422 (as documented), not FastAPI's 400."""
    data = b'{"experiment": "x", "events": [{"event_id": "caf\xe9"}]}'
    status, reply = _raw(dashboard, "/api/events", data, content_type=content_type)
    assert status == 422, reply
    assert "not UTF-8" in reply["detail"] and "0xe9" in reply["detail"]
    where = data.index(b"\xe9")
    assert f"offset {where}" in reply["detail"] and "nothing was stored" in reply["detail"]
    # a multi-byte character cut between two chunks is fine; the bad byte in the second chunk is found
    good = '{"experiment": "é", "events": []}'.encode()
    assert _raw(dashboard, "/api/events", good, split=good.index(b"\xc3") + 1)[0] == 422  # a bad batch, not bad text
    status, reply = _raw(dashboard, "/api/events", good[:-2] + b"\xff}", split=20)
    assert status == 422 and f"offset {len(good) - 2}" in reply["detail"]


def test_every_json_route_refuses_non_utf8(tmp_path: Any) -> None:
    """The gate is shared: the decision service and the incremental scorer answer the same 422."""
    from fastapi import FastAPI

    from battleground._http import harden
    from battleground.incremental import create_router

    app = FastAPI()
    app.include_router(create_router(tmp_path / "ck", api_token=TOKEN), prefix="/incremental")
    harden(app, token=TOKEN, needs_token=lambda m, p: p.startswith("/incremental"))
    status, reply = _raw(app, "/incremental/score", b'{"rows": ["\x80"]}')
    assert status == 422 and "0x80" in reply["detail"]
    # declared as some other text, it is still refused clearly (FastAPI would fail quoting its bytes)
    status, reply = _raw(app, "/incremental/score", b"\x80", content_type="text/plain")
    assert status == 422 and "0x80" in reply["detail"]


def test_a_binary_body_to_a_json_route_is_422_not_500(tmp_path: Any) -> None:
    """An octet-stream body is not decoded by the gate; FastAPI's 422 quoting its bytes must still encode."""
    from fastapi import FastAPI

    from battleground._http import harden
    from battleground.incremental import create_router

    app = FastAPI()
    app.include_router(create_router(tmp_path / "ck", api_token=TOKEN), prefix="/incremental")
    harden(app, token=TOKEN, needs_token=lambda m, p: p.startswith("/incremental"))
    status, reply = _raw(app, "/incremental/score", b'{"rows": "\xff"}', content_type="application/octet-stream")
    assert status == 422, reply
    assert reply["detail"][0]["loc"] == ["body"] and reply["detail"][0]["input"] == '{"rows": "\ufffd"}'
