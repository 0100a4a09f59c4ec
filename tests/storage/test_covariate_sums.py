"""Per-arm sums for CUPED++ (``EventStore.covariate_sums``, ``storage/_sums_sql.py``, the one metric-sums scan): every
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
from battleground.storage._sums_sql import MetricQuery
from battleground.storage.sums import covariate_names


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


def _two_query_path(store: Any, exp_id: int, defs: list[MetricQuery], attrs: list[str],
                    variants: tuple[str, ...]) -> list[Any]:
    """The oracle: the CUPED++ sums as the second query computed them before they were folded into the
    metric-sums scan (its per-user step, then its own aggregation over users; kept here only to check
    that the one scan gives the same results)."""
    from battleground.storage._sums_sql import _PER_USER_END, metric_sums_many_sql
    from battleground.storage.events import _params
    from battleground.storage.sums import CovariateSums

    zero, one = "CAST(0 AS DOUBLE PRECISION)", "CAST(1 AS DOUBLE PRECISION)"
    head = metric_sums_many_sql(defs, strata=len(attrs)).partition(_PER_USER_END)[0]
    m = len(defs)
    z = [f"c{j}" for j in range(m)]
    for i in range(len(attrs)):
        z += [f"COALESCE(st{i}, {zero})", f"CASE WHEN st{i} IS NULL THEN {one} ELSE {zero} END"]
    p = len(z)
    shifts = ", ".join([f"COALESCE(AVG(x{j}), {zero}) AS ky{j}" for j in range(m)]
                       + [f"COALESCE(AVG({e}), {zero}) AS kz{a}" for a, e in enumerate(z)])
    dev = ", ".join([f"x{j} - ky{j} AS y{j}" for j in range(m)] + [f"{e} - kz{a} AS z{a}" for a, e in enumerate(z)]
                    + [f"ky{j}" for j in range(m)] + [f"kz{a}" for a in range(p)])
    outs = ["COUNT(*)", *(f"SUM(y{j}), SUM(y{j} * y{j}), MIN(ky{j})" for j in range(m)),
            *(f"SUM(z{a}), MIN(kz{a})" for a in range(p)),
            *(f"SUM(z{a} * z{b})" for a in range(p) for b in range(a, p)),
            *(f"SUM(y{j} * z{a})" for j in range(m) for a in range(p))]
    sql = f"""{head.rstrip().removesuffix(",")},
k AS MATERIALIZED (SELECT {shifts} FROM per_user WHERE grp IS NOT NULL),
d AS (SELECT grp, {dev} FROM per_user CROSS JOIN k WHERE grp IS NOT NULL)
SELECT grp, {", ".join(outs)} FROM d GROUP BY grp ORDER BY grp"""
    params = {**_params(exp_id, defs, None, None), **{f"st{i}": a for i, a in enumerate(attrs)}}
    names = covariate_names(m, attrs)
    found = {}
    for row in store._query(sql, params, scan=True):
        v = [float(x or 0.0) for x in row[1:]]
        pos = 1 + 3 * m + 2 * p
        zz = {}
        for a in range(p):
            for b in range(a, p):
                zz[a, b] = zz[b, a] = v[pos]
                pos += 1
        found[str(row[0])] = CovariateSums(
            str(row[0]), round(v[0]), names, tuple(v[1 + 3 * j] for j in range(m)), tuple(v[2 + 3 * j] for j in range(m)),
            tuple(v[1 + 3 * m + 2 * a] for a in range(p)), tuple(tuple(zz[a, b] for b in range(p)) for a in range(p)),
            tuple(tuple(v[pos + j * p + a] for a in range(p)) for j in range(m)),
            tuple(v[3 + 3 * j] for j in range(m)), tuple(v[2 + 3 * m + 2 * a] for a in range(p)))
    return [found.get(v) or CovariateSums.empty(v, names, m) for v in variants]


def three_arm_events() -> pd.DataFrame:
    """:func:`covariate_events` over three arms (every third user moved to ``t2``) and a fourth arm with
    a single user."""
    events = covariate_events(seed=11, users=360)
    idx = events["user_id"].str[1:].astype(int)
    events.loc[idx % 3 == 2, "variant"] = "t2"
    events.loc[events["user_id"] == "u5", "variant"] = "solo"
    events["experiment"] = "three"
    return events


def _three_arms(s: Settings) -> tuple[Any, Any, tuple[str, ...]]:
    """A running experiment with 3 arms and a one-user arm, and its events (:func:`three_arm_events`)."""
    reg = Registry(s.registry_url)
    variants = ("control", "treatment", "t2", "solo")
    exp = reg.create_experiment("three", variants=list(variants),
                                metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase"}],
                                start_at=START - dt.timedelta(days=30), end_at=END)
    reg.start(exp.id)
    store = open_event_store(s)
    ingest(store, three_arm_events())
    return store, exp, variants


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_one_scan_matches_the_two_query_path(backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    """CUPED++ from the one metric-sums scan equals the former second query to 1e-12: 3 arms and a
    one-user arm (it sits out), an attribute some users lack and one nobody has (a constant covariate)."""
    from battleground.experiment._cupedpp import cupedpp_comparisons

    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    store, exp, variants = _three_arms(s)
    attrs = ["country", "platform", "tenure"]  # nobody logs a tenure
    one = store.experiment_sums(exp.id, DEFS, variants=variants, attributes=attrs)
    assert one.covariates is not None and [a.variant for a in one.covariates] == list(variants)
    assert one.covariates[3].users == 1 and one.covariates[0].covariates == covariate_names(3, attrs)
    two = _two_query_path(store, exp.id, DEFS, attrs, variants)
    for new, old in zip(one.covariates, two, strict=True):
        assert new.users == old.users
        if new.users < 2:
            continue
        for a, b in zip(_moments(new), _moments(old), strict=True):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12)
    kinds = [("rev", "mean"), ("ctr", "ratio"), ("buyer", "proportion")]
    got = cupedpp_comparisons(kinds, one.covariates, control="control", ridge=0.0)
    want = cupedpp_comparisons(kinds, two, control="control", ridge=0.0)
    assert [(c.metric, c.variant) for c in got] == [(c.metric, c.variant) for c in want] == [
        ("rev", "treatment"), ("rev", "t2"), ("buyer", "treatment"), ("buyer", "t2")]
    for g, w in zip(got, want, strict=True):
        assert g.covariates == w.covariates and "tenure" not in g.covariates  # constant: dropped
        assert g.theta == pytest.approx(w.theta, rel=1e-12, abs=1e-12)
        for field in ("estimate", "se", "p_value", "variance_reduction", "df"):
            assert getattr(g.adjusted, field) == pytest.approx(getattr(w.adjusted, field), rel=1e-12, abs=1e-15)
        assert g.adjusted.ci == pytest.approx(w.adjusted.ci, rel=1e-12, abs=1e-15)
    # the metric sums of the same scan are those of the scan without CUPED++
    plain = store.experiment_sums(exp.id, DEFS, variants=variants)
    assert plain.covariates is None
    for a, b in zip((s for arms in plain.metrics for s in arms), (s for arms in one.metrics for s in arms), strict=True):
        assert (a.variant, a.users, a.events) == (b.variant, b.users, b.events)
        assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.sum_x2 == pytest.approx(b.sum_x2, rel=1e-12)


def _moments(arm: Any) -> tuple[np.ndarray, np.ndarray]:
    """(means of (y, z), their covariance) of one arm's CUPED++ sums, shift-free."""
    from battleground.stats import CovariateSummary

    out = [CovariateSummary(n=float(arm.users), sum_y=arm.sum_y[j], sum_y2=arm.sum_y2[j], sum_x=arm.sum_z,
                            sum_xy=arm.sum_yz[j], sum_xx=arm.sum_zz, shift_y=arm.shift_y[j],
                            shift_x=arm.shift_z).moments() for j in range(len(arm.sum_y))]
    return np.concatenate([mu for mu, _ in out]), np.concatenate([c.ravel() for _, c in out])


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_daily_cupedpp_sums_end_at_the_one_scan(backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    """The daily scan's CUPED++ sums (each day cumulative) end at the metric-sums scan's."""
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    store, exp, variants = _three_arms(s)
    exp_id = exp.id
    attrs = ["country", "platform"]
    series = store.daily_experiment_sums(exp_id, DEFS, variants=variants, attributes=attrs)
    whole = store.experiment_sums(exp_id, DEFS, variants=variants, attributes=attrs)
    assert len(series) >= 5 and all(found.covariates is not None for _, found in series)
    users = [sum(a.users for a in found.covariates or ()) for _, found in series]
    assert users == sorted(users) and users[-1] == 360
    for new, old in zip(series[-1][1].covariates or (), whole.covariates or (), strict=True):
        assert new.users == old.users
        if new.users >= 2:
            for a, b in zip(_moments(new), _moments(old), strict=True):
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
