"""Per-arm sums for CUPED++ (``EventStore.covariate_sums``, ``storage/_covariate_sql.py``): every
metric's pre-period value and declared numeric attributes, from the metric-sums scan, against pandas on
the documented rules (DuckDB and PostgreSQL, issue 17)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.storage.test_strata_sums import END, START, _per_user, strata_events

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._covariate_sql import covariate_names
from battleground.storage._sums_sql import MetricQuery


def covariate_events(seed: int = 5, users: int = 300) -> pd.DataFrame:
    """:func:`strata_events` plus pre-period purchases (inside the 14-day lookback, some outside it) whose
    size tracks the user's later revenue."""
    events = strata_events(seed=seed, users=users)
    rng = np.random.default_rng(seed + 1)
    t0 = events[events["event_type"] == "exposure"].groupby("user_id")["timestamp"].min()
    rev = events[events["event_type"] == "purchase"].assign(v=lambda f: f["value"].astype(float)) \
        .groupby("user_id")["v"].sum()
    variant = events[events["event_type"] == "exposure"].groupby("user_id")["variant"].min()
    rows: list[dict[str, Any]] = []
    for u, when in t0.items():
        for k, back in enumerate((3.0, 10.0, 20.0)):  # the last is before the lookback: it must not count
            if rng.random() < 0.6:
                rows.append({"event_id": f"pre-{u}-{k}", "experiment": "strata", "variant": variant[u], "user_id": u,
                             "event_type": "purchase", "timestamp": when - dt.timedelta(days=back, hours=1),
                             "value": float(np.round(0.3 * rev.get(u, 0.0) + rng.normal(5, 2), 2)),
                             "covariate": None})
    out = pd.concat([events, pd.DataFrame(rows)], ignore_index=True)
    out["value"] = out["value"].astype(object).where(out["value"].notna(), None)
    return out


def per_user_covariates(events: pd.DataFrame) -> pd.DataFrame:
    """Per user: rev, clk, buyer (post), their pre-period values over [t0 − 14 d, t0), country and platform."""
    u = _per_user(events)
    e = events.join(u["t0"], on="user_id")
    e["v"] = pd.to_numeric(e["value"], errors="coerce")
    pre = (e["timestamp"] >= e["t0"] - dt.timedelta(days=14)) & (e["timestamp"] < e["t0"])
    sel = e[(e["event_type"] == "purchase") & pre]
    u["rev_pre"] = sel.assign(v=sel["v"].fillna(1.0)).groupby("user_id")["v"].sum()
    u["buyer_pre"] = (sel.groupby("user_id").size() > 0).astype(float)
    post = e[(e["event_type"] == "purchase") & (e["timestamp"] >= e["t0"])]
    u["buyer"] = (post.groupby("user_id").size() > 0).astype(float)
    return u.fillna({"rev_pre": 0.0, "buyer_pre": 0.0, "buyer": 0.0})


DEFS = [MetricQuery("mean", "purchase"), MetricQuery("ratio", "click", "impression"),
        MetricQuery("proportion", "purchase")]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_covariate_sums_match_pandas(backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    reg = Registry(s.registry_url)
    exp = reg.create_experiment("strata", metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase"}],
                                start_at=START - dt.timedelta(days=30), end_at=END)
    reg.start(exp.id)
    store = open_event_store(s)
    events = covariate_events()
    ingest(store, events)
    arms = store.covariate_sums(exp.id, DEFS, ["country", "platform"], START, END,
                                variants=("control", "treatment", "empty"))
    assert [a.variant for a in arms] == ["control", "treatment", "empty"] and arms[2].users == 0
    names = covariate_names(3, ["country", "platform"])
    assert arms[0].covariates == names == ("c0", "c1", "c2", "country", "country?", "platform", "platform?")
    u = per_user_covariates(events)
    z = pd.DataFrame({"c0": u["rev_pre"], "c1": 0.0, "c2": u["buyer_pre"],
                      "country": u["country"].fillna(0.0), "country?": u["country"].isna().astype(float),
                      "platform": u["platform"].fillna(0.0), "platform?": u["platform"].isna().astype(float)})
    y = u[["rev", "clk", "buyer"]]
    for arm in arms[:2]:
        mask = u["variant"] == arm.variant
        n = int(mask.sum())
        assert arm.users == n
        data = np.column_stack([y[mask].to_numpy(), z[mask].to_numpy()])
        sums = np.array([*arm.sum_y, *arm.sum_z])
        shifts = np.array([*arm.shift_y, *arm.shift_z])
        prod = np.zeros((10, 10))
        prod[:3, :3] = np.diag(arm.sum_y2)  # only the diagonal of y × y is summed
        prod[:3, 3:] = arm.sum_yz
        prod[3:, :3] = np.asarray(arm.sum_yz).T
        prod[3:, 3:] = arm.sum_zz
        means = shifts + sums / n
        cov = (prod - np.outer(sums, sums) / n) / (n - 1)
        want = np.cov(data, rowvar=False, ddof=1)
        assert means == pytest.approx(data.mean(axis=0), rel=1e-9, abs=1e-12)
        assert np.diag(cov) == pytest.approx(np.diag(want), rel=1e-9, abs=1e-12)
        assert cov[:3, 3:] == pytest.approx(want[:3, 3:], rel=1e-9, abs=1e-12)
        assert cov[3:, 3:] == pytest.approx(want[3:, 3:], rel=1e-9, abs=1e-12)
    # the outcome sums are the plain sums' (the same per-user step)
    plain = store.experiment_sums(exp.id, DEFS, START, END, variants=("control", "treatment"))
    for j in range(3):
        for arm, ms in zip(arms[:2], plain.metrics[j], strict=True):
            assert arm.shift_y[j] + arm.sum_y[j] / arm.users == pytest.approx(ms.mean, rel=1e-12)


def test_covariate_sums_refuse_bad_attributes(settings: Settings) -> None:
    store = open_event_store(settings)
    for bad in (["country", "country"], ["exposure"], [f"a{i}" for i in range(9)]):
        with pytest.raises(ValueError, match="distinct event types other than 'exposure'"):
            store.covariate_sums(1, DEFS, bad)
