"""Small churn frames shared by the model tests (built once per session: they are pure data)."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def churn_sets() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    from battleground.model.data import CreateDataSet

    ds = CreateDataSet(n_characters=1500, seed=1)
    X_train, y_train = ds.load_train_set()
    X_test, y_test = ds.load_test_set()
    return X_train, y_train, X_test, y_test
