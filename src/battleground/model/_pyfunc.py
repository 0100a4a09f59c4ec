"""The MLflow pyfunc wrapper (imports MLflow, so it loads only when a model is logged or loaded)."""

from __future__ import annotations

import warnings
from typing import Any

import mlflow.pyfunc
import numpy as np

with warnings.catch_warnings():  # MLflow nags about type hints on predict when the class is defined
    warnings.simplefilter("ignore")

    class ProbabilityModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
        """Wraps a whole fitted pipeline (preprocessing included); ``predict`` returns P(class 1).

        MLflow's own LightGBM/sklearn flavours predict labels, which is not what a churn score needs.
        """

        def __init__(self, model: Any) -> None:
            self.model = model

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def,override]
            return np.asarray(self.model.predict_proba(model_input))[:, 1]
