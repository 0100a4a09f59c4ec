"""A small simulated A/B test written through the real registry, assigner and event store, and the same
numbers computed independently with pandas and the pure statistics functions (issue 3's end-to-end
tests: test_monitoring_store.py, test_report.py, test_seed_ab_examples.py)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from battleground import stats
from battleground.experiment.assign import Assigner
from battleground.experiment.events import ingest, open_event_store
from battleground.experiment.register import ExperimentRecord, Registry
from battleground.settings import Settings

START = dt.datetime(2022, 3, 1)

METRICS = [
    {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
    {"name": "revenue", "kind": "mean", "numerator": "purchase"},
    {"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"},
    {"name": "errors", "kind": "proportion", "numerator": "error", "direction": "decrease",
     "guardrail": True},
]
METRIC_KIND = {m["name"]: m["kind"] for m in METRICS}


@dataclass
class Scenario:
    settings: Settings
    registry: Registry
    experiment: ExperimentRecord
    events: pd.DataFrame  # every event written, exposures included
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return self.experiment.id


def build(
    settings: Settings,
    *,
    name: str = "checkout-button",
    users: int = 3000,
    days: int = 7,
    conversion: tuple[float, float] = (0.10, 0.15),
    ctr: tuple[float, float] = (0.05, 0.055),
    errors: tuple[float, float] = (0.02, 0.02),
    drop_treatment: float = 0.0,
    sequential: bool = False,
    target_sample_size: int | None = None,
    max_duration_days: float | None = None,
    hypothesis: str = "A green checkout button raises conversion",
    seed: int = 0,
    start: bool = True,
) -> Scenario:
    """Register, start, expose and ingest one experiment (control vs treatment, 50/50).

    Each user is exposed once on a random day; afterwards they see Poisson impressions, click each with
    the arm's CTR, buy with the arm's conversion rate (revenue as the purchase's value) and hit an error
    with the arm's error rate. ``drop_treatment`` loses that fraction of treatment exposures (an SRM).
    """
    registry = Registry(settings.registry_url)
    end_conditions = {"target_sample_size": target_sample_size, "max_duration_days": max_duration_days,
                      "sequential": sequential}
    rec = registry.create_experiment(
        name, variants={"control": 0.5, "treatment": 0.5}, metrics=METRICS, hypothesis=hypothesis,
        description="simulated", owner="ana", start_at=START, end_conditions=end_conditions,
        salt=f"{name}-{seed}",  # a fixed salt: the same users land in the same arms on every run
    )
    if start:
        rec = registry.start(rec.id)
    store = open_event_store(settings)
    rng = np.random.default_rng(seed)
    ids = np.arange(1, users + 1)
    assigner = Assigner(rec)
    variant = np.asarray(assigner.assign_many(ids), dtype=object)
    keep = ~((variant == "treatment") & (rng.random(users) < drop_treatment))
    ids, variant = ids[keep], variant[keep]
    n = ids.size
    treat = variant == "treatment"
    at = pd.to_datetime(START) + pd.to_timedelta(
        rng.integers(0, days, n) * 86400 + rng.integers(0, 86400, n), unit="s"
    )
    assigner.expose(store, ids, at=list(at.to_pydatetime()))

    horizon = pd.Timestamp(START + dt.timedelta(days=days)) - pd.Timedelta(seconds=1)

    def later(owner: np.ndarray) -> pd.DatetimeIndex:
        ts = at[owner] + pd.to_timedelta(rng.integers(0, 2 * 86400, owner.size), unit="s")
        return ts.where(ts <= horizon, horizon)

    imps = rng.poisson(8, n) + 1
    owner_imp = np.repeat(np.arange(n), imps)
    p_click = np.where(treat, ctr[1], ctr[0])[owner_imp]
    clicked = rng.random(owner_imp.size) < p_click
    owner_click = owner_imp[clicked]
    buys = np.flatnonzero(rng.random(n) < np.where(treat, conversion[1], conversion[0]))
    errs = np.flatnonzero(rng.random(n) < np.where(treat, errors[1], errors[0]))
    parts = []
    for kind, owner, value in (
        ("impression", owner_imp, None),
        ("click", owner_click, None),
        ("purchase", buys, np.round(rng.gamma(2.0, 15.0, buys.size), 2)),
        ("error", errs, None),
    ):
        parts.append(pd.DataFrame({
            "event_id": [f"{kind}:{ids[o]}:{k}" for k, o in enumerate(owner)],
            "experiment": rec.id,
            "variant": variant[owner].astype(str),
            "user_id": ids[owner].astype(str),
            "event_type": kind,
            "timestamp": later(owner),
            # pandas' nullable floats: <NA> is "no value" (a NaN would be rejected by ingest)
            "value": pd.array(value if value is not None else np.full(owner.size, np.nan), dtype="Float64"),
        }))
    batch = pd.concat(parts, ignore_index=True)
    ingest(store, batch)
    exposures = pd.DataFrame({
        "event_id": [f"exposure:{rec.id}:{i}" for i in ids], "experiment": rec.id,
        "variant": variant.astype(str), "user_id": ids.astype(str), "event_type": "exposure",
        "timestamp": at, "value": pd.array(np.full(n, np.nan), dtype="Float64"),
    })
    events = pd.concat([exposures, batch], ignore_index=True)
    return Scenario(settings, registry, registry.get(rec.id), events, {"control": 0.5, "treatment": 0.5})


# ---------------------------------------------------------------------------------------------------
# The same numbers, independently: pandas per-user aggregation + the scalar statistics functions
# ---------------------------------------------------------------------------------------------------


def per_user(events: pd.DataFrame, start: Any = None, end: Any = None) -> pd.DataFrame:
    """One row per exposed user in [start, end): variant, conversion, revenue, clicks, impressions, error."""
    e = events
    if start is not None:
        e = e[e["timestamp"] >= pd.Timestamp(start)]
    if end is not None:
        e = e[e["timestamp"] < pd.Timestamp(end)]
    exposed = e[e["event_type"] == "exposure"][["user_id", "variant"]].drop_duplicates("user_id")
    t = e["event_type"]
    agg = pd.DataFrame({
        "user_id": e["user_id"],
        "purchases": (t == "purchase").astype(int),
        "revenue": e["value"].astype(float).where(t == "purchase", 0.0).fillna(0.0),
        "clicks": (t == "click").astype(float),
        "impressions": (t == "impression").astype(float),
        "error_events": (t == "error").astype(int),
    }).groupby("user_id").sum()
    users = exposed.set_index("user_id").join(agg, how="left").fillna(0.0)
    users["conversion"] = (users["purchases"] > 0).astype(float)
    users["errors"] = (users["error_events"] > 0).astype(float)
    return users


def expected(events: pd.DataFrame, start: Any = None, end: Any = None) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(metric, variant): numbers}`` as the monitoring frame should show them (fixed horizon)."""
    u = per_user(events, start, end)
    c, t = u[u["variant"] == "control"], u[u["variant"] == "treatment"]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    numerator_events = {"conversion": "purchases", "revenue": "purchases", "ctr": "clicks", "errors": "error_events"}
    for metric, kind in METRIC_KIND.items():
        if kind == "ratio":
            arms: tuple[Any, Any] = ((c["clicks"].to_numpy(), c["impressions"].to_numpy()),
                                     (t["clicks"].to_numpy(), t["impressions"].to_numpy()))
            test: Any = stats.ratio_test
            values = [a[0].sum() / a[1].sum() for a in arms]
        elif kind == "proportion":
            arms = ((c[metric].sum(), len(c)), (t[metric].sum(), len(t)))
            test = partial(stats.compare_means, proportion=True)
            values = [c[metric].mean(), t[metric].mean()]
        else:
            arms = (c[metric].to_numpy(), t[metric].to_numpy())
            test = stats.compare_means
            values = [c[metric].mean(), t[metric].mean()]
        nothing = SimpleNamespace(estimate=math.nan, ci_lower=math.nan, ci_upper=math.nan,
                                  p_value=math.nan, df=math.nan)
        try:
            ab = test(*arms)
        except stats.StatsInputError:  # e.g. no event in either arm yet: no test (NaN in the frame)
            ab = nothing
        try:
            rel = test(*arms, relative=True)
        except stats.StatsInputError:  # e.g. no treatment event yet: the relative SE is 0
            rel = nothing
        for arm, frame, value in (("control", c, values[0]), ("treatment", t, values[1])):
            out[(metric, arm)] = {
                "users": len(frame), "events": int(frame[numerator_events[metric]].sum()), "value": value,
            }
        out[(metric, "treatment")].update(
            abs_lift=ab.estimate, abs_ci_lower=ab.ci_lower, abs_ci_upper=ab.ci_upper, p_value=ab.p_value,
            rel_lift=rel.estimate, rel_ci_lower=rel.ci_lower, rel_ci_upper=rel.ci_upper, df=ab.df,
        )
    keys = [k for k in out if k[1] == "treatment" and math.isfinite(out[k]["p_value"])]
    for k in out:
        out[k].setdefault("p_value_adjusted", math.nan)
    adjusted = stats.adjust_pvalues([out[k]["p_value"] for k in keys], method="holm").adjusted
    for k, p in zip(keys, adjusted, strict=True):
        out[k]["p_value_adjusted"] = p
    return out


def row(frame: pd.DataFrame, metric: str, variant: str) -> pd.Series:
    sel = frame[(frame["metric"] == metric) & (frame["variant"] == variant)]
    assert len(sel) == 1, (metric, variant, len(sel))
    return sel.iloc[0]
