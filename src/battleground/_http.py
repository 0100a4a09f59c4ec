"""The HTTP hardening every battleground server shares (dashboard, model server, incremental scoring).

:func:`harden` wraps an ASGI app, outermost first, in

1. :class:`SecurityHeaders`: ``Content-Security-Policy``, ``X-Content-Type-Options: nosniff``,
   ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer`` on every reply;
2. trusted hosts (Starlette's ``TrustedHostMiddleware``): only ``127.0.0.1``, ``localhost``, ``::1``
   and the configured names, so a DNS-rebinding page cannot read the API from a browser;
3. :class:`RequestGate`: the token is checked and the body size capped **before** a byte of the body is
   read (``Content-Length`` over the cap → 413 at once; a chunked body is counted as it streams and
   refused with 413 as soon as it passes the cap); a body that is not UTF-8 text (forms and uploads aside) is refused with
   422 naming the first bad byte, as it streams (RFC 8259: JSON between systems is UTF-8).

The token comparison is constant-time (:func:`check_token`, ``hmac.compare_digest``).
"""

from __future__ import annotations

import codecs
import contextlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from battleground.errors import WebError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_HOSTS",
    "MAX_BODY_BYTES",
    "WRITE_METHODS",
    "AuthFailure",
    "RequestGate",
    "SecurityHeaders",
    "check_token",
    "harden",
]

MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's interactive docs load Swagger UI from its CDN and start it with an inline script
DOCS_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src https://cdn.jsdelivr.net 'unsafe-inline'; img-src https://fastapi.tiangolo.com data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


class AuthFailure(WebError):
    """A refused call: ``status`` is 403 (no token configured) or 401 (missing or wrong token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="battleground"'} if self.status == 401 else {}


def check_token(api_token: str | None, authorization: str | None, *, what: str = "writes") -> None:
    """Raise :class:`AuthFailure` unless ``authorization`` reads ``Bearer <api_token>``.

    The comparison takes the same time whatever the guess (``hmac.compare_digest``).
    """
    if not api_token:
        raise AuthFailure(
            403,
            f"this server is read-only: no API token is configured, so {what} are refused. Restart it "
            "with BATTLEGROUND_API_TOKEN=<secret> set, and send 'Authorization: Bearer <secret>'",
        )
    if not authorization:
        raise AuthFailure(401, f"missing 'Authorization: Bearer <token>' header; {what} need the API token")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthFailure(401, "the Authorization header must read 'Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), api_token.encode("utf-8")):
        raise AuthFailure(401, "wrong API token in 'Authorization: Bearer <token>'")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_json(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _NotUtf8(Exception):
    pass


_NOT_TEXT = ("multipart/", "application/octet-stream", "application/x-www-form-urlencoded")


def _is_text(scope: Scope) -> bool:
    """Whether the body must be UTF-8 text: every JSON route's body, whatever its declared type (FastAPI
    parses a body without a type as JSON, and reports one of another type as a validation error that
    quotes its bytes); forms and binary uploads are not checked."""
    kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return not kind.startswith(_NOT_TEXT)


def not_utf8_message(exc: UnicodeDecodeError, offset: int = 0) -> str:
    """The 422 text of a body that is not UTF-8: the byte, its offset and the fix."""
    bad = exc.object[exc.start : exc.start + 1].hex() if exc.object else "??"
    return (
        f"request body is not UTF-8 text (byte 0x{bad} at offset {offset + exc.start}: {exc.reason}); "
        "send JSON encoded as UTF-8 (json.dumps(...).encode('utf-8')); nothing was stored"
    )


class RequestGate:
    """Pure ASGI middleware: the token, then the body size, both before the app reads the body.

    Args:
        app: the wrapped application.
        token: the API token (``None``: calls that need it are refused with 403).
        needs_token: ``(method, path) -> bool``, which calls need the token.
        max_body: the largest body accepted, in bytes (413 above it).
    """

    def __init__(
        self, app: ASGIApp, *, token: str | None, needs_token: Callable[[str, str], bool],
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.token = token
        self.needs_token = needs_token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.needs_token(scope["method"], scope["path"]):
            try:
                check_token(self.token, _header(scope, b"authorization"))
            except AuthFailure as refused:
                await _send_json(send, refused.status, refused.message, refused.headers)
                return
        too_big = f"the request body is larger than {self.max_body:,} bytes; send smaller batches"
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_json(send, 400, f"Content-Length must be a number of bytes, got {length[:40]!r}")
                return
            if declared > self.max_body:
                await _send_json(send, 413, too_big)
                return
        seen = 0
        over = False
        started = False
        refusal: tuple[int, str] | None = None
        decoder = codecs.getincrementaldecoder("utf-8")() if _is_text(scope) else None

        async def counted() -> Message:
            nonlocal seen, over, refusal
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if seen + len(chunk) > self.max_body:
                    over, refusal = True, (413, too_big)
                    raise _TooLarge
                if decoder is not None:
                    try:
                        decoder.decode(chunk, final=not message.get("more_body", False))
                    except UnicodeDecodeError as exc:
                        over, refusal = True, (422, not_utf8_message(exc, seen))
                        raise _NotUtf8 from None
                seen += len(chunk)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if over:  # whatever the app answers to a body cut short, the gate's refusal is the answer
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_TooLarge, _NotUtf8):  # raised by counted(): answered below
            await self.app(scope, counted, watched)
        if refusal is not None and not started:
            await _send_json(send, *refusal)


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every reply (the app's own win)."""

    def __init__(self, app: ASGIApp, *, csp: str = API_CSP, docs_csp: str = DOCS_CSP) -> None:
        self.app = app
        self.csp = csp
        self.docs_csp = docs_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (self.docs_csp if scope["path"] in DOCS_PATHS else self.csp).encode("latin-1")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in (
                    (b"content-security-policy", csp), (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
                ):
                    if key not in present:
                        headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def allowed_hosts(extra: Iterable[str] = ()) -> list[str]:
    """The default trusted hosts plus ``extra`` (names or ``*.example.com`` patterns; ``0.0.0.0`` and
    ``::`` mean no name, so they add nothing)."""
    hosts = list(DEFAULT_HOSTS)
    for h in extra:
        h = h.strip()
        if h and h not in ("0.0.0.0", "::") and h not in hosts:
            hosts.append(h)
    return hosts


def harden(
    app: Any,
    *,
    token: str | None,
    needs_token: Callable[[str, str], bool],
    hosts: Iterable[str] = (),
    max_body: int = MAX_BODY_BYTES,
    csp: str = API_CSP,
) -> None:
    """Install the layers on a FastAPI/Starlette ``app``: the headers outermost (so that even a refused
    host gets them), then trusted hosts, then the gate."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    # add_middleware puts the last one added outermost
    app.add_middleware(RequestGate, token=token, needs_token=needs_token, max_body=max_body)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(hosts), www_redirect=False)
    app.add_middleware(SecurityHeaders, csp=csp)
    _quote_no_raw_bytes(app)


def _quote_no_raw_bytes(app: Any) -> None:
    """FastAPI's own 422 quotes the body it could not parse; a non-text body (an octet-stream upload to
    a JSON route, which the gate lets through undecoded) would then fail to encode and answer 500. Its
    bytes are quoted as text with the undecodable ones replaced. An app with its own handler keeps it."""
    from fastapi.exception_handlers import request_validation_exception_handler
    from fastapi.exceptions import RequestValidationError

    async def invalid(request: Any, exc: Exception) -> Any:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {**e, "input": e["input"].decode("utf-8", "replace")} if isinstance(e.get("input"), bytes) else e
            for e in exc.errors()
        ]
        return await request_validation_exception_handler(request, RequestValidationError(errors, body=None))

    if app.exception_handlers.get(RequestValidationError) in (None, request_validation_exception_handler):
        app.add_exception_handler(RequestValidationError, invalid)
