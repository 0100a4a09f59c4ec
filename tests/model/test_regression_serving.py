"""Scoring a regressor fast: LightGBM's booster and Ridge's coefficients on the request's arrays give the
estimator's own numbers; a regression champion's ``POST /predict`` scores requests of at most 16 rows
on the event loop through that path, larger ones in threads, and reports unseen categories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.model.regression_data import log_regressor

from battleground.model.train import RegressionTrainer
from battleground.settings import Settings


def _hostile(X: pd.DataFrame) -> pd.DataFrame:
    """Unseen and missing categories, missing numbers, and a category column as pandas categories."""
    X = X.head(200).copy()
    X.loc[X.index[::7], "level"] = "platinum"
    X.loc[X.index[3::11], "level"] = None
    X.loc[X.index[5::13], "x2"] = np.nan
    X["region"] = X["region"].astype("category")
    return X


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
def test_fast_values_equal_the_estimator(reg_sets, kind: str) -> None:
    from battleground.model.serve import _column

    X, y, X_test, _ = reg_sets
    reg = RegressionTrainer(kind, params={"n_estimators": 30} if kind == "lightgbm" else None).fit(X, y)
    H = _hostile(X_test)
    reference = np.asarray(reg.estimator_.predict(reg._check(H)), dtype=np.float64)  # the estimator's own path
    assert reg._fast_values(H) is not None  # the fast path is taken
    np.testing.assert_allclose(reg.predict(H), reference, rtol=1e-13, atol=1e-12)
    for i in (0, 3, 7):  # one row (the serving case) gives the same numbers
        np.testing.assert_allclose(reg.predict(H.iloc[[i]]), reference[[i]], rtol=1e-13, atol=1e-12)
    schema = [(c, str(X[c].dtype)) for c in X.columns]
    records = json.loads(H.assign(region=H["region"].astype(str)).to_json(orient="records"))
    for rows in (records[:1], records[:16], records[:120]):
        columns = {c: _column([r.get(c) for r in rows], t) for c, t in schema}
        got = reg.predict_columns(columns)
        assert got is not None
        np.testing.assert_allclose(got, reg.predict(pd.DataFrame(columns)), rtol=1e-13, atol=1e-12)
    with pytest.raises(ValueError, match=r"lacks the columns \['level'\]"):
        reg.predict_columns({c: v for c, v in columns.items() if c != "level"})
    with pytest.raises(ValueError, match=r"lacks the columns \['x1'\]"):
        reg.predict(H.drop(columns=["x1"]))


def test_forest_has_no_fast_path_and_predicts_as_sklearn(reg_sets) -> None:
    X, y, X_test, _ = reg_sets
    reg = RegressionTrainer("random_forest", params={"n_estimators": 10}).fit(X, y)
    assert reg.predict_columns({c: X_test[c].to_numpy() for c in X_test.columns}) is None
    np.testing.assert_array_equal(reg.predict(X_test), reg.estimator_.predict(X_test))


def _champion(settings: Settings, model: RegressionTrainer, X: pd.DataFrame, y: pd.Series) -> str:
    from battleground.model.gate import champion_gate, register_candidate

    uri = log_regressor(settings, model, X, "regression-serving")
    version = register_candidate(settings, uri, "value", source="test")
    decision = champion_gate(settings, "value", version, X, y, metric="rmse", threshold=5.0, source="test",
                             n_boot=20)
    assert decision.promoted
    return version


def test_regression_champion_serves_small_requests_on_the_fast_path(tmp_path, reg_sets,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import starlette.concurrency
    from fastapi.testclient import TestClient

    from battleground.model.serve import INLINE_ROWS, create_app

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    X, y, X_test, y_test = reg_sets
    reg = RegressionTrainer("lightgbm", params={"n_estimators": 30}).fit(X, y)
    version = _champion(settings, reg, X_test, y_test)
    app = create_app(settings, "value", poll_seconds=0)
    model = app.state.holder.champion.model._model_impl.python_model.model
    fast: list[int] = []
    real_columns = type(model).predict_columns
    monkeypatch.setattr(type(model), "predict_columns",
                        lambda self, columns: fast.append(len(next(iter(columns.values())))) or real_columns(
                            self, columns))
    pooled: list[int] = []
    real_pool = starlette.concurrency.run_in_threadpool

    async def counting_pool(func, *args):  # type: ignore[no-untyped-def]
        pooled.append(len(args[0]))
        return await real_pool(func, *args)

    monkeypatch.setattr(starlette.concurrency, "run_in_threadpool", counting_pool)
    rows = X_test.head(INLINE_ROWS + 1).copy()
    rows.loc[rows.index[2], "level"] = "platinum"  # never seen in fit: reported, scored as missing
    records = json.loads(rows.to_json(orient="records"))
    expected = reg.predict(rows)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        one = http.post("/predict", json=records[0]).json()
        assert one["task"] == "regression" and one["version"] == version and "labels" not in one
        assert one["predictions"] == pytest.approx([expected[0]], rel=1e-12)
        small = http.post("/predict", json=records[:INLINE_ROWS]).json()
        np.testing.assert_allclose(small["predictions"], expected[:INLINE_ROWS], rtol=1e-12)
        assert small["unseen_categories"] == [{"row": 2, "column": "level", "value": "platinum"}]
        big = http.post("/predict/batch", json={"records": records}).json()
        np.testing.assert_allclose(big["predictions"], expected, rtol=1e-12)
        assert http.get("/model").json()["threshold"] is None
    assert fast == [1, INLINE_ROWS, INLINE_ROWS + 1]  # every request scored on the arrays, no DataFrame
    assert pooled == [INLINE_ROWS + 1]  # only the 17-row request left the event loop


def test_regression_champion_batch_predicts_in_parallel_chunks(tmp_path, reg_sets) -> None:
    """``batch_predict`` of a regression champion: ``prediction`` per row in the input's order, the same
    numbers in one process or two, in Parquet or CSV."""
    from battleground.model.batch import batch_predict
    from battleground.model.tracking import load_champion

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    X, y, X_test, y_test = reg_sets
    reg = RegressionTrainer("linear").fit(X, y)
    _champion(settings, reg, X_test, y_test)
    champ = load_champion(settings, "value")
    rows = X_test.assign(char_id=np.arange(len(X_test)) * 3)
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    res = batch_predict(champ, tmp_path / "rows.parquet", tmp_path / "out.parquet", chunk_rows=120, workers=2)
    assert (res.rows, res.chunks, res.workers) == (500, 5, 2)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["char_id", "prediction"] and out["char_id"].tolist() == rows["char_id"].tolist()
    np.testing.assert_allclose(out["prediction"].to_numpy(), reg.predict(X_test), rtol=1e-12)
    batch_predict(champ, tmp_path / "rows.parquet", tmp_path / "out.csv", chunk_rows=500, workers=1)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["prediction"].to_numpy(),
                               out["prediction"].to_numpy(), rtol=1e-12)
