"""Scoring incrementally-updated models over HTTP: a FastAPI router over a checkpoint folder."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from fastapi import APIRouter


class ScoreRow(BaseModel):
    """One row to score: its entity (optional), offset and features by name."""

    entity: str | int | None = None
    offset: float = 0.0
    # non-finite values are refused in the handler: pydantic's own 422 would echo the NaN back, and a
    # NaN cannot be written as JSON (the reply would be a 500)
    features: dict[str, float] = Field(default_factory=dict)


class ScoreRequest(BaseModel):
    rows: list[ScoreRow] = Field(min_length=1)
    exploration: float = Field(0.0, ge=0.0, description="Thompson sampling scale c: 0 scores the posterior "
                               "mean; c > 0 scores one posterior draw with variance c · variance")
    seed: int | None = Field(None, description="seed of the draw, for reproducible exploration")


class ScoreResponse(BaseModel):
    version: int
    watermark: str | None
    scores: list[float]
    probabilities: list[float]
    fixed_effect_only: list[bool] = Field(
        description="true where the row's entity is unknown to the model (or not given): its score is the "
                    "fixed effect (GLMix) or the shared coefficients (single) alone, with no per-entity part")


class ModelInfo(BaseModel):
    version: int
    watermark: str | None
    kind: str
    n_batches: int
    created_at: str
    features: list[str]
    n_entities: int


def create_router(checkpoint_dir: str | os.PathLike[str], *, api_token: str | None = None) -> APIRouter:
    """An ``APIRouter`` serving the newest checkpoint in ``checkpoint_dir``; mount it with
    ``app.include_router(create_router(dir), prefix="/incremental")``.

    ``GET /model`` describes the model version; ``POST /score`` scores rows. A newer checkpoint written
    by a running stream is picked up on the next request (no restart). With ``api_token`` both routes
    need ``Authorization: Bearer <api_token>`` (compared in constant time); wrap the app with
    ``battleground._http.harden`` for the headers, trusted hosts and the body cap.
    """
    import numpy as np
    from fastapi import APIRouter, Depends, Header, HTTPException

    from battleground.incremental._checkpoint import CheckpointStore
    from battleground.incremental._solver import sigmoid

    store = CheckpointStore(checkpoint_dir)
    lock = threading.Lock()
    cache: dict[str, Any] = {"version": None, "model": None, "ckpt": None}

    def current() -> tuple[Any, Any]:
        versions = store.versions()
        if not versions:
            raise HTTPException(
                status_code=503, detail="no model checkpoint yet: run `battleground incremental run` to write one"
            )
        with lock:
            if cache["version"] != versions[-1]:
                try:
                    model, ckpt = store.load(versions[-1])
                except (FileNotFoundError, LookupError):  # pruned between listing and loading: take the newest
                    model, ckpt = store.load()
                cache.update(version=ckpt.version, model=model, ckpt=ckpt)
            return cache["model"], cache["ckpt"]

    def token_required(authorization: str | None = Header(default=None, include_in_schema=False)) -> None:
        from battleground._http import AuthFailure, check_token

        try:
            check_token(api_token, authorization, what="scoring calls")
        except AuthFailure as refused:
            raise HTTPException(refused.status, refused.message, headers=refused.headers) from None

    router = APIRouter(tags=["incremental"], dependencies=[Depends(token_required)] if api_token else [])

    @router.get("/model", response_model=ModelInfo)
    def model_info() -> ModelInfo:
        model, ckpt = current()
        return ModelInfo(version=ckpt.version, watermark=ckpt.watermark, kind=ckpt.kind,
                         n_batches=ckpt.n_batches, created_at=ckpt.created_at,
                         features=list(model.feature_names_in_), n_entities=len(model.entities_))

    @router.post("/score", response_model=ScoreResponse)
    def score(request: ScoreRequest) -> ScoreResponse:
        model, ckpt = current()
        names = list(model.feature_names_in_)
        X = np.zeros((len(request.rows), len(names)))
        for i, row in enumerate(request.rows):
            missing = [n for n in names if n not in row.features]
            if missing:
                raise HTTPException(status_code=422, detail=f"row {i}: missing features {missing}")
            X[i] = [row.features[n] for n in names]
            bad = [n for n, v in zip(names, X[i], strict=True) if not np.isfinite(v)]
            if bad or not np.isfinite(row.offset):
                raise HTTPException(status_code=422, detail=f"row {i}: {', '.join(bad) or 'offset'} must be a "
                                    "finite number (got NaN or infinity); impute it before scoring")
        offsets = np.array([r.offset for r in request.rows])
        has_entity = [r.entity is not None for r in request.rows]
        entity = np.array([str(r.entity) if r.entity is not None else "\x00none" for r in request.rows],
                          dtype=object) if any(has_entity) else None
        try:
            s = model.decision_function(X, offset=offsets, entity=entity, exploration=request.exploration,
                                        random_state=request.seed)
        except ValueError as exc:  # our input checks (non-finite values, bad ids): the request's fault
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        known = model.known_entities(entity) if entity is not None else np.zeros(len(s), dtype=bool)
        known &= np.array(has_entity, dtype=bool)
        return ScoreResponse(version=ckpt.version, watermark=ckpt.watermark, scores=s.tolist(),
                             probabilities=sigmoid(s).tolist(), fixed_effect_only=(~known).tolist())

    return router
