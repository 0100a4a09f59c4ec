"""Incremental learning: Lambda-Learner-compatible sequential Bayesian updates, GLMix, streaming.

The seed-compatible record API (``Feature``, ``TrainingRecord``, ``IndexMap``, the trainers), a fast
array/DataFrame path (:class:`SequentialBayesianLogisticRegression`, :class:`GLMix`), a checkpointing
stream runner (:func:`run_stream`) over stream sources (folders, iterables, NATS JetStream, Redis
Streams, the event store) and a FastAPI router for scoring (:func:`create_router`).
Names load lazily so ``import battleground.incremental`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Feature": "_records",
    "TrainingRecord": "_records",
    "IndexMap": "_records",
    "IndexedDataset": "_records",
    "IndexedModel": "_records",
    "HessianType": "_records",
    "UnknownFeatureError": "_records",
    "nt_domain_data_to_index_domain_data": "_records",
    "nt_domain_coeffs_to_index_domain_coeffs": "_records",
    "index_domain_coeffs_to_nt_domain_coeffs": "_records",
    "features_from_dict": "_records",
    "OptimizationError": "_solver",
    "TrainerSequentialBayesianLogisticLossWithL2": "_trainers",
    "TrainerLogisticLossWithL2": "_trainers",
    "TrainerSquareLossWithL2": "_trainers",
    "score_linear_model": "_trainers",
    "evaluate": "_trainers",
    "SequentialBayesianLogisticRegression": "_fast",
    "GLMix": "_glmix",
    "split_frame": "_frames",
    "make_stream": "_frames",
    "CheckpointStore": "_checkpoint",
    "Checkpoint": "_checkpoint",
    "CheckpointError": "_checkpoint",
    "load_model": "_checkpoint",
    "run_stream": "_stream",
    "StreamResult": "_stream",
    "StreamSource": "_sources",
    "SourceBatch": "_sources",
    "FolderSource": "_sources",
    "IterableSource": "_sources",
    "StreamSourceError": "_sources",
    "BadRecordError": "_badrows",
    "NatsJetStreamSource": "_nats",
    "RedisStreamSource": "_redis",
    "EventStoreSource": "_events_source",
    "create_router": "_serve",
    "run_incremental_demo": "_demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'battleground.incremental' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"battleground.incremental.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
