"""Bandit benchmarks (issue 6, parts 2–3).

1. Per-round API (one context in, one decision with its propensity out, one update), K = 10, d = 5:
   LinTS against a naive per-arm numpy loop that samples θ_k ~ N(θ̂_k, A_k⁻¹) for every arm each round
   and inverts A after each update (measured in the same run; obp's recorded 2,371 rounds/s is the
   same algorithm). Target ≥ 10×. LinUCB and epsilon-greedy against obp's recorded 16,228 and 30,904
   rounds/s (obp does not install on Python 3.11). Target LinUCB ≥ 4×.
2. Batched API: decisions/s of ``select`` on 1M contexts (with propensities) after 100k updates.
   Target ≥ 500,000/s for LinTS and LinUCB.
3. Simulator: customer-steps/s at the default size (1,000 customers, 100 products, 10 categories).
4. LinTS (the tuned defaults) against the random policy on the default simulator: trained offline on
   30 logged random steps, then 3 evaluation trajectories of 30 steps; the revenue margin.

mabwiser and vowpalwabbit are compared when they are importable (they are not dependencies).
BLAS is limited to one thread (threadpoolctl): on a small shared machine OpenBLAS's threads on these
tiny matrices cost more than they save.

Run: ``python -m benchmarks bandit`` or ``python benchmarks/bench_bandit.py --quick``.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
import time
from typing import Any

import numpy as np

OBP_LINTS = 2_371  # rounds/s, obp 0.5.7, 100k rounds, K = 10, d = 5 (ANCHORS.md, recorded)
OBP_LINUCB = 16_228
OBP_EPS_GREEDY = 30_904
K, D = 10, 5


def _env(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)), rng.normal(size=(K, D)), rng


def per_round(policy: Any, n: int) -> float:
    x, theta, rng = _env(n)
    noise = rng.normal(0, 0.1, size=n)
    t0 = time.perf_counter()
    for i in range(n):
        xi = x[i]
        a, _p = policy.select_one(xi)
        policy.update_one(xi, a, float(theta[a] @ xi) + noise[i])
    return n / (time.perf_counter() - t0)


def naive_lints(n: int) -> float:
    """The textbook loop: sample every arm's θ from its posterior each round, invert after each update."""
    x, theta, rng = _env(n)
    noise = rng.normal(0, 0.1, size=n)
    a_mat = np.tile(np.eye(D), (K, 1, 1))
    a_inv = a_mat.copy()
    b = np.zeros((K, D))
    theta_hat = np.zeros((K, D))
    t0 = time.perf_counter()
    for i in range(n):
        xi = x[i]
        sampled = np.array([rng.multivariate_normal(theta_hat[k], a_inv[k]) for k in range(K)])
        a = int((sampled @ xi).argmax())
        r = float(theta[a] @ xi) + noise[i]
        a_mat[a] += np.outer(xi, xi)
        b[a] += r * xi
        a_inv[a] = np.linalg.inv(a_mat[a])
        theta_hat[a] = a_inv[a] @ b[a]
    return n / (time.perf_counter() - t0)


def batched(policy: Any, n_train: int, n_select: int) -> float:
    x, theta, rng = _env(n_train, seed=1)
    a = rng.integers(K, size=n_train)
    policy.update(x, a, (x * theta[a]).sum(axis=1) + rng.normal(0, 0.1, size=n_train))
    xs = rng.normal(size=(n_select, D))
    policy.select(xs[:1000])
    t0 = time.perf_counter()
    decision = policy.select(xs)
    elapsed = time.perf_counter() - t0
    assert decision.propensities.shape == (n_select,)
    return n_select / elapsed


def simulator_speed(n_steps: int) -> float:
    from battleground.bandit import RetailSimulator

    sim = RetailSimulator()
    sim.reset()
    actions = np.random.default_rng(0).integers(11, size=sim.n_customers)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        sim.step(actions)
        sim.contexts()
    return n_steps * sim.n_customers / (time.perf_counter() - t0)


def revenue_margin(n_log: int, n_eval: int, n_traj: int) -> tuple[float, float, float]:
    from battleground.bandit import RandomPolicy, RetailSimulator
    from battleground.bandit._config import load_config
    from battleground.bandit.workflow import _random_logs, build_policy, rollout, train_offline

    config = load_config(None, [f"collect.n_steps={n_log}"])
    logs = _random_logs(config, n_steps=n_log, seed=1, purpose=1)
    ts, _ = train_offline(build_policy("linear_ts", config["agents"]["linear_ts"], 11, 0), logs)
    sim = RetailSimulator(**config["simulator"])
    ts_rev = [rollout(copy.deepcopy(ts), sim, n_steps=n_eval, episode=(3, 100, i)).revenue_per_customer for i in range(n_traj)]
    rnd_rev = [rollout(RandomPolicy(random_state=i), sim, n_steps=n_eval, episode=(3, 100, i)).revenue_per_customer for i in range(n_traj)]
    return float(np.mean(ts_rev)), float(np.mean(rnd_rev)), float(np.mean(ts_rev) / np.mean(rnd_rev) - 1)


def _optional(name: str) -> str:
    return "installed" if importlib.util.find_spec(name) is not None else "not installed (not compared)"


def main(argv: list[str]) -> None:
    from threadpoolctl import threadpool_limits

    from battleground.bandit import EpsilonGreedy, LinTS, LinUCB

    quick = "--quick" in argv or os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    n_rounds = 20_000 if quick else 100_000
    n_naive = 1_000 if quick else 3_000
    n_select = 200_000 if quick else 1_000_000
    with threadpool_limits(limits=1, user_api="blas"):
        ts = per_round(LinTS(n_arms=K, variance_scale=0.1, random_state=0), n_rounds)
        naive = naive_lints(n_naive)
        ucb = per_round(LinUCB(n_arms=K, alpha=0.5, random_state=0), n_rounds)
        eps = per_round(EpsilonGreedy(n_arms=K, epsilon=0.1, random_state=0), n_rounds)
        print(f"per-round API, K={K}, d={D}, {n_rounds:,} rounds (select_one with propensity + update_one):")
        print(f"  LinTS           {ts:>11,.0f} rounds/s   naive per-arm numpy loop {naive:,.0f} rounds/s → {ts / naive:.1f}× "
              f"(target ≥ 10×; obp recorded {OBP_LINTS:,} → {ts / OBP_LINTS:.1f}×)")
        print(f"  LinUCB          {ucb:>11,.0f} rounds/s   obp recorded {OBP_LINUCB:,} → {ucb / OBP_LINUCB:.1f}× (target ≥ 4×)")
        print(f"  epsilon-greedy  {eps:>11,.0f} rounds/s   obp recorded {OBP_EPS_GREEDY:,} → {eps / OBP_EPS_GREEDY:.1f}×")
        b_ts = batched(LinTS(n_arms=K, variance_scale=0.1, random_state=0), 100_000, n_select)
        b_ucb = batched(LinUCB(n_arms=K, alpha=0.5, random_state=0), 100_000, n_select)
        b_ts_fresh = n_select / _time(lambda: LinTS(n_arms=K, random_state=0).select(np.random.default_rng(2).normal(size=(n_select, D))))
        print(f"batched select, {n_select:,} contexts after 100k updates (target ≥ 500,000/s):")
        print(f"  LinTS   {b_ts:>13,.0f} decisions/s (untrained, all arms tied: {b_ts_fresh:,.0f}/s)")
        print(f"  LinUCB  {b_ucb:>13,.0f} decisions/s")
    steps = 20 if quick else 50
    print(f"simulator (1,000 customers, 100 products, 10 categories): {simulator_speed(steps):,.0f} customer-steps/s")
    n_log, n_eval, n_traj = (20, 15, 2) if quick else (30, 30, 3)
    ts_rev, rnd_rev, margin = revenue_margin(n_log, n_eval, n_traj)
    print(f"LinTS vs random ({n_log} logged steps, {n_traj} trajectories × {n_eval} steps, 1,000 customers): "
          f"{ts_rev:,.2f} vs {rnd_rev:,.2f} accumulated revenue per customer → {100 * margin:+.2f} %")
    print(f"mabwiser: {_optional('mabwiser')}; vowpalwabbit: {_optional('vowpalwabbit')}")


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    main(sys.argv[1:])
