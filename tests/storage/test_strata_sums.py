"""Per-stratum sums for post-stratification (``EventStore.strata_sums``), from the store's one scan,
against pandas on the documented rules (DuckDB and PostgreSQL, issue 17)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._sums_sql import MetricQuery, metric_sums_many_sql

START = dt.datetime(2022, 5, 1)
END = dt.datetime(2022, 5, 15)


def strata_events(seed: int = 3, users: int = 200, experiment: str = "strata") -> pd.DataFrame:
    """Exposed users with a country code (0, 1, 2) logged at exposure (most), only after it (some: it
    must not count) or never, and a platform code; purchases whose size depends on the country, and
    clicks/impressions."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def add(u: int, variant: str, kind: str, when: dt.datetime, value: float | None = None) -> None:
        rows.append({"event_id": f"s-{len(rows)}", "experiment": experiment, "variant": variant, "user_id": f"u{u}",
                     "event_type": kind, "timestamp": when, "value": value, "covariate": None})

    for u in range(users):
        variant = ("control", "treatment")[u % 2]
        t0 = START + dt.timedelta(days=int(rng.integers(2, 7)), hours=int(rng.integers(0, 24)))
        country = int(rng.integers(0, 3))
        add(u, variant, "exposure", t0)
        r = rng.random()
        if r < 0.8:
            add(u, variant, "country", t0, float(country))
            if rng.random() < 0.2:  # a second, larger code: the smallest counts
                add(u, variant, "country", t0 - dt.timedelta(hours=1), float(country + 5))
        elif r < 0.9:
            add(u, variant, "country", t0 + dt.timedelta(hours=2), float(country))  # too late: no stratum
        add(u, variant, "platform", t0 - dt.timedelta(days=1), float(u % 2 == 0 and rng.random() < 0.5))
        for _ in range(int(rng.poisson(0.5 + 2 * country))):  # the country predicts revenue
            add(u, variant, "purchase", t0 + dt.timedelta(hours=float(rng.uniform(0.1, 50))),
                float(np.round(10 * (1 + country) + rng.normal(0, 3), 2)))
        for _ in range(int(rng.poisson(3)) + 1):
            when = t0 + dt.timedelta(hours=float(rng.uniform(0.1, 50)))
            add(u, variant, "impression", when)
            if rng.random() < 0.2 + 0.1 * country:
                add(u, variant, "click", when + dt.timedelta(seconds=2))
    frame = pd.DataFrame(rows)
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    return frame


def _per_user(events: pd.DataFrame) -> pd.DataFrame:
    e = events.copy()
    e["v"] = pd.to_numeric(e["value"], errors="coerce")
    first = e[e["event_type"] == "exposure"].groupby("user_id").agg(t0=("timestamp", "min"), variant=("variant", "min"))
    e = e.join(first["t0"], on="user_id")
    after = e["timestamp"] >= e["t0"]
    out = first.copy()
    for name, et in (("rev", "purchase"), ("clk", "click"), ("imp", "impression")):
        sel = e[(e["event_type"] == et) & after]
        out[name] = sel.assign(v=sel["v"].fillna(1.0)).groupby("user_id")["v"].sum()
    for name in ("country", "platform"):
        sel = e[(e["event_type"] == name) & (e["timestamp"] <= e["t0"])]
        out[name] = sel.groupby("user_id")["v"].min()
    return out.fillna({"rev": 0.0, "clk": 0.0, "imp": 0.0})


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_strata_sums_match_pandas_and_add_up(backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    reg = Registry(s.registry_url)
    exp = reg.create_experiment("strata", metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase"}],
                                start_at=START, end_at=END)
    reg.start(exp.id)
    store = open_event_store(s)
    events = strata_events()
    ingest(store, events)
    defs = [MetricQuery("mean", "purchase"), MetricQuery("ratio", "click", "impression"),
            MetricQuery("mean", "purchase", cap_quantile=0.9)]
    variants = ("control", "treatment")
    strata = store.strata_sums(exp.id, defs, ["country"], variants=variants)
    u = _per_user(events)
    want_keys = sorted({(None if np.isnan(c) else float(c),) for c in u["country"]},
                       key=lambda k: (k[0] is None, k[0] or 0.0))
    assert [k for k, _ in strata] == want_keys == [(0.0,), (1.0,), (2.0,), (None,)]  # the smallest code counts
    whole = store.experiment_sums(exp.id, defs, variants=variants)
    for (key,), sums in strata:
        g = u[u["country"].isna()] if key is None else u[u["country"] == key]
        for arm in sums.metrics[0]:
            a = g[g["variant"] == arm.variant]
            assert arm.users == len(a)
            assert arm.unshifted().sum_x == pytest.approx(a["rev"].sum(), rel=1e-12, abs=1e-9)
            if len(a) > 1:
                assert arm.var == pytest.approx(a["rev"].var(ddof=1), rel=1e-9)
        for arm in sums.metrics[1]:
            a = g[g["variant"] == arm.variant]
            assert arm.unshifted().sum_xy == pytest.approx((a["clk"] * a["imp"]).sum(), rel=1e-12, abs=1e-9)
    for j in range(len(defs)):  # the strata add up to the unstratified sums (same shifts), caps included
        for i, arm in enumerate(whole.metrics[j]):
            parts = [sums.metrics[j][i] for _, sums in strata]
            assert sum(p.users for p in parts) == arm.users
            for f in ("sum_x", "sum_x2", "sum_y", "sum_xy", "sum_c", "sum_xc"):
                assert sum(getattr(p, f) for p in parts) == pytest.approx(getattr(arm, f), rel=1e-9, abs=1e-7), f
            assert all(p.shift == pytest.approx(arm.shift, rel=1e-12) for p in parts if p.users)  # one shift per metric
    assert sum(x.exposed_users for _, x in strata) == whole.exposed_users
    two = store.strata_sums(exp.id, defs[:1], ["country", "platform"], variants=variants)
    assert sum(x.metrics[0][0].users + x.metrics[0][1].users for _, x in two) == len(u)
    assert {k for k, _ in two} == {(None if np.isnan(c) else c, None if np.isnan(p) else p)
                                   for c, p in zip(u["country"], u["platform"], strict=True)}


def test_strata_sums_refuse_bad_attributes(settings: Settings) -> None:
    store = open_event_store(settings)
    with pytest.raises(ValueError, match="distinct event types"):
        store.strata_sums(1, [MetricQuery("mean", "purchase")], [])
    with pytest.raises(ValueError, match="distinct event types"):
        store.strata_sums(1, [MetricQuery("mean", "purchase")], ["country", "country"])
    with pytest.raises(ValueError, match=r"strata must be a number of attributes in \[0, 8\]"):
        metric_sums_many_sql([MetricQuery("mean", "purchase")], strata=9)
