"""The MLflow pyfunc wrappers (imports MLflow, so it loads only when a model is logged or loaded)."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


class ProbabilityModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
    """Wraps a whole fitted pipeline (preprocessing included); ``predict`` returns P(class 1).

    MLflow's own LightGBM/sklearn flavours predict labels, which is not what a churn score needs. The
    type hints on ``predict`` are what MLflow reads (a frame in, one probability per row out).
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> list[float]:
        return np.asarray(self.model.predict_proba(model_input))[:, 1].tolist()  # type: ignore[no-any-return]


class PredictionModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
    """Wraps a fitted regressor (a :class:`~battleground.model.train.RegressionTrainer`, preprocessing
    included); ``predict`` returns the predicted value of each row."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> list[float]:
        return np.asarray(self.model.predict(model_input), dtype=np.float64).ravel().tolist()  # type: ignore[no-any-return]
