"""The order statistics of quantile metrics (``EventStore.quantile_sums``, ``storage/_quantile_sql.py``)
against numpy on the documented rules, on DuckDB and PostgreSQL (issue 17)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.storage.test_strata_sums import END, START, _per_user, strata_events

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.stats import quantile_bound_levels
from battleground.storage._compile import compile_sql
from battleground.storage._quantile_sql import n_star_grid, pick_n_star, quantile_sums_sql
from battleground.storage._sums_sql import MetricQuery

DEFS = [MetricQuery("mean", "purchase"), MetricQuery("ratio", "click", "impression"), MetricQuery("mean", "click")]
LEVELS = {0: 0.9, 2: 0.5}  # p90 of revenue per user, the median of clicks per user (heavy ties)


def _store(backend: str, settings: Settings, request: pytest.FixtureRequest, events: pd.DataFrame,
           variants: tuple[str, ...] = ("control", "treatment")) -> tuple[Any, int]:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    reg = Registry(s.registry_url)
    exp = reg.create_experiment("strata", metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase"}],
                                variants={v: 1 / len(variants) for v in variants},
                                start_at=START - dt.timedelta(days=30), end_at=END)
    reg.start(exp.id)
    store = open_event_store(s)
    ingest(store, events)
    return store, exp.id


def _numpy(x: np.ndarray, nu: float) -> tuple[float, float, float]:
    lo, hi = quantile_bound_levels(nu, pick_n_star(len(x)))
    q = np.quantile(x, [nu, lo, hi])
    return float(q[0]), float(q[1]), float(q[2])


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_quantile_sums_match_numpy(backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    events = strata_events(seed=9, users=400)
    store, exp_id = _store(backend, settings, request, events)
    found = store.quantile_sums(exp_id, DEFS, LEVELS, START, END, variants=("control", "treatment", "empty"))
    assert sorted(found) == [0, 2]
    u = _per_user(events)
    for j, col in ((0, "rev"), (2, "clk")):
        arms = found[j]
        assert [a.variant for a in arms] == ["control", "treatment", "empty"]
        assert arms[2].users == 0 and math.isnan(arms[2].quantile)
        for a in arms[:2]:
            x = u.loc[u["variant"] == a.variant, col].to_numpy()
            assert a.users == len(x) and a.n_star == pick_n_star(len(x)) < len(x) and a.nu == LEVELS[j]
            assert (a.quantile, a.lower, a.upper) == pytest.approx(_numpy(x, LEVELS[j]), rel=1e-12, abs=1e-12)
    # told the arms' n (as Monitor is, by the metric-sums scan), the bounds are at exactly n* = n
    exact = store.quantile_sums(exp_id, DEFS, LEVELS, START, END, variants=("control", "treatment"),
                                users=[a.users for a in found[0][:2]])
    for j, col in ((0, "rev"), (2, "clk")):
        for a in exact[j]:
            x = u.loc[u["variant"] == a.variant, col].to_numpy()
            lo, hi = quantile_bound_levels(LEVELS[j], len(x))
            assert a.n_star == len(x) and (a.lower, a.upper) == pytest.approx(tuple(np.quantile(x, [lo, hi])), rel=1e-12)
    purchases = events[events["event_type"] == "purchase"].merge(u[["t0"]], left_on="user_id", right_index=True)
    assert sum(a.events for a in found[0]) == int((purchases["timestamp"] >= purchases["t0"]).sum())


def test_one_user_arms_and_all_zero_values(settings: Settings, request: pytest.FixtureRequest) -> None:
    t0 = START + dt.timedelta(days=2)
    rows = [{"event_id": f"e{i}", "experiment": "strata", "variant": v, "user_id": u, "event_type": "exposure",
             "timestamp": t0, "value": None, "covariate": None}
            for i, (u, v) in enumerate((("a", "control"), ("b", "treatment"), ("c", "blue"), ("d", "blue")))]
    rows.append({"event_id": "p1", "experiment": "strata", "variant": "control", "user_id": "a",
                 "event_type": "purchase", "timestamp": t0 + dt.timedelta(hours=1), "value": 5.0, "covariate": None})
    frame = pd.DataFrame(rows)
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    store, exp_id = _store("duckdb", settings, request, frame, ("control", "treatment", "blue"))
    found = store.quantile_sums(exp_id, DEFS, {0: 0.9}, START, END, variants=("control", "treatment", "blue"))[0]
    one, zero, two_zero = found
    assert (one.users, one.quantile, one.lower, one.upper) == (1, 5.0, 5.0, 5.0)
    assert (zero.users, zero.quantile, zero.lower, zero.upper) == (1, 0.0, 0.0, 0.0)
    assert (two_zero.users, two_zero.quantile, two_zero.lower, two_zero.upper) == (2, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "snowflake", "bigquery"])
def test_the_text_compiles_for_engines_with_continuous_percentiles(dialect: str) -> None:
    from battleground.storage.events import _params

    params = None if dialect in ("duckdb", "postgres") else _params(1, DEFS, START, END)
    sql = compile_sql(quantile_sums_sql(DEFS, LEVELS), dialect, params).upper()
    assert ("PERCENTILE_CONT" in sql) is (dialect != "duckdb") and sql.count("CONT(") == 2


def test_the_n_star_grid_and_its_choice() -> None:
    grid = n_star_grid()
    assert grid[0] == 100 and grid[-1] > 5e7 and all(b / a == pytest.approx(1.25, abs=0.01) for a, b in itertools.pairwise(grid))
    assert [pick_n_star(n) for n in (1, 100, 101, 126, 10**6)] == [100, 100, 100, 125, 940395]


def test_bad_levels_and_indices_are_refused() -> None:
    with pytest.raises(ValueError, match=r"quantile must be a level in \(0, 1\).*got 90"):
        quantile_sums_sql(DEFS, {0: 90})
    with pytest.raises(ValueError, match="outside the 3 metrics"):
        quantile_sums_sql(DEFS, {5: 0.9})
    with pytest.raises(ValueError, match="at least one quantile metric"):
        quantile_sums_sql(DEFS, {})
