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


@pytest.fixture(scope="session")
def reg_sets() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """(X_train, y_train, X_test, y_test) of :func:`tests.model.regression_data.regression_frame`: 1,000
    training and 500 held-out rows, noise sd 1.0."""
    from tests.model.regression_data import regression_frame

    frame = regression_frame(1500, seed=5)
    X = frame.drop(columns=["char_id", "target"])
    return X.iloc[:1000], frame["target"].iloc[:1000], X.iloc[1000:].reset_index(drop=True), \
        frame["target"].iloc[1000:].reset_index(drop=True)
