"""The dashboard's FastAPI application and its error handling."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from battleground._redact import RedactingFilter, redact_text, url_password
from battleground.settings import quiet_third_party_telemetry
from battleground.web._auth import WRITE_METHODS, AuthFailure, check_write_access

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    from battleground.settings import Settings
    from battleground.web._state import DashboardState

__all__ = ["create_app"]

log = logging.getLogger("battleground.web")


def create_app(settings: Settings) -> FastAPI:
    """The dashboard: pages at ``/``, ``/experiments/{id}``, ``/leaderboard``, ``/bandit`` and the JSON
    API under ``/api`` (OpenAPI spec at ``/api/openapi.json``).

    Writes (``POST /api/events``) need ``Authorization: Bearer <settings.api_token>``; with no token
    configured the server is read-only and refuses them with 403. Every reply carries the security
    headers (a Content-Security-Policy without inline script, nosniff, no framing); only the trusted
    hosts (127.0.0.1, localhost, ::1 and ``settings.allowed_hosts``) are answered; a write's token and
    body size are checked before its body is read.
    """
    from fastapi import FastAPI

    import battleground
    from battleground._html import dashboard_csp
    from battleground._http import harden
    from battleground.web._api import create_api_router
    from battleground.web._forms import create_form_router
    from battleground.web._ledger import create_ledger_router
    from battleground.web._pages import create_page_router
    from battleground.web._state import DashboardState

    quiet_third_party_telemetry()
    _warm_imports()
    state = DashboardState(settings)
    app = FastAPI(
        title="battleground dashboard",
        version=battleground.__version__,
        description="Experiments, model leaderboard and bandit battles; event ingestion.",
        docs_url=None,  # the interactive docs load from a CDN; the pages must work offline
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.dashboard = state
    app.include_router(create_api_router(state))
    app.include_router(create_form_router(state))  # before the pages: /experiments/new is not a key
    app.include_router(create_page_router(state))
    app.include_router(create_ledger_router(state))
    _install_error_handlers(app, state)
    harden(
        app, token=settings.api_token, needs_token=lambda method, path: method in WRITE_METHODS and path.startswith("/api/"),
        hosts=settings.allowed_hosts, max_body=settings.max_body_bytes, csp=dashboard_csp(),
    )
    # last added, so outermost: plotly.min.js (4.8 MB) and the pages travel gzipped
    from starlette.middleware.gzip import GZipMiddleware

    app.add_middleware(GZipMiddleware, minimum_size=1024)
    _redact_logs(state)
    return app


def _secrets(state: DashboardState) -> list[str | None]:
    s = state.settings
    return [s.api_token, url_password(s.registry_url), url_password(s.events_url), url_password(s.mlflow_uri)]


def _redact_logs(state: DashboardState) -> None:
    """Scrub the server's own log lines and uvicorn's (tracebacks included) of secrets and the home."""
    scrub = RedactingFilter(secrets=_secrets(state), folders=[state.settings.home])
    for name in ("battleground.web", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(scrub)


def _warm_imports() -> None:
    """Import the heavy modules the routes use once, here: worker threads importing pandas for the
    first time at the same moment can see it half-initialised."""
    import pandas  # noqa: F401
    import pyarrow
    import pyarrow.compute  # noqa: F401

    import battleground.experiment.events
    import battleground.experiment.monitoring
    import battleground.experiment.report  # noqa: F401


# ---------------------------------------------------------------------------------------------------
# errors: every failure is a clear 4xx (or 503 when storage is down), never a bare 500
# ---------------------------------------------------------------------------------------------------


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api") or "text/html" not in request.headers.get("accept", "")


def _respond(
    request: Request,
    state: DashboardState,
    status: int,
    message: str,
    extra: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    from fastapi.responses import JSONResponse

    # the last line of defence: a driver's message may carry a URL, a password or a path
    message = redact_text(message, secrets=_secrets(state), folders=[state.settings.home])
    if _wants_json(request):
        return JSONResponse({"detail": message, **(extra or {})}, status_code=status, headers=headers)
    from battleground.web._pages import templates

    return templates().TemplateResponse(
        request, "web/error.html.j2",
        {"title": f"error {status}", "status": status, "message": message, "nav": "",
         "read_only": state.read_only, "plotly": False},
        status_code=status, headers=headers,
    )


_UNION_TAGS = frozenset({"int", "str", "float", "bool", "datetime", "constrained-str", "constrained-int"})


def _where(loc: tuple[Any, ...] | list[Any]) -> tuple[int | None, str | None, str]:
    """(row, field, dotted text) of a pydantic error location such as ('body', 'events', 3, 'value');
    union member tags (``int``, ``function-after[...]``) are dropped."""
    parts = [
        p for p in loc
        if isinstance(p, int) or (p != "body" and p not in _UNION_TAGS and not any(c in str(p) for c in "[("))
    ]
    row = parts[1] if len(parts) >= 2 and parts[0] == "events" and isinstance(parts[1], int) else None
    names = [str(p) for p in parts if not isinstance(p, int) and p not in ("query", "path", "header")]
    text = ""
    for p in parts:
        if p in ("query", "path", "header"):
            continue
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return row, (names[-1] if names else None), text or "request body"


def _storage_errors() -> tuple[type[Exception], ...]:
    """Exception types of the registry's and event store's drivers; :func:`is_transient` then says
    whether one means "cannot be reached right now" (503, retry) or a permanent refusal (no retry)."""
    from battleground.storage._filelock import StoreLockedError
    from battleground.storage.events import StoreUnavailableError

    found: list[type[Exception]] = [StoreUnavailableError, StoreLockedError]
    try:
        from sqlalchemy import exc as sa_exc

        found += [sa_exc.DBAPIError, sa_exc.TimeoutError]
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        pass
    try:
        import psycopg

        found += [psycopg.Error]
    except ImportError:  # pragma: no cover
        pass
    try:
        import duckdb

        found += [duckdb.IOException, duckdb.ConnectionException]
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def _is_input_error(exc: BaseException) -> bool:
    from battleground.experiment.register import RegistryError
    from battleground.stats import StatsInputError
    from battleground.web._api import BatchError
    from battleground.web._forms import FormError
    from battleground.web._view_common import WindowError

    if isinstance(exc, RegistryError | StatsInputError | BatchError | WindowError | FormError):
        return True
    return any(c.__name__ == "EventValidationError" for c in type(exc).__mro__)


def _install_error_handlers(app: FastAPI, state: DashboardState) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from battleground.experiment.register import ExperimentNotFoundError

    async def auth_failure(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthFailure)
        return _respond(request, state, exc.status, exc.message, headers=exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # a write is refused for its missing token before its body is looked at
        if request.method in WRITE_METHODS:
            try:
                check_write_access(state.settings.api_token, request.headers.get("authorization"))
            except AuthFailure as refused:
                return await auth_failure(request, refused)
        errors = []
        for e in exc.errors():
            row, field, where = _where(e.get("loc", ()))
            errors.append({"where": where, "row": row, "field": field, "message": str(e.get("msg", ""))})
        first = errors[0] if errors else {"where": "request", "row": None, "field": None, "message": "invalid"}
        message = f"{first['where']}: {first['message']}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        if request.method in WRITE_METHODS:
            message += "; nothing was stored"
        return _respond(
            request, state, 422, message, {"row": first["row"], "field": first["field"], "errors": errors[:50]}
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        # where the registry lives is the operator's business, not the reader's
        message = re.sub(r" in the registry at \S+;", ";", str(exc).strip("'\""))
        return _respond(request, state, 404, message)

    async def bad_value(request: Request, exc: Exception) -> Response:
        if _is_input_error(exc):
            extra = {"row": getattr(exc, "row", None), "field": getattr(exc, "field", None)}
            if getattr(exc, "line", None) is not None:  # a CSV or JSON-lines body: the line too
                extra["line"] = exc.line  # type: ignore[attr-defined]
            rejected = getattr(exc, "rejected", ())
            if rejected:  # well-formed rows the experiments refused: which and why (partial stores the rest)
                extra["rejected"] = [r.to_dict() for r in rejected[:1000]]
                extra["rejected_count"] = len(rejected)
            message = str(exc)
            if request.method in WRITE_METHODS:
                message += "; nothing was stored"
            return _respond(request, state, 422, message, extra)
        return await internal(request, exc)

    async def refused(request: Request, exc: Exception) -> Response:
        from battleground.storage.events import StoreRefusedError

        assert isinstance(exc, StoreRefusedError)
        log.error("storage refused %s %s: %s", request.method, request.url.path, exc)
        return _respond(request, state, exc.status, str(exc), {"retryable": False, "sqlstate": exc.sqlstate})

    async def unavailable(request: Request, exc: Exception) -> Response:
        from battleground.storage._pg import classify_error, is_transient

        if type(exc).__module__.startswith(("sqlalchemy", "psycopg")) and not is_transient(exc):
            return await refused(request, classify_error(exc, where="the registry",
                                                         writing=request.method in WRITE_METHODS))
        log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _respond(
            request, state, 503,
            f"storage unavailable ({type(exc).__name__}: {first_line[:300]}); retry in a few seconds",
            {"retryable": True}, headers={"Retry-After": "2"},
        )

    async def timed_out(request: Request, exc: Exception) -> Response:
        log.warning("read ran past statement_timeout on %s %s", request.method, request.url.path)
        return _respond(request, state, 504, str(exc))

    async def cancelled(request: Request, exc: Exception) -> Response:
        log.info("read cancelled on %s %s: the client went away", request.method, request.url.path)
        return _respond(request, state, 499, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _respond(request, state, exc.status_code, str(exc.detail), headers=exc.headers)

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _respond(request, state, 500, f"internal error ({type(exc).__name__}); see the server log")

    app.add_exception_handler(AuthFailure, auth_failure)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(ExperimentNotFoundError, not_found)
    app.add_exception_handler(LookupError, not_found)
    app.add_exception_handler(ValueError, bad_value)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)
    for cls in _storage_errors():
        app.add_exception_handler(cls, unavailable)
    from battleground.storage._snapshot import ReadCancelledError, StatementTimeoutError
    from battleground.storage.events import StoreRefusedError

    app.add_exception_handler(StoreRefusedError, refused)

    app.add_exception_handler(StatementTimeoutError, timed_out)
    app.add_exception_handler(ReadCancelledError, cancelled)
