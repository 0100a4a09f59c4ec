"""battleground.model.data: the seed 000 example, transformers, YAML pipelines, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from battleground.model.data import (
    CreateDataSet,
    FeatureSelection,
    Preprocess,
    build_preprocessing,
    read_splits,
    split_data,
    write_splits,
)


def test_seed_000_example_runs(churn_sets) -> None:
    from battleground.model.eval import EvalClassifierModel
    from battleground.model.train import Trainer

    X_train, y_train, X_test, y_test = churn_sets
    fs = FeatureSelection(method="lightgbm", k=12)
    X_train_selected = fs.fit_transform(X_train, y_train)
    X_test_selected = fs.transform(X_test)
    assert X_train_selected.shape[1] == 12 and list(X_test_selected.columns) == fs.selected_features_
    preprocess = Preprocess(numerical_features=[], categorical_features=[], imputation_methods=[])
    X_train_p = preprocess.fit_transform(X_train, y_train)
    X_test_p = preprocess.transform(X_test)
    assert list(X_train_p.columns) == list(X_test_p.columns)
    assert not X_train_p.isna().any().any()
    assert abs(X_train_p["price"].mean()) < 1e-9
    categorical_features = [c for c in ("class", "sub_type") if c in X_train_selected]
    trainer = Trainer(model="lightgbm")
    trainer.fit(X_train_selected, y_train, categorical_features=categorical_features)
    pred = trainer.predict_proba(X_test_selected)
    report = EvalClassifierModel().calculate(pred, y_test)
    assert 0.7 < report.roc_auc < 0.95


def test_create_dataset_feature_list_and_errors() -> None:
    ds = CreateDataSet(feature_list=["price", "class"], train_dt=["2022-08-01"], infer_dt=["2022-11-01"],
                       n_characters=300)
    X, y = ds.load_train_set()
    assert list(X.columns) == ["price", "class"] and len(X) == len(y)
    with pytest.raises(ValueError, match=r"unknown columns \['prise'\].*did you mean 'price'"):
        CreateDataSet(feature_list=["prise"], n_characters=300).load_train_set()


def test_transformers_are_clonable_and_pipeline_ready(churn_sets) -> None:
    X_train, y_train, X_test, _ = churn_sets
    pipe = Pipeline([("prep", Preprocess(encoding="ordinal")), ("fs", FeatureSelection(method="f_classif", k=5))])
    out = clone(pipe).fit(X_train, y_train).transform(X_test)
    assert out.shape == (len(X_test), 5)
    p = Preprocess(imputation_methods={"days_since_mastery": "zero"}, scale=False)
    assert clone(p).get_params()["imputation_methods"] == {"days_since_mastery": "zero"}
    t = p.fit_transform(X_train)
    assert (t.loc[X_train["days_since_mastery"].isna(), "days_since_mastery"] == 0).all()
    for method in ("variance", "mutual_info"):
        kept = FeatureSelection(method=method, k=6).fit(X_train, y_train).selected_features_
        assert len(kept) == 6
    with pytest.raises(ValueError, match=r"method='lgbm' is unknown.*valid methods"):
        FeatureSelection(method="lgbm").fit(X_train, y_train)
    with pytest.raises(ValueError, match=r"imputation method 'meen'.*did you mean 'mean'"):
        Preprocess(imputation_methods=["meen"]).fit(X_train)


def test_build_preprocessing_from_yaml_uses_an_allow_list(churn_sets) -> None:
    X_train, y_train, _, _ = churn_sets
    pipe = build_preprocessing("""
- class: battleground.model.data.Preprocess
  params: {encoding: ordinal}
- class: sklearn.feature_selection.VarianceThreshold
  params: {threshold: 0.5}
""")
    out = pipe.fit_transform(X_train, y_train)
    assert isinstance(out, pd.DataFrame) and 0 < out.shape[1] < X_train.shape[1]
    with pytest.raises(ValueError, match=r"'os.system' is not allowed"):
        build_preprocessing([{"class": "os.system", "params": {}}])
    with pytest.raises(ValueError, match=r"unknown keys \['parms'\]"):
        build_preprocessing([{"class": "sklearn.impute.SimpleImputer", "parms": {}}])


def test_split_stratified_and_time(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=1000), "t": np.arange(1000)[::-1],
                          "churned": (rng.random(1000) < 0.2).astype(int)})
    parts = split_data(frame, fractions={"train": 0.6, "valid": 0.2, "calib": 0.1, "test": 0.1}, seed=1)
    assert [len(parts[p]) for p in ("train", "valid", "calib", "test")] == [600, 200, 100, 100]
    rates = [parts[p]["churned"].mean() for p in parts]
    assert max(rates) - min(rates) < 0.02
    timed = split_data(frame, method="time", time_column="t")
    assert timed["train"]["t"].max() < timed["valid"]["t"].min() < timed["test"]["t"].min()
    write_splits(timed, tmp_path)
    assert read_splits(tmp_path)["test"]["t"].tolist() == timed["test"]["t"].tolist()
    with pytest.raises(ValueError, match="single class"):
        split_data(frame.assign(churned=0))
    with pytest.raises(ValueError, match="unknown part 'validation'"):
        split_data(frame, fractions={"train": 0.5, "validation": 0.5})


def test_preprocess_vectorised_transform_matches_per_column_reference(churn_sets) -> None:
    X_train, _, X_test, _ = churn_sets
    X = X_test.head(300).copy()
    X.loc[X.index[:4], "class"] = "Z"  # unseen category: all one-hot columns 0
    X.loc[X.index[4:8], "sub_type"] = None
    X.loc[X.index[:3], "price"] = np.nan
    for kw in ({}, {"encoding": "ordinal", "scale": False}):
        p = Preprocess(**kw).fit(X_train)
        out = p.transform(X)
        for c in p.numerical_features_:
            v = pd.to_numeric(X[c], errors="coerce").astype(float).fillna(p.fill_values_[c])
            ref = (v - p.means_[c]) / p.scales_[c] if p.scale else v
            np.testing.assert_allclose(out[c].to_numpy(), ref.to_numpy(), rtol=0, atol=1e-12)
        for c in p.categorical_features_:
            text = X[c].map(lambda v: None if pd.isna(v) else str(v))
            if p.encoding == "ordinal":
                lookup = {v: i for i, v in enumerate(p.categories_[c])}
                assert out[c].tolist() == [float(lookup.get(v, -1)) for v in text]
            else:
                for cat in p.categories_[c]:
                    assert out[f"{c}={cat}"].tolist() == (text == cat).astype(float).tolist()
        assert list(out.columns) == list(p.get_feature_names_out()) and (out.index == X.index).all()
    assert out.loc[X.index[0], "class"] == -1.0
    with pytest.raises(ValueError, match="always returns pandas"):
        Preprocess().set_output(transform="polars")


def test_split_from_config_keeps_each_character_in_one_part(tmp_path) -> None:
    """Several cut-offs give one row per character per cut-off; none may sit in train and test."""
    from battleground.model.tracking import ConfigError, TrainingConfig, split_from_config

    raw = {"train": {"seed": 3}, "data": {"synthetic": {"n_characters": 600, "seed": 3},
                                          "splits_dir": str(tmp_path / "s")}}
    paths = split_from_config(raw)
    parts = {k: pd.read_parquet(v) for k, v in paths.items()}
    ids = {k: set(f["char_id"]) for k, f in parts.items()}
    assert len(parts["train"]) > 0 and parts["train"]["char_id"].duplicated().any()  # repeated across cut-offs
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["valid"] and not ids["valid"] & ids["test"]
    assert abs(parts["test"]["churned"].mean() - parts["train"]["churned"].mean()) < 0.1
    cfg = TrainingConfig.from_mapping({"data": {"id_columns": ["char_id"], "drop_columns": ["cutoff", "price"]}})
    assert cfg.non_features == ("char_id", "cutoff", "price")
    with pytest.raises(ConfigError, match=r"data.id_columns=5 must be a list"):
        TrainingConfig.from_mapping({"data": {"id_columns": 5}})
