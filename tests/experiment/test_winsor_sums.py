"""Winsorisation and the ratio-CUPED pre-period sums, computed in the store's one scan, against an
independent pandas/numpy computation of the documented rules (DuckDB and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage._sums_sql import MetricQuery
from battleground.storage.sums import MetricSums

START = dt.datetime(2022, 3, 1)
END = dt.datetime(2022, 3, 15)


def _events(seed: int = 5, users: int = 240) -> pd.DataFrame:
    """Users with purchases (heavy-tailed values), impressions and clicks before and after exposure."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def add(u: int, variant: str, kind: str, when: dt.datetime, value: float | None = None) -> None:
        rows.append({"event_id": f"w-{len(rows)}", "experiment": "winsor", "variant": variant,
                     "user_id": f"u{u}", "event_type": kind, "timestamp": when, "value": value,
                     "covariate": None})

    for u in range(users):
        variant = ("control", "treatment", "blue")[u % 3]
        t0 = START + dt.timedelta(days=int(rng.integers(3, 9)), hours=int(rng.integers(0, 24)))
        add(u, variant, "exposure", t0)
        for sign in (-1, 1):  # the lookback (before t0) and the experiment (after)
            for _ in range(int(rng.poisson(2))):
                when = t0 + sign * dt.timedelta(hours=float(rng.uniform(0.1, 60)))
                if when < END:
                    add(u, variant, "impression", when)
                    if rng.random() < 0.4:
                        add(u, variant, "click", when + dt.timedelta(seconds=3))
            if rng.random() < 0.6:
                when = t0 + sign * dt.timedelta(hours=float(rng.uniform(0.1, 40)))
                if when < END:
                    add(u, variant, "purchase", when, float(np.round(rng.pareto(1.5) * 20, 2)))
    frame = pd.DataFrame(rows)
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    return frame


def _per_user(events: pd.DataFrame) -> pd.DataFrame:
    """Per exposed user: purchase value after/before exposure (14-day lookback), clicks and impressions
    after/before."""
    e = events.copy()
    e["value"] = pd.to_numeric(e["value"], errors="coerce").fillna(1.0)
    first = e[e["event_type"] == "exposure"].groupby("user_id").agg(t0=("timestamp", "min"),
                                                                    variant=("variant", "min"))
    e = e.join(first["t0"], on="user_id")
    after = e["timestamp"] >= e["t0"]
    before = ~after & (e["timestamp"] >= e["t0"] - dt.timedelta(days=14))
    out = pd.DataFrame(index=first.index)
    for name, kind in (("rev", "purchase"), ("clk", "click"), ("imp", "impression")):
        is_kind = e["event_type"] == kind
        out[name] = e[is_kind & after].groupby("user_id")["value"].sum()
        out[name + "_pre"] = e[is_kind & before].groupby("user_id")["value"].sum()
    return out.fillna(0.0).join(first["variant"])


def _sums(u: pd.DataFrame, x: str, c: str, y: str | None = None, e: str | None = None) -> dict[str, MetricSums]:
    out = {}
    for v, g in u.groupby("variant"):
        xv, cv = g[x].to_numpy(), g[c].to_numpy()
        yv = g[y].to_numpy() if y else np.zeros(len(g))
        ev = g[e].to_numpy() if e else np.zeros(len(g))
        out[str(v)] = MetricSums(str(v), len(g), 0, xv.sum(), xv @ xv, yv.sum(), yv @ yv, xv @ yv, cv.sum(),
                                 cv @ cv, xv @ cv, sum_e=ev.sum(), sum_e2=ev @ ev, sum_xe=xv @ ev,
                                 sum_ye=yv @ ev, sum_ce=cv @ ev, sum_yc=yv @ cv)
    return out


FIELDS = ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_c", "sum_c2", "sum_xc",
          "sum_e", "sum_e2", "sum_xe", "sum_ye", "sum_ce", "sum_yc")


def _check(got: tuple[MetricSums, ...], want: dict[str, MetricSums]) -> None:
    for s in got:
        r, w = s.unshifted(), want[s.variant]
        assert s.users == w.users, s.variant
        for f in FIELDS:
            assert getattr(r, f) == pytest.approx(getattr(w, f), rel=1e-9, abs=1e-7), (s.variant, f)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_caps_and_pre_period_denominator_match_numpy(backend: str, settings: Settings,
                                                     request: pytest.FixtureRequest) -> None:
    s = settings if backend == "duckdb" else request.getfixturevalue("postgres_settings")
    reg = Registry(s.registry_url)
    exp = reg.create_experiment("winsor", variants={"control": 1 / 3, "treatment": 1 / 3, "blue": 1 / 3},
                                metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase"}],
                                start_at=START, end_at=END)
    reg.start(exp.id)
    store = open_event_store(s)
    events = _events()
    ingest(store, events)
    defs = [MetricQuery("mean", "purchase", cap_quantile=0.9),
            MetricQuery("mean", "purchase", cap_value=25.0),
            MetricQuery("ratio", "click", "impression"),
            MetricQuery("ratio", "click", "impression", cap_quantile=0.5),
            MetricQuery("mean", "purchase")]
    variants = ("control", "treatment", "blue")
    es = store.experiment_sums(exp.id, defs, variants=variants)
    u = _per_user(events)
    q90, q90c = np.quantile(u["rev"], 0.9), np.quantile(u["rev_pre"], 0.9)
    capped = u.assign(rev=u["rev"].clip(upper=q90), rev_pre=u["rev_pre"].clip(upper=q90c))
    _check(es.metrics[0], _sums(capped, "rev", "rev_pre"))
    assert es.metrics[0][0].cap_x == pytest.approx(q90) and es.metrics[0][0].cap_c == pytest.approx(q90c)
    _check(es.metrics[1], _sums(u.assign(rev=u["rev"].clip(upper=25), rev_pre=u["rev_pre"].clip(upper=25)),
                                "rev", "rev_pre"))
    _check(es.metrics[2], _sums(u, "clk", "clk_pre", "imp", "imp_pre"))
    med, medc = np.median(u["clk"]), np.median(u["clk_pre"])
    _check(es.metrics[3], _sums(u.assign(clk=u["clk"].clip(upper=med), clk_pre=u["clk_pre"].clip(upper=medc)),
                                "clk", "clk_pre", "imp", "imp_pre"))
    _check(es.metrics[4], _sums(u, "rev", "rev_pre"))
    assert es.metrics[4][0].cap_x is None and q90 < u["rev"].max()  # the cap really bit
    # the daily series caps every day at the final caps: its last day is the one scan
    last = store.daily_experiment_sums(exp.id, defs, variants=variants)[-1][1]
    for a, b in zip(last.metrics, es.metrics, strict=True):
        for sa, sb in zip(a, b, strict=True):
            for f in FIELDS:
                assert getattr(sa.unshifted(), f) == pytest.approx(getattr(sb.unshifted(), f), rel=1e-9, abs=1e-7)


def test_one_user_and_no_users_are_capped_at_their_own_value(settings: Settings) -> None:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment("winsor", variants={"control": 0.5, "treatment": 0.5},
                                metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase"}],
                                start_at=START, end_at=END)
    reg.start(exp.id)
    store = open_event_store(settings)
    defs = [MetricQuery("mean", "purchase", cap_quantile=0.99)]
    empty = store.experiment_sums(exp.id, defs, variants=("control", "treatment"))
    assert [s.users for s in empty.metrics[0]] == [0, 0]
    one = pd.DataFrame([
        {"event_id": "a", "experiment": "winsor", "variant": "control", "user_id": "u1",
         "event_type": "exposure", "timestamp": START + dt.timedelta(days=1), "value": None, "covariate": None},
        {"event_id": "b", "experiment": "winsor", "variant": "control", "user_id": "u1",
         "event_type": "purchase", "timestamp": START + dt.timedelta(days=2), "value": 1e9, "covariate": None},
    ])
    one["value"] = one["value"].astype(object).where(one["value"].notna(), None)
    ingest(store, one)
    s = store.experiment_sums(exp.id, defs, variants=("control", "treatment")).metrics[0][0]
    assert s.users == 1 and s.mean == pytest.approx(1e9) and s.cap_x == pytest.approx(1e9)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "mean", "cap_quantile": 1.0}, "cap_quantile must be a quantile in"),
    ({"kind": "mean", "cap_quantile": 0}, "cap_quantile must be a quantile in"),
    ({"kind": "mean", "cap_value": -1.0}, "cap_value must be a finite number > 0"),
    ({"kind": "mean", "cap_value": 5.0, "cap_quantile": 0.9}, "not both"),
    ({"kind": "proportion", "cap_quantile": 0.9}, "cannot be capped"),
])
def test_impossible_caps_are_refused(kwargs: dict[str, Any], match: str) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=match):
        MetricQuery(kind, "purchase", **kwargs)


# ------------------------------------------------------------------ the registry and Monitor


def _registered(settings: Settings) -> tuple[Registry, int, pd.DataFrame]:
    reg = Registry(settings.registry_url)
    exp = reg.create_experiment(
        "winsor", variants={"control": 1 / 3, "treatment": 1 / 3, "blue": 1 / 3}, start_at=START, end_at=END,
        metrics=[{"name": "rev", "kind": "mean", "numerator": "purchase", "primary": True, "cap_quantile": 0.9},
                 {"name": "rev_raw", "kind": "mean", "numerator": "purchase"},
                 {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"}])
    reg.start(exp.id)
    events = _events()
    ingest(open_event_store(settings), events)
    return reg, exp.id, events


def test_registry_keeps_caps_and_monitor_shows_capped_and_ratio_cuped_rows(settings: Settings) -> None:
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.report import render_report, table_rows
    from battleground.stats import ratio_test

    reg, exp_id, events = _registered(settings)
    rec = reg.get(exp_id)
    assert [(m.cap_quantile, m.cap_value) for m in rec.metrics] == [(0.9, None), (None, None), (None, None)]
    result = Monitor(client=settings).put_experiment_id(experiment_id=exp_id).result()
    u = _per_user(events)
    rows = {(r.metric, r.variant): r for r in result.rows}
    for v in ("control", "treatment", "blue"):  # the capped mean is the numpy mean of the clipped values
        g = u[u["variant"] == v]
        assert rows[("rev", v)].value == pytest.approx(g["rev"].clip(upper=np.quantile(u["rev"], 0.9)).mean())
        assert rows[("rev_raw", v)].value == pytest.approx(g["rev"].mean())
    assert rows[("rev", "treatment")].users == rows[("rev_raw", "treatment")].users
    # the ratio metric now has its CUPED row beside the plain one, 3 arms: one per treatment
    for v in ("treatment", "blue"):
        cuped, plain = rows[("ctr", v)].cuped, rows[("ctr", v)]
        assert cuped is not None and cuped.method == "cuped"
        assert plain.rel_lift == pytest.approx(ratio_test(*[_ratio(u, a) for a in ("control", v)],
                                                          relative=True).estimate)
    t = {(r["metric"], r["variant"]): r for r in table_rows(result)}
    assert t[("ctr", "blue")]["cuped"] is not None
    _, md, _ = render_report(Monitor(client=settings).put_experiment_id(experiment_id=exp_id).experiment(),
                             result, None, generated=END)
    assert "| ctr (CUPED) | blue |" in md and "capped at the 90th percentile" in md


def _ratio(u: pd.DataFrame, v: str) -> MetricSums:
    g = u[u["variant"] == v]
    m, d = g["clk"].to_numpy(), g["imp"].to_numpy()
    return MetricSums(v, len(g), 0, m.sum(), m @ m, d.sum(), d @ d, m @ d)


def test_registry_refuses_impossible_caps(settings: Settings) -> None:
    from battleground.errors import BattlegroundError

    reg = Registry(settings.registry_url)
    for metric, match in (({"name": "c", "kind": "proportion", "numerator": "buy", "cap_value": 3}, "cannot be capped"),
                          ({"name": "r", "kind": "mean", "numerator": "buy", "cap_quantile": 99.9}, "in \\(0, 1\\)")):
        with pytest.raises(BattlegroundError, match=match):
            reg.create_experiment("bad", metrics=[metric])
