"""The decision service's FastAPI app: ``POST /decide``, ``POST /reward``, ``GET /policies``, ``GET /health``.

Writes (every POST) need ``Authorization: Bearer <api token>`` (the shared gate of ``_http.py``:
constant-time comparison, checked before the body is read; with no token configured the service is
read-only and refuses them with 403); only the trusted hosts are answered.
"""

# no `from __future__ import annotations`: FastAPI reads the annotations of the routes at runtime
import asyncio
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from battleground.decisions._service import DecisionService, NotRunningError
from battleground.settings import Settings

__all__ = ["create_decision_app"]


class DecideRequest(BaseModel):
    unit_id: str | int = Field(description="The unit (user, customer) deciding for.")
    policy: str | None = Field(None, description="A deployed policy key (give this or experiment).")
    experiment: str | int | None = Field(None, description="A running A/B experiment (name or id).")
    context: list[float] = Field(default_factory=list, max_length=10_000, description="The features.")
    decision_id: str | None = Field(None, max_length=200,
                                    description="Idempotency key: re-sending it returns the logged decision.")


class RewardRequest(BaseModel):
    decision_id: str = Field(max_length=200)
    reward: float


_Body = TypeVar("_Body", bound=BaseModel)


def create_decision_app(settings: Settings, *, service: DecisionService | None = None, updaters: bool = True,
                        hosts: tuple[str, ...] = (), idle: float | None = None) -> FastAPI:
    """The app over one :class:`DecisionService` (created from ``settings`` unless given; ``idle``: see
    :class:`DecisionService`)."""
    from contextlib import asynccontextmanager

    import battleground
    from battleground._http import WRITE_METHODS, harden
    from battleground.errors import BattlegroundError
    from battleground.experiment.register import ExperimentNotFoundError
    from battleground.storage._filelock import StoreLockedError
    from battleground.storage.events import StoreUnavailableError

    svc = service or DecisionService(settings, updaters=updaters, idle=idle)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        yield
        svc.close()

    app = FastAPI(title="battleground decisions", version=battleground.__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.service = svc

    @app.get("/health")
    async def health() -> dict[str, str]:  # async: no hop to the thread pool for a constant
        return {"status": "ok"}

    @app.get("/policies")
    def policies() -> list[dict[str, Any]]:
        return svc.status()

    @app.post("/decide", openapi_extra=_body_schema(DecideRequest))
    async def decide(request: Request) -> Any:
        body = _parse(DecideRequest, await request.body())
        if (body.policy is None) == (body.experiment is None):
            return _error(422, "give exactly one of 'policy' (a deployed policy key) and 'experiment' (an A/B test)")
        key = str(body.policy if body.policy is not None else body.experiment)
        if body.experiment is not None and svc.is_policy(key):
            return _error(422, f"{key!r} is a deployed policy; send it as 'policy'")
        row, fut = svc.decide(str(body.unit_id), key, body.context, body.decision_id)
        stored, new = await asyncio.wrap_future(fut)
        if not stored.same_decision(row):
            return _error(409, f"decision_id {row.decision_id!r} was logged for another unit or key; "
                               "use a fresh id (a UUID) for each decision")
        svc.remember(stored)
        # a Response: FastAPI's jsonable_encoder pass over a dict of JSON scalars is skipped
        return JSONResponse({"decision_id": stored.decision_id, "action": stored.action, "variant": stored.variant,
                             "propensity": stored.propensity, "policy_version": stored.policy_version, "new": new})

    @app.post("/reward")
    async def reward(body: RewardRequest) -> Any:
        outcome = await asyncio.wrap_future(svc.reward(body.decision_id, body.reward))
        if outcome == "unknown":
            return _error(404, f"no decision {body.decision_id!r} is logged; send the decision_id /decide returned")
        if outcome == "conflict":
            return _error(409, f"decision {body.decision_id!r} already has another reward; the first one is kept")
        return {"decision_id": body.decision_id, "status": outcome}

    async def not_found(_request: Request, exc: Exception) -> JSONResponse:
        return _error(404, f"no deployed policy or experiment matches: {exc}")

    async def not_running(_request: Request, exc: Exception) -> JSONResponse:
        return _error(409, str(exc))

    async def bad_input(_request: Request, exc: Exception) -> JSONResponse:
        return _error(422, str(exc) + "; nothing was logged")

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _error(503, f"the decision log is unavailable ({first[:300]}); retry with the same decision_id",
                      {"Retry-After": "1"})

    app.add_exception_handler(ExperimentNotFoundError, not_found)
    app.add_exception_handler(NotRunningError, not_running)
    app.add_exception_handler(StoreUnavailableError, unavailable)
    app.add_exception_handler(StoreLockedError, unavailable)
    app.add_exception_handler(BattlegroundError, bad_input)
    harden(app, token=settings.api_token, needs_token=lambda method, _path: method in WRITE_METHODS,
           hosts=(*settings.allowed_hosts, *hosts), max_body=min(settings.max_body_bytes, 1 << 20))
    return app


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses ``model`` itself (:func:`_parse`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _parse(model: type[_Body], raw: bytes) -> _Body:
    """``raw`` JSON as ``model`` in one pass (pydantic-core parses and validates the bytes: about a
    third of the CPU of FastAPI's body handling, ``json.loads`` + dependency solving + validation);
    invalid bodies get FastAPI's own 422 (``loc`` starting with ``"body"``)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw.decode("utf-8", "replace")) from None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)
