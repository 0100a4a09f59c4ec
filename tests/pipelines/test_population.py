"""The population at a cut-off is what was knowable then, and batch predict and batch score share it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battleground.datasets import build_churn_features, make_churn_tables, tables_as_of


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return make_churn_tables(3000, seed=11)


@pytest.mark.parametrize("cut", ["2022-08-01", "2022-10-01", "2022-10-15"])
def test_population_is_what_was_known_at_the_cutoff(tables: dict[str, pd.DataFrame], cut: str) -> None:
    full = build_churn_features(tables, cut)
    past = build_churn_features(tables_as_of(tables, cut), cut, with_label=False)
    # the same characters, with the same features, whether the future is in the tables or not
    assert full["char_id"].tolist() == past["char_id"].tolist()
    pd.testing.assert_frame_equal(full.drop(columns=["churned"]), past)
    # characters whose churn run had started but was not yet three months long are in it (and churn)
    in_progress = full[(full["missed_months"] > 0) & (full["months_since_miss"] == 1)]
    assert len(in_progress) > 0
    assert in_progress["churned"].mean() > full["churned"].mean()


def test_known_churners_are_left_out(tables: dict[str, pd.DataFrame]) -> None:
    cut = pd.Timestamp("2022-10-01")
    full = build_churn_features(tables, cut)
    miss = tables["sub_miss"].merge(tables["subscriptions"][["sub_id", "char_id"]], on="sub_id")
    three = miss["end_date"] >= miss["start_date"] + pd.DateOffset(months=3) - pd.Timedelta(days=1)
    first_run = miss[three].groupby("char_id")["start_date"].min()
    known = set(first_run[first_run + pd.DateOffset(months=3) <= cut].index)
    running = set(first_run[(first_run < cut) & (first_run + pd.DateOffset(months=3) > cut)].index)
    ids = set(full["char_id"])
    assert known and running
    assert not (known & ids)
    assert running <= ids
    assert full.set_index("char_id").loc[sorted(running), "churned"].eq(1).all()


def test_batch_predict_and_batch_score_see_the_same_population(tables: dict[str, pd.DataFrame]) -> None:
    from battleground.pipelines import nodes

    params = {"predict_cutoff": "2022-10-01", "label": "churned", "horizon_months": 3}

    class Balances:  # a stand-in model
        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            p = 1 / (1 + np.exp(X["hard_trend_1m"].fillna(0).to_numpy() / 50))
            return np.c_[1 - p, p]

    predictions = nodes.predict_population(Balances(), tables, params)
    labels = build_churn_features(tables, params["predict_cutoff"])
    assert sorted(predictions["char_id"]) == sorted(labels["char_id"])
    report = nodes.batch_score(predictions, tables, params)
    values = {line.split()[0]: float(line.split()[1]) for line in report.splitlines()[2:]}
    assert values["n_scored"] == len(labels) and values["n_unscored"] == 0
