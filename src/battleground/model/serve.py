"""Serve the ``champion`` of a registered MLflow model over HTTP (FastAPI).

Endpoints: ``POST /predict`` (one record or a list of records → P(churn)), ``POST /predict/batch``
(``{"records": [...]}``), ``GET /health``, ``GET /model`` and ``POST /admin/reload``.

Champion swaps: a background thread polls the alias every ``poll_seconds``; when the version behind
``<name>@champion`` changes it loads the new model *beside* the old one and then swaps one reference.
Requests in flight keep the object they started with, so no request is dropped. ``POST /admin/reload``
(``Authorization: Bearer <BATTLEGROUND_API_TOKEN>``) forces the same check at once.

HTTP hardening (``battleground._http``): trusted hosts, security headers, the token checked in constant
time and the body capped before it is read; ``require_token=True`` (``battleground serve
--require-token``) puts every route but ``/health`` behind the token; ``docs=False`` turns off
``/docs``, ``/redoc`` and ``/openapi.json``.
"""

# no `from __future__ import annotations`: FastAPI must see the dynamic pydantic models as real types
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

    from battleground.model.tracking import Champion
    from battleground.settings import Settings

__all__ = ["ChampionHolder", "create_app", "predict_frame"]

_DTYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}


def _python_type(dtype: str) -> type:
    for prefix, typ in _DTYPES.items():
        if dtype.lower().startswith(prefix) or dtype.lower().startswith(f"u{prefix}"):
            return typ
    return str


class ChampionHolder:
    """Holds the current champion; ``refresh()`` loads a newer version and swaps it in atomically."""

    def __init__(self, loader: "Callable[[], Champion]", version_of: "Callable[[], str]") -> None:
        self._loader = loader
        self._version_of = version_of
        self._lock = threading.Lock()
        self.champion: Champion = loader()
        self.swaps = 0

    def refresh(self) -> bool:
        """Load the alias' version if it changed; returns whether a swap happened."""
        with self._lock:  # one loader at a time; readers never take this lock
            if self._version_of() == self.champion.version:
                return False
            new = self._loader()
            self.champion = new  # a single reference assignment: atomic for readers
            self.swaps += 1
            return True


def _column(values: list[Any], dtype: str) -> Any:
    """One column in the training dtype, built straight from Python values (no per-column astype)."""
    import numpy as np

    kind = dtype.lower()
    if kind.startswith(("int", "uint")):
        if any(v is None for v in values):  # a missing integer becomes NaN, as pandas would make it
            return np.array([np.nan if v is None else v for v in values], dtype=float)
        return np.array(values, dtype=kind)
    if kind.startswith("float"):
        return np.array([np.nan if v is None else v for v in values], dtype=kind)
    if kind.startswith("bool") and not any(v is None for v in values):
        return np.array(values, dtype=bool)
    return np.array(values, dtype=object)


def predict_frame(champion: "Champion", records: list[dict[str, Any]]) -> list[float]:
    """P(churn) for each record, columns ordered and typed as in the model's input schema."""
    import numpy as np
    import pandas as pd

    if champion.input_schema:  # column-wise build: much cheaper than from_records for a few rows
        frame = pd.DataFrame({c: _column([r.get(c) for r in records], t) for c, t in champion.input_schema},
                             copy=False)
    else:
        frame = pd.DataFrame.from_records(records)
    # pydantic has already checked the schema, so call the python model directly and skip pyfunc's
    # per-call schema enforcement (about 6 ms a request)
    inner = getattr(getattr(champion.model, "_model_impl", None), "python_model", None)
    fitted = getattr(inner, "model", None)
    if fitted is not None and hasattr(fitted, "predict_proba"):  # our ProbabilityModel: P(class 1)
        from battleground.model.train import pipeline_proba

        proba = np.asarray(pipeline_proba(fitted, frame))[:, 1]
    else:
        proba = inner.predict(None, frame) if inner is not None else champion.model.predict(frame)
    return [float(p) for p in np.asarray(proba, dtype=float)]


def create_app(
    settings: "Settings",
    model_name: str = "churn",
    *,
    poll_seconds: float = 2.0,
    require_token: bool = False,
    docs: bool = True,
    hosts: "tuple[str, ...]" = (),
) -> "FastAPI":
    """A FastAPI app serving ``models:/<model_name>@champion`` from ``settings.mlflow_uri``.

    ``require_token``: every route but ``/health`` needs ``Authorization: Bearer <settings.api_token>``;
    ``docs``: serve the interactive docs; ``hosts``: trusted host names beyond the local ones.

    Raises ``LookupError`` when the registry has no champion yet.
    """
    from fastapi import Depends, FastAPI, Header
    from fastapi.responses import JSONResponse

    from battleground._http import check_token, harden
    from battleground.errors import ModelError

    if require_token and not settings.api_token:
        raise ModelError("require_token needs a token: set BATTLEGROUND_API_TOKEN=<secret> before serving")
    from pydantic import BaseModel, ConfigDict, create_model

    from battleground.model.tracking import CHAMPION, _mlflow, load_champion

    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()

    def version_of() -> str:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)

    holder = ChampionHolder(lambda: load_champion(settings, model_name), version_of)
    fields: dict[str, Any] = {
        col: (_python_type(dtype) | None, ...) for col, dtype in holder.champion.input_schema
    }
    Record = create_model(  # type: ignore[call-overload]
        "Record", __config__=ConfigDict(extra="ignore", strict=False), **fields
    )

    class Batch(BaseModel):
        records: list[Record]  # type: ignore[valid-type]

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_seconds):
            try:
                holder.refresh()
            except Exception:  # a registry hiccup must not kill the poller; keep serving the old model
                continue

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: "FastAPI") -> Any:
        thread = threading.Thread(target=poll, name="champion-poller", daemon=True)
        if poll_seconds > 0:
            thread.start()
        yield
        stop.set()

    app = FastAPI(
        title=f"battleground model server: {model_name}", lifespan=lifespan,
        docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.holder = holder

    def score(records: list[Any]) -> JSONResponse:
        champ = holder.champion  # one read: the whole request uses the same model
        rows = [r.model_dump() for r in records]
        return JSONResponse({"predictions": predict_frame(champ, rows), "model": champ.name,
                             "version": champ.version})

    # plain ``def``: FastAPI runs it in its thread pool (measured as fast as ``async def`` for one row,
    # and a large batch does not stall the event loop)
    @app.post("/predict")
    def predict(body: Record | list[Record]) -> JSONResponse:  # type: ignore[valid-type]
        return score(body if isinstance(body, list) else [body])

    @app.post("/predict/batch")
    def predict_batch(body: Batch) -> JSONResponse:
        return score(body.records)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": holder.champion.name, "version": holder.champion.version}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        champ = holder.champion
        return {"name": champ.name, "version": champ.version, "alias": champ.alias, "run_id": champ.run_id,
                "model_type": champ.model_type, "metrics": dict(champ.metrics),
                "features": [{"name": n, "dtype": t} for n, t in champ.input_schema], "swaps": holder.swaps}

    def admin(authorization: str | None = Header(default=None)) -> None:
        # the gate below refuses first; this keeps the route safe if it is mounted elsewhere
        check_token(settings.api_token, authorization, what="admin calls")

    @app.post("/admin/reload", dependencies=[Depends(admin)])
    def reload() -> dict[str, Any]:
        swapped = holder.refresh()
        return {"swapped": swapped, "version": holder.champion.version}

    # engineer G's incremental models, scored beside the champion (checkpoints under the home)
    from battleground.incremental import create_router

    app.include_router(create_router(settings.home / "incremental" / "checkpoints"), prefix="/incremental")

    def needs_token(method: str, path: str) -> bool:
        return path.startswith("/admin") or (require_token and path != "/health")

    harden(app, token=settings.api_token, needs_token=needs_token, hosts=(*settings.allowed_hosts, *hosts),
           max_body=settings.max_body_bytes)
    _install_auth_handler(app)
    return app


def _install_auth_handler(app: "FastAPI") -> None:
    """A refused token is a 401/403 with the reason, not a 500."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from battleground._http import AuthFailure

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthFailure)
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    app.add_exception_handler(AuthFailure, refused)
