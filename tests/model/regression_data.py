"""A seeded synthetic regression frame shared by the regression tests."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

LEVEL = {"bronze": 0.0, "silver": 2.0, "gold": 5.0}


def regression_frame(n: int, seed: int) -> pd.DataFrame:
    """``target = 10 + 3·x1 − 2·x2 + level effect + 1.5·[region == 'r3'] + N(0, 1)``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "char_id": np.arange(n),
        "x1": rng.normal(size=n),
        "x2": rng.normal(size=n),
        "level": rng.choice(list(LEVEL), n),
        "region": rng.choice([f"r{i}" for i in range(5)], n),
    })
    frame["target"] = (10 + 3 * frame["x1"] - 2 * frame["x2"] + frame["level"].map(LEVEL)
                       + 1.5 * (frame["region"] == "r3") + rng.normal(0, 1.0, n))
    return frame


def log_regressor(settings: Any, model: Any, X: pd.DataFrame, experiment: str) -> str:
    """Log a fitted regressor as the pipelines do (pyfunc, input schema and task tags); its model URI."""
    import warnings

    from mlflow.models import infer_signature

    from battleground.model._pyfunc import PredictionModel
    from battleground.model.tracking import _mlflow, use_experiment

    mlflow = _mlflow(settings)
    use_experiment(mlflow, experiment, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            mlflow.set_tags({"input_schema": json.dumps([[c, str(X[c].dtype)] for c in X.columns]),
                             "task": "regression"})
            info = mlflow.pyfunc.log_model(name="model", python_model=PredictionModel(model),
                                           signature=infer_signature(X.head(5), model.predict(X.head(5))))
    return str(info.model_uri)
