"""Serve the ``champion`` of a registered MLflow model over HTTP (FastAPI).

Endpoints: ``POST /predict`` (one record or a list of records → P(churn), or for a regression
champion the predicted values, with no labels), ``POST /predict/batch``
(``{"records": [...]}``), ``GET /health``, ``GET /model`` and ``POST /admin/reload``.

Champion swaps: a background thread polls the alias every ``poll_seconds``; when the version behind
``<name>@champion`` changes it loads the new model *beside* the old one and then swaps one reference.
Requests in flight keep the object they started with, so no request is dropped. ``POST /admin/reload``
(``Authorization: Bearer <BATTLEGROUND_API_TOKEN>``) forces the same check at once.

HTTP hardening (``battleground._http``): trusted hosts, security headers, the token checked in constant
time and the body capped before it is read; ``require_token=True`` (``battleground serve
--require-token``) puts every route but ``/health`` behind the token; ``docs=False`` turns off
``/docs``, ``/redoc`` and ``/openapi.json``.

Only versions the champion gate promoted load (:func:`battleground.model.tracking.load_champion`
checks the sha256 of the files against the gate's signed record before unpickling); a refused or
failed load is logged, listed under ``refused_loads`` on ``GET /model``, and the old model keeps serving.
"""

# no `from __future__ import annotations`: FastAPI must see the dynamic pydantic models as real types
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

    from battleground.model.tracking import Champion
    from battleground.settings import Settings

__all__ = ["ChampionHolder", "create_app", "known_categories", "predict_frame", "score_frame", "scoring_model",
           "unseen_categories"]

log = logging.getLogger("battleground.model.serve")
_DTYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}
INLINE_ROWS = 16  # requests of at most this many rows are scored on the event loop, larger ones in threads


def _python_type(dtype: str) -> type:
    for prefix, typ in _DTYPES.items():
        if dtype.lower().startswith(prefix) or dtype.lower().startswith(f"u{prefix}"):
            return typ
    return str


class ChampionHolder:
    """Holds the current champion; ``refresh()`` loads a newer version and swaps it in atomically.

    ``version_of()`` returns the alias' current key (version and gate record). A key whose load was
    refused or failed is logged once, kept in ``refusals`` and not retried until the key changes (or
    ``refresh(force=True)``, as ``/admin/reload`` does); the old champion keeps serving meanwhile.
    """

    def __init__(self, loader: "Callable[[], Champion]", version_of: "Callable[[], str]") -> None:
        import collections

        self._loader = loader
        self._version_of = version_of
        self._lock = threading.Lock()
        self.champion: Champion = loader()  # first: raises LookupError when there is no champion
        self._key = version_of()
        self.swaps = 0
        self._refused_key: str | None = None
        self.refusals: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)

    def refresh(self, force: bool = False) -> bool:
        """Load the alias' version if it changed; returns whether a swap happened."""
        import time

        with self._lock:  # one loader at a time; readers never take this lock
            key = self._version_of()
            if key == self._key or (key == self._refused_key and not force):
                return False
            try:
                new = self._loader()
            except Exception as exc:  # refused (no gate record, digest mismatch) or broken: keep serving
                self._refused_key = key
                self.refusals.append({"at": time.time(), "alias": key.split("|", 1)[0],
                                      "error": f"{type(exc).__name__}: {exc}"})
                log.error("champion load refused, still serving v%s: alias now names v%s: %s: %s",
                          self.champion.version, key.split("|", 1)[0], type(exc).__name__, exc)
                return False
            self.champion = new  # a single reference assignment: atomic for readers
            self._key = key
            self._refused_key = None
            self.swaps += 1
            log.info("champion swapped in: %s v%s (sha256 %s)", new.name, new.version, new.digest[:12])
            return True


def known_categories(model: Any) -> dict[str, set[str]]:
    """The categories each categorical column was fitted with (``categories_`` of the model's
    ``Trainer``/``Preprocess`` steps, through scikit-learn pipelines); empty when none are known."""
    found: dict[str, set[str]] = {}
    steps = [s for _, s in getattr(model, "steps", [])] or [model]
    for step in steps:
        cats = getattr(step, "categories_", None)
        if isinstance(cats, dict):
            for col, values in cats.items():
                found.setdefault(str(col), set()).update(str(v) for v in values)
    return found


def unseen_categories(champion: "Champion", records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"row", "column", "value"}`` for each value of a categorical column the model never saw
    (the model scores it as a missing value)."""
    inner = getattr(getattr(champion.model, "_model_impl", None), "python_model", None)
    known = known_categories(getattr(inner, "model", None))
    out = []
    for i, rec in enumerate(records):
        for col, values in known.items():
            v = rec.get(col)
            if v is not None and str(v) not in values:
                out.append({"row": i, "column": col, "value": v})
    return out


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


def scoring_model(champion: "Champion") -> Any:
    """What :func:`score_frame` calls: the fitted pipeline inside our pyfunc wrapper (its
    ``predict_proba`` skips pyfunc's per-call schema enforcement), else the pyfunc model itself."""
    inner = getattr(getattr(champion.model, "_model_impl", None), "python_model", None)
    fitted = getattr(inner, "model", None)
    if fitted is not None and (hasattr(fitted, "predict_proba") or champion.task == "regression"):
        return fitted  # a RegressionTrainer's predict returns the values themselves
    return inner if inner is not None else champion.model


def score_frame(model: Any, frame: Any) -> Any:
    """P(class 1) per row of ``frame`` (a float array) from a :func:`scoring_model`; for a regressor the
    predicted values."""
    import numpy as np

    if hasattr(model, "predict_proba"):  # our ProbabilityModel's pipeline: P(class 1)
        from battleground.model.train import pipeline_proba

        return np.asarray(pipeline_proba(model, frame))[:, 1].astype(float, copy=False)
    if hasattr(model, "load_context"):  # an mlflow PythonModel: predict(context, frame)
        return np.asarray(model.predict(None, frame), dtype=float)
    return np.asarray(model.predict(frame), dtype=float)


def predict_frame(champion: "Champion", records: list[dict[str, Any]]) -> list[float]:
    """P(churn) for each record (a regression champion: the predicted value), columns ordered and typed
    as in the model's input schema."""
    import pandas as pd

    model = scoring_model(champion)
    if champion.input_schema:  # column-wise build: much cheaper than from_records for a few rows
        columns = {c: _column([r.get(c) for r in records], t) for c, t in champion.input_schema}
        direct = getattr(model, "predict_proba_columns", None)
        if direct is not None:  # our Trainer scores the arrays themselves: no DataFrame per request
            proba = direct(columns)
            if proba is not None:
                return [float(p) for p in proba[:, 1]]
        values = getattr(model, "predict_columns", None)
        if values is not None and champion.task == "regression":  # our RegressionTrainer, likewise
            predicted = values(columns)
            if predicted is not None:
                return [float(v) for v in predicted]
        frame = pd.DataFrame(columns, copy=False)
    else:
        frame = pd.DataFrame.from_records(records)
    # pydantic has already checked the schema, so call the python model directly and skip pyfunc's
    # per-call schema enforcement (about 6 ms a request)
    return score_frame(model, frame).tolist()  # type: ignore[no-any-return]


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

    Raises ``LookupError`` when the registry has no champion yet and
    :class:`~battleground.model.gate.UntrustedModelError` when the champion's files do not match a
    record of the champion gate (see docs/pipelines-serving.md, "trust boundary").
    """
    from fastapi import Depends, FastAPI, Header, HTTPException
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
        from battleground.model.gate import TAG_DIGEST, TAG_SIGNATURE

        mv = client.get_model_version_by_alias(model_name, CHAMPION)
        return f"{mv.version}|{mv.tags.get(TAG_DIGEST, '')}|{mv.tags.get(TAG_SIGNATURE, '')}"

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
        last = ""
        while not stop.wait(poll_seconds):
            try:
                holder.refresh()
                last = ""
            except Exception as exc:  # a registry hiccup must not kill the poller; keep serving the old model
                if str(exc) != last:  # once per distinct error, not every poll
                    log.warning("champion poll failed, still serving v%s: %s: %s", holder.champion.version,
                                type(exc).__name__, exc)
                last = str(exc)

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
        if not records:
            raise HTTPException(422, "the body holds no record: send one record, a non-empty list of records, "
                                     'or {"records": [...]} with at least one')
        champ = holder.champion  # one read: the whole request uses the same model
        rows = [r.model_dump() for r in records]
        proba = predict_frame(champ, rows)
        if champ.task == "regression":  # numbers, not probabilities: no label, no threshold
            return JSONResponse({"predictions": proba, "task": "regression", "model": champ.name,
                                 "version": champ.version, "unseen_categories": unseen_categories(champ, rows)})
        return JSONResponse({"predictions": proba, "labels": [int(p >= champ.threshold) for p in proba],
                             "threshold": champ.threshold, "model": champ.name, "version": champ.version,
                             "unseen_categories": unseen_categories(champ, rows)})

    # a few rows are scored on the event loop itself (a fraction of a millisecond: handing them to the
    # thread pool and back costs more, and on a loaded machine each hand-off waits for a CPU twice);
    # larger requests go to the thread pool so that they do not stall the loop
    async def respond(records: list[Any]) -> JSONResponse:
        if len(records) <= INLINE_ROWS:
            return score(records)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(score, records)

    @app.post("/predict")
    async def predict(body: Record | list[Record]) -> JSONResponse:  # type: ignore[valid-type]
        return await respond(body if isinstance(body, list) else [body])

    @app.post("/predict/batch")
    async def predict_batch(body: Batch) -> JSONResponse:
        return await respond(body.records)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": holder.champion.name, "version": holder.champion.version}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        champ = holder.champion
        return {"name": champ.name, "version": champ.version, "alias": champ.alias, "run_id": champ.run_id,
                "model_type": champ.model_type, "metrics": dict(champ.metrics),
                "features": [{"name": n, "dtype": t} for n, t in champ.input_schema], "swaps": holder.swaps,
                "sha256": champ.digest, "threshold": None if champ.task == "regression" else champ.threshold,
                "task": champ.task, "refused_loads": list(holder.refusals)}

    def admin(authorization: str | None = Header(default=None)) -> None:
        # the gate below refuses first; this keeps the route safe if it is mounted elsewhere
        check_token(settings.api_token, authorization, what="admin calls")

    @app.post("/admin/reload", dependencies=[Depends(admin)])
    def reload() -> dict[str, Any]:
        swapped = holder.refresh(force=True)
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
