"""Batch scoring's fast path: the compiled tree walk gives LightGBM's numbers bit for bit (every missing
type, categories unseen or out of range, calibrated or not, early stopped); every other model, or no
numba, falls back to the generic path with the same numbers; chunks and in-flight chunks stay bounded."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battleground.model import _trees
from battleground.model.batch import _Scorer, batch_predict, cores
from battleground.model.serve import score_frame
from battleground.model.train import Trainer


def _hostile(X: pd.DataFrame, n: int = 600) -> pd.DataFrame:
    """Unseen categories, missing values of every kind, zeros and values within 1e-35 of zero."""
    rng = np.random.default_rng(3)
    X = X.iloc[rng.integers(0, len(X), n)].reset_index(drop=True)
    X["class"] = X["class"].astype(object)
    X.loc[X.index[::7], "class"] = "Pandaren-monk"
    X.loc[X.index[3::11], "class"] = None
    X.loc[X.index[5::13], "race"] = np.nan
    X.loc[X.index[::17], "days_since_mastery"] = np.nan
    X.loc[X.index[1::19], "death_ratio"] = 1e-40
    X.loc[X.index[2::23], "death_ratio"] = -0.0
    X.loc[X.index[4::29], "price"] = np.nan
    return X


def _boosters(tr: Trainer) -> list:
    est = tr.estimator_
    cal = getattr(est, "calibrated_classifiers_", None)
    return [cc.estimator.booster_ for cc in cal] if cal is not None else [est.booster_]


@pytest.mark.parametrize("params", [
    {"n_estimators": 30},
    {"n_estimators": 30, "zero_as_missing": True},  # missing type Zero
    {"n_estimators": 30, "use_missing": False},  # missing type None: NaN reads as 0
    {"n_estimators": 20, "max_cat_to_onehot": 64},  # one-hot categorical splits
])
def test_compiled_walk_equals_the_booster_bit_for_bit(churn_sets, params) -> None:
    X_train, y_train, X_test, _ = churn_sets
    tr = Trainer("lightgbm", params=params).fit(X_train, y_train)
    mat = tr._lgb_matrix(_hostile(X_test))
    mat[::31, list(tr.feature_names_in_).index("class")] = 250.0  # a code beyond every category bitset
    mat[1::37, list(tr.feature_names_in_).index("race")] = -0.5  # truncates to code 0, as in LightGBM's C++
    booster = tr.estimator_.booster_
    walk = _trees.compile_booster(booster)
    assert walk is not None
    kinds = walk.arrays[4]
    assert kinds.any() and not kinds.all()  # both numerical and categorical nodes are walked
    for raw in (True, False):
        np.testing.assert_array_equal(walk.predict(mat, raw), booster.predict(mat, raw_score=raw))


def test_an_early_stopped_booster_walks_only_its_best_rounds(churn_sets) -> None:
    X_train, y_train, X_test, _ = churn_sets
    tr = Trainer("lightgbm", params={"n_estimators": 30}).fit(X_train, y_train)
    booster = copy.deepcopy(tr.estimator_.booster_)
    booster.best_iteration = 12  # what early stopping records: predict then uses the first 12 rounds
    mat = tr._lgb_matrix(_hostile(X_test))
    walk = _trees.compile_booster(booster)
    assert walk is not None and len(walk.arrays[-1]) == 12
    np.testing.assert_array_equal(walk.predict(mat, True), booster.predict(mat, raw_score=True))
    assert not np.array_equal(walk.predict(mat, True), tr.estimator_.booster_.predict(mat, raw_score=True))


@pytest.mark.parametrize(("model", "calibration", "fast"), [
    ("lightgbm", None, True), ("lightgbm", "sigmoid", True), ("lightgbm", "isotonic", True),
    ("xgboost", None, False), ("xgboost", "sigmoid", False), ("logistic", None, False),
])
def test_scorer_equals_the_generic_predict_proba(churn_sets, model, calibration, fast) -> None:
    X_train, y_train, X_test, _ = churn_sets
    tr = Trainer(model, params={"n_estimators": 25} if model != "logistic" else None,
                 calibration=calibration).fit(X_train, y_train)
    X = _hostile(X_test)
    scorer = _Scorer(tr)
    assert bool(scorer.compiled) is fast
    assert len(scorer.compiled) == ((3 if calibration else 1) if fast else 0)
    generic = np.asarray(tr.estimator_.predict_proba(tr._check(X)))[:, 1]  # the fitted estimator, unassisted
    np.testing.assert_array_equal(scorer.score(X), generic)
    np.testing.assert_array_equal(scorer.score(X), score_frame(tr, X))


def test_without_numba_or_for_an_uncovered_booster_the_booster_predicts(churn_sets, monkeypatch) -> None:
    X_train, y_train, X_test, _ = churn_sets
    X = _hostile(X_test)
    tr = Trainer("lightgbm", params={"n_estimators": 20}, calibration="sigmoid").fit(X_train, y_train)
    expected = score_frame(tr, X)
    monkeypatch.setattr(_trees, "_KERNELS", {"walk": None, "sigmoid": None})  # as when numba is not installed
    assert _trees.compile_booster(_boosters(tr)[0]) is None
    scorer = _Scorer(tr)
    assert scorer.compiled == []
    np.testing.assert_array_equal(scorer.score(X), expected)
    monkeypatch.undo()
    linear = Trainer("lightgbm", params={"n_estimators": 10, "linear_tree": True}).fit(
        X_train.fillna(0), y_train)
    assert _trees.compile_booster(linear.estimator_.booster_) is None  # linear leaves: not walked
    assert _Scorer(linear).compiled == []
    np.testing.assert_array_equal(_Scorer(linear).score(X), score_frame(linear, X))
    import lightgbm as lgb

    multi = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(
        X_train.select_dtypes("number").fillna(0), np.arange(len(X_train)) % 3)
    assert _trees.compile_booster(multi.booster_) is None  # three trees per round


def test_worker_threads_are_capped_to_their_share(churn_sets) -> None:
    X_train, y_train, _, _ = churn_sets
    tr = Trainer("lightgbm", params={"n_estimators": 5}, calibration="sigmoid", n_jobs=-1).fit(X_train, y_train)
    scorer = _Scorer(copy.deepcopy(tr))
    scorer.limit_threads(1)
    members = [cc.estimator for cc in scorer.model.estimator_.calibrated_classifiers_]
    assert [m.n_jobs for m in members] == [1, 1, 1]
    assert [cc.estimator.n_jobs for cc in tr.estimator_.calibrated_classifiers_] == [-1, -1, -1]  # original kept


@pytest.fixture(scope="module")
def champion_rows(churn_sets, tmp_path_factory: pytest.TempPathFactory):
    from tests.model.test_gate import log_model

    from battleground.model.gate import champion_gate, register_candidate
    from battleground.model.tracking import load_champion
    from battleground.settings import Settings

    X_train, y_train, X_test, y_test = churn_sets
    home = tmp_path_factory.mktemp("fast_batch")
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home / ".battleground")})
    model = Trainer("lightgbm", params={"n_estimators": 20}, calibration="sigmoid").fit(X_train, y_train)
    version = register_candidate(settings, log_model(settings, model, X_test), "churn", source="test")
    champion_gate(settings, "churn", version, X_test, y_test, metric="roc_auc", threshold=0.0, source="test",
                  n_boot=10)
    frame = _hostile(X_test, 3000)
    frame.insert(0, "char_id", np.arange(3000))
    path = home / "rows.parquet"
    frame.to_parquet(path, index=False)
    return load_champion(settings), model, frame, path


def test_chunks_and_chunks_in_flight_are_bounded(champion_rows, tmp_path: Path, monkeypatch) -> None:
    import battleground.model.batch as batch

    champ, model, frame, path = champion_rows
    monkeypatch.setattr(batch, "COMPILED_MIN_ROWS", 1000)
    seen: list[int] = []
    compiled: list[bool] = []
    real = _Scorer.score

    def counting(self, chunk):
        seen.append(len(chunk))
        compiled.append(bool(self.compiled))
        return real(self, chunk)

    monkeypatch.setattr(_Scorer, "score", counting)
    res = batch_predict(champ, path, tmp_path / "one.parquet", chunk_rows=700, workers=1)
    assert seen == [700, 700, 700, 700, 200]  # one chunk at a time, never more than chunk_rows rows
    assert (res.chunks, res.peak_in_flight) == (5, 1)
    assert compiled == [True] * 5  # 3000 rows >= COMPILED_MIN_ROWS: the compiled walk scores them
    monkeypatch.setattr(_Scorer, "score", real)
    res2 = batch_predict(champ, path, tmp_path / "two.parquet", chunk_rows=250, workers=2)
    assert (res2.chunks, res2.workers) == (12, 2)
    assert res2.peak_in_flight == 4  # 2 chunks per worker submitted before the oldest is written
    auto = batch_predict(champ, path, tmp_path / "auto.parquet", chunk_rows=1000)
    assert auto.workers == min(cores(), math.ceil(3000 / 1000))
    monkeypatch.setattr(batch, "COMPILED_MIN_ROWS", 10_000)  # a small input: LightGBM's own walk
    small = batch_predict(champ, path, tmp_path / "small.parquet", chunk_rows=3000, workers=1)
    assert small.chunks == 1
    expected = score_frame(model, frame.drop(columns=["char_id"]))
    for name in ("one", "two", "auto", "small"):
        got = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert got["char_id"].tolist() == list(range(3000))
        np.testing.assert_array_equal(got["churn_probability"].to_numpy(), expected)
