"""Reference points for the bandit report: the best fixed arm and the myopic oracle.

* **Best fixed arm**: the one coupon level that, given to every customer at every step, earns the most
  over the evaluation trajectories (chosen in hindsight, on those same trajectories: an optimistic bar).
* **Myopic oracle**: at each step, every customer's coupon maximising that step's *exact* expected
  revenue (``RetailSimulator.expected_revenue``). It knows the simulator but ignores the future (a
  coupon's effect on next step's visit habit), so a learning agent can beat it only through that.

Both replay the evaluation episodes (same customers, same luck) so they pair with the agents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from battleground.bandit._base import BasePolicy, Decision
from battleground.bandit.simulator import RetailSimulator

__all__ = ["BASELINES", "baseline_results", "evaluate_baselines"]

BASELINES: tuple[str, ...] = ("best_fixed_arm", "myopic_oracle")


def baseline_results(root: Path, name: str) -> Path:
    """Where a baseline's evaluation trajectories live (beside the agents', not among them)."""
    return root / "baselines" / name / "eval_result"


class _Rule(BasePolicy):
    """A non-learning rule as a policy (propensity 1), so it runs through ``workflow.rollout``."""

    def __init__(self, n_arms: int = 11, random_state: int | None = None) -> None:
        self.n_arms = n_arms
        self.random_state = random_state
        self.choose: Callable[[NDArray[np.float64]], NDArray[np.int64]] = lambda x: np.zeros(x.shape[0], dtype=np.int64)

    def select(self, contexts: ArrayLike) -> Decision:
        x = np.asarray(contexts, dtype=np.float64)
        actions = np.asarray(self.choose(x), dtype=np.int64)
        return Decision(actions, np.ones(actions.shape[0]))

    def update(self, contexts: ArrayLike, actions: ArrayLike, rewards: ArrayLike) -> _Rule:
        return self


def _fixed(arm: int) -> Callable[[NDArray[np.float64]], NDArray[np.int64]]:
    return lambda x: np.full(x.shape[0], arm, dtype=np.int64)


def evaluate_baselines(config: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """Simulate both baselines on the evaluation episodes; write their trajectories; return a summary."""
    from battleground.bandit import workflow as wf

    cfg = config["eval"]
    n_traj = wf._positive_int("eval", "n_trajectories", cfg["n_trajectories"])
    n_steps = wf._positive_int("eval", "n_steps", cfg["n_steps"])
    sim: RetailSimulator = wf.make_simulator(config)
    episodes = [wf._episode(wf._EVAL, cfg["seed"], i) for i in range(n_traj)]

    def run(rule: _Rule) -> list[Any]:
        return [wf.rollout(rule, sim, n_steps=n_steps, episode=e, online_update=False) for e in episodes]

    per_arm = []
    for arm in range(sim.n_arms):
        rule = _Rule(sim.n_arms)
        rule.choose = _fixed(arm)
        trajs = run(rule)
        per_arm.append((float(np.mean([t.revenue_per_customer for t in trajs])), arm, trajs))
    best_value, best_arm, best_trajs = max(per_arm, key=lambda item: (item[0], -item[1]))
    oracle = _Rule(sim.n_arms)
    oracle.choose = lambda x: sim.expected_revenue().argmax(axis=1).astype(np.int64)
    oracle_trajs = run(oracle)
    summary = {
        "best_fixed_arm": {"arm": best_arm, "revenue_per_customer": best_value,
                           "by_arm": [v for v, _, _ in per_arm]},
        "myopic_oracle": {"revenue_per_customer": float(np.mean([t.revenue_per_customer for t in oracle_trajs]))},
    }
    for name, trajs in (("best_fixed_arm", best_trajs), ("myopic_oracle", oracle_trajs)):
        out = baseline_results(root, name)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("trajectory_*.csv"):
            old.unlink()
        for i, traj in enumerate(trajs):
            traj.to_frame(i).to_csv(out / f"trajectory_{i:03d}.csv", index=False)
    (root / "baselines" / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
