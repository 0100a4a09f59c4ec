"""The sums of many experiments from one scan grouped by experiment (``EventStore.experiment_sums_batch``,
the experiment list's cold start, issue 13) equal each experiment's own query, on DuckDB and PostgreSQL.

Float sums are compared to a few ulps: the per-experiment query itself is not bit-stable from one run to
the next (the engines sum in parallel, in no fixed order); counts are compared exactly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._sums_sql import MetricQuery, metric_sums_many_sql
from battleground.storage.sums import ExperimentSums

START = dt.datetime(2023, 3, 1)
# one metric set: a windowed proportion, a mean with a CUPED lookback, a ratio (with a lookback)
SET_A = [
    {"name": "converted", "kind": "proportion", "numerator": "purchase", "conversion_window_days": 1.0},
    {"name": "revenue", "kind": "mean", "numerator": "purchase", "cuped_lookback_days": 7.0, "primary": True},
    {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"},
]
# another: a windowed mean without lookback and a proportion on another event
SET_C = [
    {"name": "spend", "kind": "mean", "numerator": "purchase", "conversion_window_days": 2.0,
     "cuped_lookback_days": None, "primary": True},
    {"name": "clicked", "kind": "proportion", "numerator": "click"},
]


def _events(name: str, variants: list[str], seed: int, users: int = 90) -> pd.DataFrame:
    """Users exposed from day 0 to 5, some to two variants; purchases before the exposure (lookback),
    inside and after the 1-day window; clicks and impressions."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def add(u: int, variant: str, kind: str, when: dt.datetime, value: float | None = None) -> None:
        rows.append({"event_id": f"{name}-{len(rows)}", "experiment": name, "variant": variant,
                     "user_id": f"u{u}", "event_type": kind, "timestamp": when, "value": value})

    for u in range(users):
        variant = variants[u % len(variants)]
        t0 = START + dt.timedelta(days=int(rng.integers(0, 5)), hours=int(rng.integers(0, 24)))
        add(u, variant, "exposure", t0)
        if u % 11 == 0:  # a second variant later: a multiple exposure
            add(u, variants[(u + 1) % len(variants)], "exposure", t0 + dt.timedelta(hours=3))
        if rng.random() < 0.3:
            add(u, variant, "purchase", t0 - dt.timedelta(days=2), float(np.round(rng.gamma(2, 5), 2)))
        for _ in range(int(rng.poisson(1.2 + 0.3 * variants.index(variant)))):
            add(u, variant, "purchase", t0 + dt.timedelta(hours=float(rng.uniform(0.1, 60))),
                float(np.round(rng.gamma(2, 8), 2)))
        for _ in range(int(rng.poisson(2)) + 1):
            when = t0 + dt.timedelta(hours=float(rng.uniform(0.1, 30)))
            add(u, variant, "impression", when)
            if rng.random() < 0.3:
                add(u, variant, "click", when + dt.timedelta(seconds=3))
    frame = pd.DataFrame(rows)
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    return frame


def _home(s: Settings) -> tuple[Any, dict[str, Any]]:
    """Five experiments: A (3 variants, SET_A), B (2 variants, SET_A in another order), C (SET_C),
    D (SET_A, no events), E (a capped metric: not batched) and F (SET_A declaring CUPED++: not batched,
    its sums carry the covariates' cross sums)."""
    reg = Registry(s.registry_url)
    store = open_event_store(s)
    specs = {
        "exp-a": ({"control": 0.34, "red": 0.33, "blue": 0.33}, SET_A, 1),
        "exp-b": ({"control": 0.5, "treatment": 0.5}, [SET_A[2], SET_A[0], SET_A[1]], 2),
        "exp-c": ({"control": 0.5, "treatment": 0.5}, SET_C, 3),
        "exp-d": ({"control": 0.5, "treatment": 0.5}, SET_A, None),
        "exp-e": ({"control": 0.5, "treatment": 0.5},
                  [{"name": "capped", "kind": "mean", "numerator": "purchase", "cap_quantile": 0.9, "primary": True}], 4),
        "exp-f": ({"control": 0.5, "treatment": 0.5}, SET_A, 5),
    }
    recs = {}
    for name, (variants, metrics, seed) in specs.items():
        extra = {"metadata": {"regression_adjustment": {"attributes": []}}} if name == "exp-f" else {}
        rec = reg.create_experiment(name, variants=variants, metrics=metrics, start_at=START - dt.timedelta(days=3),
                                    **extra)
        reg.start(rec.id)
        recs[name] = reg.get(rec.id)
        if seed is not None:
            ingest(store, _events(name, list(variants), seed))
    return store, recs


def assert_same_sums(got: ExperimentSums, want: ExperimentSums) -> None:
    """Equal counts; float sums equal to a few ulps (see the module docstring)."""
    assert (got.exposed_users, got.multiple_exposure_users, got.multiple_exposures) == (
        want.exposed_users, want.multiple_exposure_users, want.multiple_exposures)
    assert len(got.metrics) == len(want.metrics)
    for g_arms, w_arms in zip(got.metrics, want.metrics, strict=True):
        assert [a.variant for a in g_arms] == [a.variant for a in w_arms]
        for g, w in zip(g_arms, w_arms, strict=True):
            for f in dataclasses.fields(g):
                a, b = getattr(g, f.name), getattr(w, f.name)
                if isinstance(b, float):
                    assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9), (f.name, a, b)
                else:
                    assert a == b, (f.name, a, b)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_batch_equals_each_experiment_alone(backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    store, recs = _home(s)
    from battleground.experiment._metric_sums import metric_query

    defs = [metric_query(m) for m in recs["exp-a"].metrics]
    ids = [recs[n].id for n in ("exp-a", "exp-b", "exp-d")]
    variants = {recs[n].id: recs[n].variant_names for n in ("exp-a", "exp-b", "exp-d")}
    for multiple in ("exclude", "first", "keep"):
        for start, end in ((None, None), (START + dt.timedelta(days=1), START + dt.timedelta(days=4))):
            found = store.experiment_sums_batch(ids, defs, start, end, variants, multiple_exposures=multiple)
            assert sorted(found) == sorted(ids)
            for i in ids:
                alone = store.experiment_sums(i, defs, start, end, variants[i], multiple_exposures=multiple)
                assert_same_sums(found[i], alone)
    a = found[recs["exp-a"].id]
    assert [x.variant for x in a.metrics[0]] == ["control", "red", "blue"]
    assert a.multiple_exposure_users > 0 and min(x.users for x in a.metrics[1]) > 10  # the data is not trivial
    empty = found[recs["exp-d"].id]  # no events: zero sums for the declared variants
    assert empty.exposed_users == 0 and all(x.users == 0 and x.sum_x == 0 for arms in empty.metrics for x in arms)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_backend_batch_groups_by_metric_set(backend: str, settings: Settings, request: pytest.FixtureRequest,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Experiments with the same metrics in any order share one query; another metric set gets its own;
    capped metrics and CUPED++ are left to the per-experiment path."""
    from battleground.experiment._source import _Backend

    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    _, recs = _home(s)
    backend_ = _Backend(s)
    infos = [backend_.experiment(r.id) for r in recs.values()]
    queries: list[str] = []
    real = type(backend_.store)._fetch

    def counting(self: Any, sql: str, params: dict[str, Any], *, scan: bool = False) -> Any:
        queries.append(sql)
        return real(self, sql, params, scan=scan)

    monkeypatch.setattr(type(backend_.store), "_fetch", counting)
    found = backend_.experiment_sums_batch(infos, None, None)
    assert len(queries) == 2  # SET_A (exp-a, exp-b, exp-d) and SET_C (exp-c)
    assert sorted(found) == sorted(recs[n].id for n in ("exp-a", "exp-b", "exp-c", "exp-d"))
    assert backend_.experiment_sums(backend_.experiment(recs["exp-f"].id), None, None).covariates is not None
    monkeypatch.setattr(type(backend_.store), "_fetch", real)
    for info in infos:
        if info.id in found:
            assert_same_sums(found[info.id], backend_.experiment_sums(info, None, None))


def test_batch_refuses_what_it_cannot_group() -> None:
    with pytest.raises(ValueError, match="capped metrics"):
        metric_sums_many_sql([MetricQuery("mean", "purchase", cap_value=5.0)], batch=8)
    with pytest.raises(ValueError, match="strata"):
        metric_sums_many_sql([MetricQuery("mean", "purchase")], strata=1, batch=8)
    with pytest.raises(ValueError, match=r"batch must be a number of experiments in \[0, 1024\]"):
        metric_sums_many_sql([MetricQuery("mean", "purchase")], batch=2000)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_cold_list_reads_its_sums_in_batches(backend: str, settings: Settings, request: pytest.FixtureRequest,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's list seeds the sums cache from the batch: its lines equal those computed one
    experiment at a time, with one sums query per metric set (plus one per capped experiment) and no
    daily scan."""
    from battleground.storage._snapshot import read_snapshot
    from battleground.web._experiment_list import SummaryCache
    from battleground.web._view_common import SumsCache, read_only_monitor

    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    store, _ = _home(s)
    records = Registry(s.registry_url).list()
    real = type(store)._fetch
    scans: list[str] = []

    def counting(self: Any, sql: str, params: dict[str, Any], *, scan: bool = False) -> Any:
        if scan:
            scans.append(sql)
        return real(self, sql, params, scan=scan)

    monkeypatch.setattr(type(store), "_fetch", counting)
    cache = SumsCache()
    with read_snapshot():
        batched = SummaryCache().summaries(read_only_monitor(s, cache), records)
    assert len(scans) == 4  # SET_A (3 experiments), SET_C, and exp-e (capped) and exp-f (CUPED++) alone
    assert len(cache) >= 6
    with read_snapshot():
        again = SummaryCache().summaries(read_only_monitor(s, cache), records)
    assert len(scans) == 4  # a new list over the same store state reads the cached sums
    one_by_one = []
    monkeypatch.setattr("battleground.web._view_common.ReadOnlySource.prefetch_sums", lambda self, ids: 0)
    for r in records:
        with read_snapshot():
            one_by_one.extend(SummaryCache().summaries(read_only_monitor(s, SumsCache()), [r]))
    assert len(scans) == 4 + 6
    for b, a, o in zip(batched, again, one_by_one, strict=True):
        assert a == b
        bd, od = b.to_dict(), o.to_dict()
        for k, v in od.items():
            if isinstance(v, float) and not math.isnan(v):
                assert math.isclose(bd[k], v, rel_tol=1e-9), (b.name, k, bd[k], v)
            elif not isinstance(v, float):
                assert bd[k] == v, (b.name, k, bd[k], v)
    by_name = {x.name: x for x in batched}
    assert by_name["exp-a"].verdict is not None and by_name["exp-a"].users["red"] > 20
    assert by_name["exp-d"].total_users == 0 and by_name["exp-d"].verdict is None
