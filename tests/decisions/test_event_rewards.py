"""Rewards from ordinary event ingestion: events matched to decisions by time window feed OPE from the
store, the updater and the ledger, on both backends; a plain A/B experiment uses its primary metric."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from tests.decisions.conftest import TOKEN

from battleground.decisions import (
    Ledger,
    PolicySpec,
    PolicyStore,
    PolicyUpdater,
    deploy_policy,
    ope_from_store,
)
from battleground.decisions._offline import control_policy
from battleground.decisions._rewards import experiment_reward_rule
from battleground.experiment.events import ingest
from battleground.experiment.register import Registry
from battleground.ope import OPEEstimate
from battleground.settings import Settings
from battleground.storage.decisions import DecisionRow, RewardRule, open_decision_log

T0 = dt.datetime(2026, 1, 1)


@pytest.fixture(params=["duckdb", "postgresql"])
def home(request: pytest.FixtureRequest) -> Settings:
    base = request.getfixturevalue("settings" if request.param == "duckdb" else "postgres_settings")
    return dataclasses.replace(base, api_token=TOKEN)


def _seed(home: Settings, n: int = 120) -> np.ndarray:
    """A bandit-vs-control experiment started at T0, ``n`` logged decisions of policy ``coupons``
    (one per unit and minute), and the units' purchase events: arm 2 buys for 1.0 within 30 s."""
    registry = Registry(home.registry_url)
    exp = registry.create_experiment("bvc", variants={"control": 0.5, "bandit": 0.5}, salt="s",
                                     metrics=[{"name": "revenue", "kind": "mean", "numerator": "purchase",
                                               "primary": True}])
    registry.start(exp.id, at=T0)
    deploy_policy(home, PolicySpec("coupons", n_arms=3, n_features=2, experiment="bvc", batch_size=40,
                                   reward_event="purchase", reward_window=60.0))
    rng = np.random.default_rng(3)
    x, a = rng.random((n, 2)), rng.integers(3, size=n)
    rows = [DecisionRow(f"d{i}", "coupons", exp.id, "bandit" if i % 2 else "control", f"u{i % 40}", tuple(x[i]),
                        int(a[i]), 1 / 3, 1, bool(i % 2), T0 + dt.timedelta(minutes=i)) for i in range(n)]
    open_decision_log(home).log(rows)
    events = [{"event_id": f"p{i}", "experiment": "bvc", "variant": rows[i].variant, "user_id": rows[i].unit_id,
               "event_type": "purchase", "timestamp": (rows[i].ts + dt.timedelta(seconds=30)).isoformat(),
               "value": 1.0} for i in range(n) if a[i] == 2]
    events.append({"event_id": "late", "experiment": "bvc", "variant": "control", "user_id": "u0",
                   "event_type": "purchase", "timestamp": (T0 + dt.timedelta(minutes=n + 5)).isoformat(), "value": 50.0})
    assert ingest(home, events).inserted == len(events)
    return np.column_stack([x, a, (a == 2).astype(float)])


def test_ingested_events_feed_ope_the_updater_and_the_ledger(home: Settings) -> None:
    data = _seed(home)
    best = control_policy(3, 2)
    res = ope_from_store(home, "coupons", {"arm2": best}, reward_model=False)
    assert res.n_rounds == 120  # every window is over: each decision has its reward (0 without a purchase)
    assert res.logged_value == pytest.approx(data[:, 3].mean())  # the late event belongs to no window
    assert res.table.set_index("estimator").loc["snips", "value"] == pytest.approx(1.0)
    log = open_decision_log(home)
    assert log.count("coupons") == (120, 120, 120)
    # the updater learns from them (the policy's own 60 rows: one batch of 40)
    from battleground.decisions._writer import GroupWriter

    store = PolicyStore.of(home)
    writer = GroupWriter(log)
    try:
        updater = PolicyUpdater(store.spec("coupons"), store, writer, (1, store.load_version("coupons", 1)),
                                lambda *_: None)
        assert updater.step() == [None] and updater.batches == 1
    finally:
        writer.close()
    # the ledger's online values are the matched rewards per variant
    ledger = Ledger(home)
    ledger.record_offline("bvc", "bandit", [OPEEstimate("dr", 0.3, 0.05, 0.2, 0.4, 0.05, "analytic", 120)])
    observed = ledger.close("bvc")
    assert observed["bandit"][0] == pytest.approx(data[1::2, 3].mean()) and observed["bandit"][3] == 60


def test_a_plain_ab_experiment_rewards_its_decisions_by_its_primary_metric(home: Settings) -> None:
    registry = Registry(home.registry_url)
    exp = registry.create_experiment("ab", variants={"control": 0.5, "treatment": 0.5}, metrics=[
        {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True,
         "conversion_window_days": 1}])
    assert experiment_reward_rule(exp) == RewardRule("purchase", 86400.0, "any")
    registry.start(exp.id, at=T0)
    log = open_decision_log(home)
    log.log([DecisionRow(f"d{i}", "ab", exp.id, "control" if i < 2 else "treatment", f"u{i}", (), int(i >= 2), 0.5, 0,
                         False, T0) for i in range(4)])
    ingest(home, [{"event_id": f"p{i}", "experiment": "ab", "variant": "treatment", "user_id": "u3",
                   "event_type": "purchase", "timestamp": (T0 + dt.timedelta(hours=i + 1)).isoformat()} for i in range(2)])
    from battleground.decisions._rewards import attach_event_rewards

    assert attach_event_rewards(home, "ab") == 4
    assert log.read(experiment_id=exp.id).reward.tolist() == [0.0, 0.0, 0.0, 1.0]  # two purchases: converted once
    ratio = dataclasses.replace(exp, metrics=(dataclasses.replace(exp.metrics[0], kind="ratio", denominator="x"),))
    assert experiment_reward_rule(ratio) is None
