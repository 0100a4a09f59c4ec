"""The offline → online loop on the retail simulator, served as live traffic through ``/decide``.

1. a uniform-random policy serves every customer for a few steps (decisions and rewards logged);
2. LinTS, trained on separate simulator logs, is scored from the stored logs (``ope_from_store``) and
   its estimates (and the control slice's) are recorded in the ledger beside a new experiment;
3. LinTS is served through ``/decide`` against a uniform-random control slice (half the customers,
   by the deterministic assignment), learning from its own rewards behind the OPE guard;
4. the A/B statistics compare the two variants' reward per decision, and the ledger records the online
   value next to each offline estimate.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from battleground.decisions._ledger import LedgerEntry
    from battleground.settings import Settings

__all__ = ["DecisionLoopResult", "run_decision_loop"]

_TOKEN = "demo-decisions-token"


@dataclass(frozen=True)
class DecisionLoopResult:
    """What the loop left: the experiment, the OPE table, the A/B result and the ledger entries."""

    experiment_id: int
    decisions: int
    ope: pd.DataFrame
    ab_result: pd.DataFrame
    entries: list[LedgerEntry]
    live_version: int


def _serve(client: Any, sim: Any, key: str, steps: int, tag: str) -> int:
    """``steps`` steps of every customer through /decide, each reward through /reward (8 clients)."""
    headers = {"Authorization": f"Bearer {_TOKEN}"}
    n = 0
    x = sim.contexts()
    with ThreadPoolExecutor(8) as pool:
        for t in range(steps):
            def decide(i: int, t: int = t, x: np.ndarray = x) -> dict[str, Any]:
                r = client.post("/decide", json={"unit_id": f"customer-{i}", "policy": key, "context": x[i].tolist(),
                                                 "decision_id": f"{tag}-{t}-{i}"}, headers=headers)
                r.raise_for_status()
                return dict(r.json())

            answers = list(pool.map(decide, range(sim.n_customers)))
            result = sim.step(np.array([a["action"] for a in answers]))

            def reward(i: int, answers: list[dict[str, Any]] = answers, rewards: np.ndarray = result.rewards) -> None:
                client.post("/reward", json={"decision_id": answers[i]["decision_id"], "reward": float(rewards[i])},
                            headers=headers).raise_for_status()

            list(pool.map(reward, range(sim.n_customers)))
            n += len(answers)
            x = sim.contexts()
    return n


def run_decision_loop(settings: Settings, *, n_customers: int = 200, steps: int = 8, seed: int = 0,
                      console: Console | None = None) -> DecisionLoopResult:
    """Run the loop (see the module docstring) on ``settings``' registry and event store."""
    import dataclasses

    from fastapi.testclient import TestClient

    from battleground.bandit import LinTS, RandomPolicy, RetailSimulator
    from battleground.decisions import Ledger, PolicySpec, deploy_policy, ope_from_store
    from battleground.decisions._app import create_decision_app
    from battleground.decisions._offline import control_policy
    from battleground.experiment.monitoring import Monitor
    from battleground.experiment.register import Registry
    from battleground.ope import OPEEstimate

    say = console.print if console is not None else (lambda *_a, **_k: None)
    settings = dataclasses.replace(settings, api_token=_TOKEN)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    sim = RetailSimulator(n_customers=n_customers, seed=seed)
    k, d = sim.n_arms, sim.n_features
    registry = Registry(settings)
    exp = registry.create_experiment(
        f"coupons-lints-vs-control-{stamp}", variants={"control": 0.5, "bandit": 0.5},
        description="LinTS coupons served through /decide against a uniform-random control slice",
        hypothesis="LinTS earns more revenue per decision than random coupons, as OPE predicted",
        metrics=[{"name": "revenue", "kind": "mean", "numerator": "reward", "primary": True}],
        owner="demo", salt=f"demo-decisions-{seed}",
    )
    exp = registry.start(exp.id, actor="demo")

    # 1. logs of a uniform-random policy, through the service
    logging_key = f"coupons-random-{stamp}"
    deploy_policy(settings, PolicySpec(logging_key, k, d, seed=seed), RandomPolicy(n_arms=k, random_state=seed))
    sim.reset(episode=0)
    with TestClient(create_decision_app(settings, updaters=False), base_url="http://127.0.0.1") as client:
        logged = _serve(client, sim, logging_key, steps, "random")
    say(f"logged {logged:,} decisions of a uniform-random policy through /decide (with their rewards)")

    # 2. LinTS trained elsewhere (separate simulator logs), scored from the stored logs
    train = RetailSimulator(n_customers=n_customers, seed=seed)
    x = train.reset(episode=99)
    rng = np.random.default_rng(seed + 1)
    policy = LinTS(n_arms=k, variance_scale=0.025, reg=30.0, random_state=seed)
    for _ in range(max(steps, 4)):
        a = rng.integers(k, size=n_customers)
        policy.update(x, a, train.step(a).rewards)
        x = train.contexts()
    candidates = {"bandit": policy, "control": control_policy(k, "random")}
    ope = ope_from_store(settings, logging_key, candidates)
    ledger = Ledger(settings)
    for name, group in ope.table.groupby("candidate", sort=False):
        ledger.record_offline(exp.id, str(name), [
            OPEEstimate(r.estimator, r.value, r.se, r.ci_low, r.ci_high, r.alpha, r.ci_method, r.n_rounds)
            for r in group.itertuples()], source=f"decision log of {logging_key}")
    say(f"OPE of LinTS from the store: DR {_value(ope.table, 'bandit', 'dr'):.3f} vs control "
        f"{_value(ope.table, 'control', 'dr'):.3f} per decision; recorded in the ledger beside #{exp.id}")

    # 3. LinTS live against the control slice, learning behind the guard
    key = f"coupons-lints-{stamp}"
    deploy_policy(settings, PolicySpec(key, k, d, experiment=exp.name, batch_size=max(64, n_customers // 2),
                                       seed=seed), policy)
    sim.reset(episode=1)
    with TestClient(create_decision_app(settings, updaters=True), base_url="http://127.0.0.1") as client:
        served = _serve(client, sim, key, steps, "live")
        live_version = int(client.get("/policies").json()[-1]["live_version"]) if client else 1
    say(f"served {served:,} decisions of LinTS vs control through /decide; live version now v{live_version}")

    # 4. the A/B result and the ledger entry
    ab = Monitor(client=settings).put_experiment_id(experiment_id=exp.id).get_abtest_result()
    registry.stop(exp.id, "the demo's traffic ended", actor="demo")
    ledger.close(exp.id)
    entries = ledger.entries(exp.id)
    return DecisionLoopResult(exp.id, logged + served, ope.table, ab, entries, live_version)


def _value(table: pd.DataFrame, candidate: str, estimator: str) -> float:
    row = table[(table["candidate"] == candidate) & (table["estimator"] == estimator)]
    return float(row["value"].iloc[0]) if len(row) else float("nan")


def show_decision_loop(settings: Settings, console: Console, *, n_customers: int, steps: int) -> DecisionLoopResult:
    """:func:`run_decision_loop` with the demo's tables: OPE from the store, the A/B result, the ledger."""
    from rich.table import Table

    with console.status("serving coupons through /decide…"):
        res = run_decision_loop(settings, n_customers=n_customers, steps=steps, console=console)
    ab = res.ab_result[["variant", "users", "value", "abs_lift", "abs_ci_lower", "abs_ci_upper", "p_value"]]
    table = Table(title=f"A/B result of experiment #{res.experiment_id}: revenue per customer, LinTS vs control")
    for col in ab.columns:
        table.add_column(str(col))
    for row in ab.itertuples(index=False):
        table.add_row(*[f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    ledger = Table(title="ledger: offline estimate (from the random-policy logs) beside the online value, per decision")
    for col in ("candidate", "estimator", "offline", "interval", "online", "covered"):
        ledger.add_column(col)
    for e in res.entries:
        if e.estimator in ("dm", "ips", "snips", "dr"):
            ledger.add_row(e.candidate, e.estimator, f"{e.offline_value:.3f}", f"[{e.offline_low:.3f}, {e.offline_high:.3f}]",
                           f"{e.online_value:.3f}" if e.online_value is not None else "open",
                           {True: "yes", False: "no", None: ""}[e.covered])
    console.print(ledger)
    return res
