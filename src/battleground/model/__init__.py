"""Model lifecycle: data sets, trainers, tuning, evaluation, tracking and the champion.

Names load lazily (module ``__getattr__``) so ``import battleground.model`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # data
    "CreateDataSet": "battleground.model.data",
    "FeatureSelection": "battleground.model.data",
    "Preprocess": "battleground.model.data",
    "build_preprocessing": "battleground.model.data",
    "split_data": "battleground.model.data",
    # train
    "Trainer": "battleground.model.train",
    "tune": "battleground.model.train",
    "leaderboard": "battleground.model.train",
    "top_k_voting": "battleground.model.train",
    # eval
    "EvalClassifierModel": "battleground.model.eval",
    "EvalRegressorModel": "battleground.model.eval",
    "EvalRecommenderModel": "battleground.model.eval",
    # tracking
    "TrainingConfig": "battleground.model.tracking",
    "TrainingOrchestrator": "battleground.model.tracking",
    "ModelSelector": "battleground.model.tracking",
    "load_champion": "battleground.model.tracking",
    "log_seed": "battleground.model.tracking",
    "run_churn_demo": "battleground.model.tracking",
    "train_from_config": "battleground.model.tracking",
    "evaluate_from_config": "battleground.model.tracking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'battleground.model' has no attribute {name!r}")
