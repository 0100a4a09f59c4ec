"""The LightGBM scoring fast path (category codes from pre-built maps, the booster on a NumPy matrix)
gives exactly the numbers of the estimator on the prepared pandas frame, for one row and many."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battleground.model.train import Trainer, pipeline_proba


def _old_prepare(trainer: Trainer, X: pd.DataFrame) -> pd.DataFrame:
    """The category conversion as it was before the fast path (the reference)."""
    X = X.copy()
    for col, cats in trainer.categories_.items():
        text = X[col].astype(object).where(X[col].notna(), None).map(lambda v: None if v is None else str(v))
        X[col] = pd.Categorical(text.where(text.isin(cats), None), categories=cats)
    return X


def _hostile(X: pd.DataFrame) -> pd.DataFrame:
    """Unseen categories, missing values of every kind, and a category column as pandas categories."""
    X = X.head(300).copy()
    X["class"] = X["class"].astype(object)
    X.loc[X.index[::7], "class"] = "Pandaren-monk"
    X.loc[X.index[3::11], "class"] = None
    X.loc[X.index[5::13], "race"] = np.nan
    X.loc[X.index[::17], "days_since_mastery"] = np.nan
    X["sub_type"] = X["sub_type"].astype("category")
    return X


@pytest.mark.parametrize("calibration", [None, "sigmoid", "isotonic"])
def test_fast_lightgbm_proba_equals_the_estimator_on_the_prepared_frame(churn_sets, calibration) -> None:
    X_train, y_train, X_test, _ = churn_sets
    tr = Trainer("lightgbm", params={"n_estimators": 25}, calibration=calibration).fit(X_train, y_train)
    X = _hostile(X_test)
    reference = np.asarray(pipeline_proba(tr.estimator_, _old_prepare(tr, X)[list(tr.feature_names_in_)]))
    assert tr._fast_proba(X) is not None  # the fast path is taken
    np.testing.assert_array_equal(tr.predict_proba(X), reference)
    for i in (0, 3, 7):  # one row at a time (the serving case: the dict lookups) gives the same bits
        np.testing.assert_array_equal(tr.predict_proba(X.iloc[[i]]), reference[[i]])
    pd.testing.assert_frame_equal(tr._prepare(X), _old_prepare(tr, X))
    pd.testing.assert_frame_equal(tr._prepare(X.iloc[[3]]), _old_prepare(tr, X.iloc[[3]]))


def test_non_text_values_match_by_their_text_and_odd_columns_fall_back(churn_sets) -> None:
    X_train, y_train, _, _ = churn_sets
    X = X_train.copy()
    X["tier"] = np.where(X["account_age_days"] > X["account_age_days"].median(), 2, 1)  # int, declared categorical
    tr = Trainer("lightgbm", params={"n_estimators": 10}, categorical_features=["tier"]).fit(X, y_train)
    assert tr.categories_["tier"] == ["1", "2"]
    np.testing.assert_array_equal(tr._codes("tier", X["tier"].head(100)), (X["tier"].head(100) - 1).to_numpy())
    np.testing.assert_array_equal(tr._codes("tier", X["tier"]), (X["tier"] - 1).to_numpy())
    np.testing.assert_array_equal(tr._codes("tier", pd.Series(["2", 1, 3, None], dtype=object)), [1, 0, -1, -1])
    reference = np.asarray(pipeline_proba(tr.estimator_, _old_prepare(tr, X)[list(tr.feature_names_in_)]))
    np.testing.assert_array_equal(tr.predict_proba(X), reference)
    # a numeric feature that arrives as text is LightGBM's error, as before the fast path
    odd = X.head(5).astype({"total_kills": object})
    assert tr._lgb_matrix(odd) is None
    with pytest.raises(ValueError, match="total_kills"):
        tr.predict_proba(odd)
    with pytest.raises(ValueError, match="lacks the columns"):
        tr.predict_proba(X.drop(columns=["race"]))


def test_fast_logistic_proba_equals_the_pipeline(churn_sets) -> None:
    X_train, y_train, X_test, _ = churn_sets
    tr = Trainer("logistic").fit(X_train, y_train)
    X = _hostile(X_test)
    reference = np.asarray(tr.estimator_.predict_proba(X[list(tr.feature_names_in_)]))  # sklearn's own path
    assert tr._fast_linear(X) is not None
    np.testing.assert_array_equal(tr.predict_proba(X), reference)
    for i in (0, 3, 7):  # one row against sklearn on one row (BLAS may sum a lone row in another order)
        one = X.iloc[[i]]
        np.testing.assert_array_equal(tr.predict_proba(one), tr.estimator_.predict_proba(one[list(tr.feature_names_in_)]))
    calibrated = Trainer("logistic", calibration="sigmoid").fit(X_train, y_train)
    assert calibrated._fast_linear(X) is None  # not the fast path's shape: scikit-learn scores it
    np.testing.assert_array_equal(calibrated.predict_proba(X), calibrated.estimator_.predict_proba(X))


@pytest.mark.parametrize(("kind", "calibration"), [("lightgbm", "sigmoid"), ("lightgbm", None), ("logistic", None)])
def test_request_columns_score_like_the_frame(churn_sets, kind, calibration) -> None:
    """The model server's request (column → array, never a DataFrame) gets the frame's numbers."""
    import json

    from battleground.model.serve import _column

    X_train, y_train, X_test, _ = churn_sets
    tr = Trainer(kind, params={"n_estimators": 25} if kind == "lightgbm" else None,
                 calibration=calibration).fit(X_train, y_train)
    X = _hostile(X_test)
    X["sub_type"] = X["sub_type"].astype(str)
    schema = [(c, str(X_train[c].dtype)) for c in X_train.columns]
    records = json.loads(X.to_json(orient="records"))
    for rows in (records[:1], records[3:4], records[:120]):
        columns = {c: _column([r.get(c) for r in rows], t) for c, t in schema}
        frame = pd.DataFrame(columns)
        got = tr.predict_proba_columns(columns)
        assert got is not None
        np.testing.assert_array_equal(got, tr.predict_proba(frame))
    with pytest.raises(ValueError, match=r"lacks the columns \['race'\]"):
        tr.predict_proba_columns({c: v for c, v in columns.items() if c != "race"})
