"""RetailSynth's coupon workflow as plain functions of a config and an experiment directory.

``collect`` (uniform-random logs) → ``tune`` (Optuna) → ``train`` (offline, from the logs) →
``evaluate`` (trajectories in the simulator) → ``segment`` (price-sensitivity quantiles) →
``compute_metrics`` (per agent, all customers and per segment) → ``render_report`` (HTML). ``sweep``
runs an ablation or sensitivity study on an executor; ``off_policy_evaluation`` estimates a trained
policy's value from the random logs with every :mod:`battleground.ope` estimator and sets it beside
the true value from the simulator.

The experiment directory (the layout of seed ``003``, with CSV/JSON/NPZ instead of pickles)::

    <experiment>/
      config.yaml                      the resolved configuration of the last step run
      offline_data/logs.npz            context, action, reward, pscore, step, customer, q_true
      <agent>/tuning_log.csv           one row per trial: params, revenue mean/std, training loss
      <agent>/best_params.json
      <agent>/trained/policy.npz       the saved policy (battleground.bandit.load_policy)
      <agent>/trained/agent_cfg.yaml   its agent name, parameters and simulator
      <agent>/trained/train_curve.csv  progressive-validation loss per logged step
      <agent>/trained/eval_result/trajectory_000.csv …
      summary/segments.csv, all_customers.csv, segmented.csv, arm_frequencies.csv,
      summary/revenue_by_step.csv, summary.json
      sweep/results.csv, ope/ope_table.csv, ope/summary.json
      report.html, ope/report.html
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from battleground.bandit._base import BasePolicy, load_policy
from battleground.bandit._config import ConfigError, dump_config
from battleground.bandit._policies import AGENTS, make_policy
from battleground.bandit.simulator import RetailSimulator
from battleground.errors import BanditError

if TYPE_CHECKING:
    import pandas as pd

    from battleground.bandit._compare import AgentComparison
    from battleground.bandit._executors import Executor

__all__ = [
    "ExperimentDir",
    "MissingArtifactError",
    "OPEResult",
    "SweepJob",
    "TuneResult",
    "agent_params",
    "collect",
    "compute_metrics",
    "evaluate",
    "load_logs",
    "make_simulator",
    "off_policy_evaluation",
    "rollout",
    "run_sweep_job",
    "segment",
    "sweep",
    "train",
    "train_offline",
    "tune",
]

class MissingArtifactError(BanditError, FileNotFoundError, LookupError):
    """A step needs the output of an earlier step that has not run (the message names the command)."""


# Seeds of the simulator's step draws, one stream per purpose (see RetailSimulator.reset).
_COLLECT, _TUNE, _EVAL, _SWEEP, _OPE = 1, 2, 3, 4, 5
RETENTION_WINDOW = 3


def _check_agent(agent: str) -> str:
    if agent not in AGENTS:
        raise ConfigError(f"unknown agent {agent!r}; choose one of {sorted(AGENTS)}")
    return agent


def _positive_int(section: str, key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{section}.{key} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ExperimentDir:
    """Paths of one experiment's artifacts (nothing is created until a step writes)."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "offline_data" / "logs.npz"

    def agent(self, agent: str) -> Path:
        return self.root / _check_agent(agent)

    def trained(self, agent: str) -> Path:
        return self.agent(agent) / "trained"

    def policy(self, agent: str) -> Path:
        return self.trained(agent) / "policy.npz"

    def eval_results(self, agent: str) -> Path:
        return self.trained(agent) / "eval_result"

    @property
    def summary(self) -> Path:
        return self.root / "summary"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def ope(self) -> Path:
        return self.root / "ope"

    @property
    def sweep(self) -> Path:
        return self.root / "sweep"

    def evaluated_agents(self) -> list[str]:
        """Agents with evaluation trajectories, in the order of :data:`AGENTS`."""
        return [a for a in AGENTS if any(self.eval_results(a).glob("trajectory_*.csv"))]


# -- simulator, logs, rollouts ----------------------------------------------------------------
def make_simulator(config: Mapping[str, Any]) -> RetailSimulator:
    """The simulator of ``config["simulator"]`` (errors name the bad key)."""
    params = dict(config["simulator"])
    try:
        return RetailSimulator(**params)
    except TypeError as exc:
        valid = sorted(RetailSimulator(**{}).get_params())
        raise ConfigError(f"simulator: bad keys {sorted(params)}; valid keys: {valid}") from exc


def _episode(purpose: int, seed: int, index: int = 0) -> tuple[int, int, int]:
    return (purpose, int(seed), int(index))


@dataclass(frozen=True)
class Rollout:
    """One trajectory, arrays of shape (n_steps, n_customers)."""

    actions: NDArray[np.int64]
    propensities: NDArray[np.float64]
    rewards: NDArray[np.float64]
    demand: NDArray[np.int64]
    visits: NDArray[np.bool_]
    categories: NDArray[np.int64]
    gross: NDArray[np.float64]

    @property
    def revenue_per_customer(self) -> float:
        """Accumulated revenue per customer (the tuning objective)."""
        return float(self.rewards.sum() / self.rewards.shape[1])

    def to_frame(self, trajectory: int = 0) -> pd.DataFrame:
        import pandas as pd

        t, n = self.rewards.shape
        return pd.DataFrame(
            {
                "trajectory": np.full(t * n, trajectory, dtype=np.int64),
                "step": np.repeat(np.arange(t), n),
                "customer": np.tile(np.arange(n), t),
                "action": self.actions.ravel(),
                "propensity": self.propensities.ravel(),
                "reward": self.rewards.ravel(),
                "demand": self.demand.ravel(),
                "visit": self.visits.ravel().astype(np.int8),
                "categories": self.categories.ravel(),
                "gross": self.gross.ravel(),
            }
        )


def rollout(
    policy: BasePolicy,
    sim: RetailSimulator,
    *,
    n_steps: int,
    episode: int | Sequence[int] | None = None,
    online_update: bool = True,
) -> Rollout:
    """Let ``policy`` choose every customer's coupon for ``n_steps`` steps (learning online unless told not to)."""
    x = sim.reset(episode=episode)
    n = sim.n_customers
    out = {
        "actions": np.empty((n_steps, n), dtype=np.int64),
        "propensities": np.empty((n_steps, n)),
        "rewards": np.empty((n_steps, n)),
        "demand": np.empty((n_steps, n), dtype=np.int64),
        "visits": np.empty((n_steps, n), dtype=bool),
        "categories": np.empty((n_steps, n), dtype=np.int64),
        "gross": np.empty((n_steps, n)),
    }
    for t in range(n_steps):
        decision = policy.select(x)
        res = sim.step(decision.actions)
        if online_update:
            policy.update(x, decision.actions, res.rewards)
        out["actions"][t] = decision.actions
        out["propensities"][t] = decision.propensities
        out["rewards"][t] = res.rewards
        out["demand"][t] = res.demand
        out["visits"][t] = res.visits
        out["categories"][t] = res.categories
        out["gross"][t] = res.gross
        x = sim.contexts()
    return Rollout(**out)


def _random_logs(config: Mapping[str, Any], *, n_steps: int, seed: int, purpose: int) -> dict[str, NDArray[Any]]:
    from battleground.bandit._policies import RandomPolicy

    sim = make_simulator(config)
    policy = RandomPolicy(n_arms=sim.n_arms, random_state=seed)
    x = sim.reset(episode=_episode(purpose, seed))
    parts: dict[str, list[NDArray[Any]]] = {k: [] for k in ("context", "action", "reward", "pscore", "step", "customer", "q_true")}
    for t in range(n_steps):
        parts["q_true"].append(sim.expected_revenue())
        decision = policy.select(x)
        res = sim.step(decision.actions)
        parts["context"].append(x)
        parts["action"].append(decision.actions)
        parts["reward"].append(res.rewards)
        parts["pscore"].append(decision.propensities)
        parts["step"].append(np.full(sim.n_customers, t, dtype=np.int64))
        parts["customer"].append(np.arange(sim.n_customers))
        x = sim.contexts()
    return {k: np.concatenate(v) for k, v in parts.items()}


def _save_logs(arrays: Mapping[str, NDArray[Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    payload: dict[str, Any] = dict(arrays)
    np.savez_compressed(tmp, **payload)
    tmp.replace(path)
    return path


def collect(config: Mapping[str, Any], exp: ExperimentDir) -> Path:
    """Log a uniform-random policy in the simulator: contexts, actions, rewards, propensities, and the
    exact expected revenue of every arm in every logged round (``q_true``, the ground truth of OPE)."""
    cfg = config["collect"]
    n_steps = _positive_int("collect", "n_steps", cfg["n_steps"])
    logs = _random_logs(config, n_steps=n_steps, seed=int(cfg["seed"]), purpose=_COLLECT)
    _save_logs(logs, exp.logs)
    dump_config(config, exp.root / "config.yaml")
    return exp.logs


def load_logs(exp: ExperimentDir) -> dict[str, NDArray[Any]]:
    """The random-policy logs written by :func:`collect`."""
    if not exp.logs.exists():
        raise MissingArtifactError(f"no offline logs at {exp.logs}; run `battleground bandit collect` first")
    with np.load(exp.logs, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# -- agents: parameters, offline training ----------------------------------------------------
def agent_params(config: Mapping[str, Any], agent: str, exp: ExperimentDir | None = None) -> dict[str, Any]:
    """The agent's hyperparameters: ``config["agents"][agent]``, replaced by the tuned ones if any."""
    _check_agent(agent)
    params = dict(config["agents"].get(agent) or {})
    if exp is not None:
        best = exp.agent(agent) / "best_params.json"
        if best.exists():
            params.update(json.loads(best.read_text()))
    return params


def build_policy(agent: str, params: Mapping[str, Any], n_arms: int, seed: int) -> BasePolicy:
    clean = {k: v for k, v in params.items() if k not in {"n_arms", "random_state"}}
    return make_policy(_check_agent(agent), n_arms=n_arms, random_state=int(seed), **clean)


def _predicted_reward(policy: BasePolicy, x: NDArray[np.float64], a: NDArray[np.int64]) -> NDArray[np.float64]:
    if not policy.is_fitted:
        return np.zeros(x.shape[0])
    theta = getattr(policy, "theta_", None)
    if theta is not None:
        return np.asarray((x * theta[a]).sum(axis=1), dtype=np.float64)
    sums = getattr(policy, "reward_sums_", np.zeros(policy.n_arms))
    means = sums / np.maximum(policy.counts_, 1)
    return np.asarray(means[a], dtype=np.float64)


def train_offline(policy: BasePolicy, logs: Mapping[str, NDArray[Any]]) -> tuple[BasePolicy, pd.DataFrame]:
    """Replay the logs one logged step at a time (one ``update`` each, so ``gamma`` forgets per step).

    The training curve is progressive validation: each step's squared error of the policy's reward
    prediction for the logged action, measured before the policy learns from that step.
    """
    import pandas as pd

    policy.reset()
    steps = logs["step"]
    rows = []
    for t in np.unique(steps):
        sel = steps == t
        x, a, r = logs["context"][sel], logs["action"][sel].astype(np.int64), logs["reward"][sel]
        if not policy.is_fitted:
            policy._init_state(x.shape[1])
        pred = _predicted_reward(policy, x, a)
        rows.append({"step": int(t), "n_rounds": int(sel.sum()), "mse": float(np.mean((r - pred) ** 2)), "mean_reward": float(r.mean())})
        policy.update(x, a, r)
    return policy, pd.DataFrame(rows)


@dataclass(frozen=True)
class TuneResult:
    """The best parameters of an Optuna study and its trial log."""

    agent: str
    best_params: dict[str, Any]
    best_value: float
    trials: pd.DataFrame = field(repr=False)
    path: Path


def _suggest(trial: Any, name: str, spec: Any) -> Any:
    if isinstance(spec, Mapping) and "choices" in spec:
        return trial.suggest_categorical(name, list(spec["choices"]))
    if isinstance(spec, list | tuple) and len(spec) in (2, 3):
        low, high = spec[0], spec[1]
        log = len(spec) == 3 and spec[2] == "log"
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return trial.suggest_int(name, low, high, log=log)
        return trial.suggest_float(name, float(low), float(high), log=log)
    raise ConfigError(
        f"tune.space entry {name!r} must be [low, high], [low, high, 'log'] or {{choices: [...]}}, got {spec!r}"
    )


def _revenue(agent: str, params: Mapping[str, Any], config: Mapping[str, Any], logs: Mapping[str, NDArray[Any]],
             *, purpose: int, seed: int, n_trajectories: int, n_steps: int, online_update: bool) -> tuple[list[float], float]:
    """Accumulated revenue per customer over trajectories of an agent trained offline on ``logs``."""
    sim = make_simulator(config)
    base, curve = train_offline(build_policy(agent, params, sim.n_arms, seed), logs)
    loss = float(curve["mse"].iloc[-1]) if len(curve) else math.nan
    values = []
    for i in range(n_trajectories):
        policy = _copy_policy(base)
        values.append(rollout(policy, sim, n_steps=n_steps, episode=_episode(purpose, seed, i), online_update=online_update).revenue_per_customer)
    return values, loss


def _copy_policy(policy: BasePolicy) -> BasePolicy:
    """An independent copy with the same learned state and random generator."""
    import copy

    return copy.deepcopy(policy)


def tune(config: Mapping[str, Any], exp: ExperimentDir, agent: str) -> TuneResult:
    """Optuna (seeded TPE) over ``tune.space[agent]``; objective: the mean accumulated revenue per
    customer over ``tune.n_trajectories`` trajectories of the agent trained offline on the logs."""
    import optuna
    import pandas as pd

    _check_agent(agent)
    cfg = config["tune"]
    n_trials = _positive_int("tune", "n_trials", cfg["n_trials"])
    n_traj = _positive_int("tune", "n_trajectories", cfg["n_trajectories"])
    n_steps = _positive_int("tune", "n_steps", cfg["n_steps"])
    seed = int(cfg["seed"])
    space = dict((cfg.get("space") or {}).get(agent) or {})
    logs = load_logs(exp)
    online = bool(config["eval"].get("online_update", True))
    fixed = agent_params(config, agent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial: Any) -> float:
        params = {**fixed, **{name: _suggest(trial, name, spec) for name, spec in space.items()}}
        values, loss = _revenue(agent, params, config, logs, purpose=_TUNE, seed=seed, n_trajectories=n_traj,
                                n_steps=n_steps, online_update=online)
        trial.set_user_attr("revenue_std", float(np.std(values)))
        trial.set_user_attr("train_loss", loss)
        return float(np.mean(values))

    study.optimize(objective, n_trials=n_trials if space else 1)
    rows = []
    for t in study.trials:
        rows.append({"trial": t.number, **{f"param_{k}": v for k, v in t.params.items()},
                     "revenue_mean": t.value, "revenue_std": t.user_attrs.get("revenue_std"),
                     "train_loss": t.user_attrs.get("train_loss")})
    trials = pd.DataFrame(rows)
    out = exp.agent(agent)
    out.mkdir(parents=True, exist_ok=True)
    trials.to_csv(out / "tuning_log.csv", index=False)
    best = dict(study.best_params)
    (out / "best_params.json").write_text(json.dumps(best, indent=2))
    dump_config(config, exp.root / "config.yaml")
    return TuneResult(agent, best, float(study.best_value), trials, out / "tuning_log.csv")


def train(config: Mapping[str, Any], exp: ExperimentDir, agent: str) -> Path:
    """Train the agent offline from the logs with its (tuned) parameters; save policy, config, curve."""
    sim = make_simulator(config)
    params = agent_params(config, agent, exp)
    seed = int(config["train"]["seed"])
    policy, curve = train_offline(build_policy(agent, params, sim.n_arms, seed), load_logs(exp))
    out = exp.trained(agent)
    out.mkdir(parents=True, exist_ok=True)
    policy.save(out / "policy.npz")
    dump_config({"agent": agent, "params": params, "policy": policy.get_params(), "simulator": dict(config["simulator"])},
                out / "agent_cfg.yaml")
    curve.to_csv(out / "train_curve.csv", index=False)
    dump_config(config, exp.root / "config.yaml")
    return out / "policy.npz"


def evaluate(config: Mapping[str, Any], exp: ExperimentDir, agent: str) -> list[float]:
    """Simulate ``eval.n_trajectories`` trajectories of the trained agent (each from the saved policy);
    returns the accumulated revenue per customer of each."""
    cfg = config["eval"]
    n_traj = _positive_int("eval", "n_trajectories", cfg["n_trajectories"])
    n_steps = _positive_int("eval", "n_steps", cfg["n_steps"])
    path = exp.policy(agent)
    if not path.exists():
        raise MissingArtifactError(f"no trained {agent} policy at {path}; run `battleground bandit train --agent {agent}` first")
    sim = make_simulator(config)
    out = exp.eval_results(agent)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("trajectory_*.csv"):
        old.unlink()
    values = []
    for i in range(n_traj):
        policy = load_policy(path)
        traj = rollout(policy, sim, n_steps=n_steps, episode=_episode(_EVAL, cfg["seed"], i),
                       online_update=bool(cfg.get("online_update", True)))
        traj.to_frame(i).to_csv(out / f"trajectory_{i:03d}.csv", index=False)
        values.append(traj.revenue_per_customer)
    dump_config(config, exp.root / "config.yaml")
    return values


# -- segments and metrics ----------------------------------------------------------------------
def segment(config: Mapping[str, Any], exp: ExperimentDir) -> pd.DataFrame:
    """Customers by price-sensitivity quantiles (Q1 = least sensitive); writes ``summary/segments.csv``."""
    import pandas as pd

    k = _positive_int("segment", "n_segments", config["segment"]["n_segments"])
    table = make_simulator(config).customers()
    sens = table["price_sensitivity"]
    ranks = np.argsort(np.argsort(sens, kind="stable"), kind="stable")
    idx = (ranks * k) // sens.shape[0]
    names = [f"Q{i + 1}" + (" (least price-sensitive)" if i == 0 else " (most price-sensitive)" if i == k - 1 else "") for i in range(k)]
    frame = pd.DataFrame({"customer": table["customer"], "price_sensitivity": sens, "segment_index": idx,
                          "segment": [names[i] for i in idx]})
    exp.summary.mkdir(parents=True, exist_ok=True)
    frame.to_csv(exp.summary / "segments.csv", index=False)
    return frame


def _popcount(values: NDArray[np.int64]) -> NDArray[np.int64]:
    v = values.astype(np.uint64)
    count = np.zeros(v.shape, dtype=np.int64)
    while v.any():
        count += (v & np.uint64(1)).astype(np.int64)
        v = v >> np.uint64(1)
    return count


def _metric_rows(frame: pd.DataFrame, n_categories: int) -> dict[str, float]:
    """Metrics of one trajectory over one group of customers."""
    n_cust = frame["customer"].nunique()
    last = frame["step"].max()
    recent = frame[frame["step"] > last - RETENTION_WINDOW]
    retained = recent.groupby("customer")["visit"].max()
    cats = frame.groupby("customer")["categories"].agg(lambda s: np.bitwise_or.reduce(s.to_numpy()))
    gross = float(frame["gross"].sum())
    return {
        "n_customers": float(n_cust),
        "accumulated_revenue": float(frame["reward"].sum()) / n_cust,
        "accumulated_demand": float(frame["demand"].sum()) / n_cust,
        "retention": float(retained.mean()),
        "category_penetration": float(_popcount(cats.to_numpy()).mean()) / n_categories,
        "empirical_discount": 1.0 - float(frame["reward"].sum()) / gross if gross > 0 else 0.0,
        "mean_coupon_level": float(frame["action"].mean()),
    }


METRICS = ("accumulated_revenue", "accumulated_demand", "retention", "category_penetration", "empirical_discount", "mean_coupon_level")


@dataclass(frozen=True)
class MetricsResult:
    """Per agent and segment (``all`` = every customer): mean and std over trajectories."""

    all_customers: pd.DataFrame = field(repr=False)
    segmented: pd.DataFrame = field(repr=False)
    arm_frequencies: pd.DataFrame = field(repr=False)
    revenue_by_step: pd.DataFrame = field(repr=False)
    path: Path
    comparisons: list[AgentComparison] = field(default_factory=list)
    """The best agent against every other agent and baseline (paired by customer)."""


def compute_metrics(config: Mapping[str, Any], exp: ExperimentDir, agents: Sequence[str] | None = None) -> MetricsResult:
    """Accumulated revenue and demand, retention (a visit within the last 3 steps), category
    penetration, empirical discount and arm frequencies, for all customers and per segment."""
    import pandas as pd

    agents = list(agents) if agents else exp.evaluated_agents()
    if not agents:
        raise MissingArtifactError(f"no evaluation trajectories under {exp.root}; run `battleground bandit eval` first")
    seg_path = exp.summary / "segments.csv"
    segments = pd.read_csv(seg_path) if seg_path.exists() else segment(config, exp)
    n_categories = int(config["simulator"]["n_categories"])
    n_arms = int(config["simulator"]["n_coupon_levels"])
    per_traj: list[dict[str, Any]] = []
    arms: list[dict[str, Any]] = []
    by_step: list[dict[str, Any]] = []
    from battleground.bandit._baselines import BASELINES, baseline_results
    from battleground.bandit._compare import compare_agents

    baselines = [b for b in BASELINES if any(baseline_results(exp.root, b).glob("trajectory_*.csv"))]
    per_customer: dict[str, list[NDArray[np.float64]]] = {}
    n_customers = len(segments)
    for agent in [*agents, *baselines]:
        folder = baseline_results(exp.root, agent) if agent in BASELINES else exp.eval_results(agent)
        files = sorted(folder.glob("trajectory_*.csv"))
        if not files:
            raise MissingArtifactError(f"no evaluation trajectories for {agent}; run `battleground bandit eval --agent {agent}`")
        for f in files:
            traj = pd.read_csv(f).merge(segments[["customer", "segment"]], on="customer", how="left")
            tid = int(traj["trajectory"].iloc[0])
            per_customer.setdefault(agent, []).append(
                np.bincount(traj["customer"].to_numpy(), weights=traj["reward"].to_numpy(), minlength=n_customers).astype(np.float64))
            groups = [("all", traj), *((str(name), g) for name, g in traj.groupby("segment", sort=True))]
            for name, g in groups:
                per_traj.append({"agent": agent, "segment": name, "trajectory": tid, **_metric_rows(g, n_categories)})
                counts = np.bincount(g["action"].to_numpy(), minlength=n_arms)
                for arm, c in enumerate(counts):
                    arms.append({"agent": agent, "segment": name, "trajectory": tid, "arm": arm, "share": c / counts.sum()})
            step = traj.groupby("step")["reward"].mean()
            by_step.extend({"agent": agent, "trajectory": tid, "step": int(str(s)), "revenue": float(v)} for s, v in step.items())
    raw = pd.DataFrame(per_traj)
    agg = raw.groupby(["agent", "segment"], sort=False)
    summary = agg[list(METRICS)].mean()
    spread = agg[["accumulated_revenue", "accumulated_demand"]].std(ddof=0).add_suffix("_std")
    table = summary.join(spread).join(agg["n_customers"].first()).join(agg.size().rename("n_trajectories")).reset_index()
    arm_freq = pd.DataFrame(arms).groupby(["agent", "segment", "arm"], sort=False)["share"].mean().reset_index()
    steps = pd.DataFrame(by_step).groupby(["agent", "step"], sort=False)["revenue"].mean().reset_index()
    out = exp.summary
    out.mkdir(parents=True, exist_ok=True)
    all_customers = table[table["segment"] == "all"].reset_index(drop=True)
    segmented = table[table["segment"] != "all"].reset_index(drop=True)
    all_customers.to_csv(out / "all_customers.csv", index=False)
    segmented.to_csv(out / "segmented.csv", index=False)
    arm_freq.to_csv(out / "arm_frequencies.csv", index=False)
    steps.to_csv(out / "revenue_by_step.csv", index=False)
    raw.to_csv(out / "per_trajectory.csv", index=False)
    # The best agent (by mean) against every other agent and baseline, paired by customer.
    top = str(all_customers[all_customers["agent"].isin(agents)].sort_values("accumulated_revenue", ascending=False)["agent"].iloc[0])
    comparisons = [compare_agents(top, np.array(per_customer[top]), other, np.array(per_customer[other]))
                   for other in [*agents, *baselines] if other != top]
    pd.DataFrame([c.to_dict() for c in comparisons]).to_csv(out / "comparisons.csv", index=False)
    (out / "summary.json").write_text(json.dumps({
        "agents": agents,
        "all_customers": all_customers.to_dict(orient="records"),
        "segmented": segmented.to_dict(orient="records"),
        "baselines": baselines,
        "comparisons": [c.to_dict() for c in comparisons],
    }, indent=2))
    return MetricsResult(all_customers, segmented, arm_freq, steps, out, comparisons)


# -- sweeps ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepJob:
    """One point of a sweep: an agent with parameters, trained offline and evaluated by simulation."""

    label: str
    agent: str
    params: dict[str, Any]
    config: dict[str, Any]
    logs_path: str
    n_trajectories: int
    n_steps: int
    seed: int


def run_sweep_job(job: SweepJob) -> dict[str, Any]:
    """Run one sweep job (a module-level function: it runs in another process or on Ray)."""
    from battleground.settings import quiet_third_party_telemetry

    quiet_third_party_telemetry()
    with np.load(job.logs_path, allow_pickle=False) as data:
        logs = {k: data[k] for k in data.files}
    values, loss = _revenue(job.agent, job.params, job.config, logs, purpose=_SWEEP, seed=job.seed,
                            n_trajectories=job.n_trajectories, n_steps=job.n_steps,
                            online_update=bool(job.config["eval"].get("online_update", True)))
    return {"label": job.label, "agent": job.agent, "params": json.dumps(job.params, sort_keys=True),
            "revenue_mean": float(np.mean(values)), "revenue_std": float(np.std(values)),
            "n_trajectories": job.n_trajectories, "train_loss": loss}


def sweep_jobs(config: Mapping[str, Any], exp: ExperimentDir) -> list[SweepJob]:
    """Every agent of ``sweep.agents`` at its (tuned) parameters, then each point of ``sweep.grid``."""
    import itertools

    cfg = config["sweep"]
    n_traj = _positive_int("sweep", "n_trajectories", cfg["n_trajectories"])
    n_steps = _positive_int("sweep", "n_steps", cfg["n_steps"])
    seed = int(cfg["seed"])
    if not exp.logs.exists():
        raise MissingArtifactError(f"no offline logs at {exp.logs}; run `battleground bandit collect` first")
    plain = json.loads(json.dumps(dict(config)))
    jobs = []
    for agent in cfg["agents"]:
        params = agent_params(config, agent, exp)
        jobs.append(SweepJob(agent, agent, params, plain, str(exp.logs), n_traj, n_steps, seed))
    for agent, grid in (cfg.get("grid") or {}).items():
        base = agent_params(config, agent, exp)
        names = sorted(grid)
        values = [v if isinstance(v, list) else [v] for v in (grid[n] for n in names)]
        for combo in itertools.product(*values):
            point = dict(zip(names, combo, strict=True))
            label = f"{agent}(" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")"
            jobs.append(SweepJob(label, agent, {**base, **point}, plain, str(exp.logs), n_traj, n_steps, seed))
    return jobs


def sweep(config: Mapping[str, Any], exp: ExperimentDir, executor: Executor) -> pd.DataFrame:
    """Run the sweep's jobs on ``executor``; writes ``sweep/results.csv`` (best first)."""
    import pandas as pd

    jobs = sweep_jobs(config, exp)
    results = executor.map(run_sweep_job, jobs)
    frame = pd.DataFrame(results).sort_values("revenue_mean", ascending=False, kind="stable").reset_index(drop=True)
    frame["executor"] = executor.name
    exp.sweep.mkdir(parents=True, exist_ok=True)
    frame.to_csv(exp.sweep / "results.csv", index=False)
    # Beside the results, not the experiment's config.yaml: a sweep's grid and overrides are for this
    # run only and must not leak into later commands.
    dump_config(config, exp.sweep / "config.yaml")
    return frame


# -- off-policy evaluation ---------------------------------------------------------------------
@dataclass(frozen=True)
class OPEResult:
    """Every estimator's value of ``agent`` from the random logs, beside the truth from the simulator.

    ``true_value`` is the exact expected revenue per round of the policy on the logged rounds (the
    estimand of every estimator); ``simulated_value`` is the mean revenue per round when the frozen
    policy is deployed in the simulator for as many steps (its own state distribution).
    """

    agent: str
    table: pd.DataFrame = field(repr=False)
    true_value: float
    simulated_value: float
    logging_value: float
    diagnostics: dict[str, Any]
    path: Path


def off_policy_evaluation(config: Mapping[str, Any], exp: ExperimentDir, agent: str) -> OPEResult:
    """Estimate the trained ``agent``'s value with every estimator from fresh random-policy logs
    (``ope.n_steps`` steps of every customer, not the training logs), beside its true value."""
    import warnings

    from battleground.ope import OPEReliabilityWarning, evaluate_policy

    cfg = config["ope"]
    path = exp.policy(agent)
    if path.exists():
        policy = load_policy(path)
    else:
        sim = make_simulator(config)
        params = agent_params(config, agent, exp)
        policy, _ = train_offline(build_policy(agent, params, sim.n_arms, int(config["train"]["seed"])), load_logs(exp))
    # Fresh random-policy logs: a policy trained on the very rounds it is scored on looks better than it is.
    n_steps = _positive_int("ope", "n_steps", cfg["n_steps"])
    logs = _random_logs(config, n_steps=n_steps, seed=int(cfg["seed"]), purpose=_OPE)
    _save_logs(logs, exp.ope / "logs.npz")
    context = logs["context"]
    dist = policy.action_dist(context)
    q_true = logs["q_true"]
    true_value = float((dist * q_true).sum(axis=1).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OPEReliabilityWarning)
        evaluation = evaluate_policy(
            logs["action"], logs["reward"], logs["pscore"], dist, context=context,
            lambda_=float(cfg["lambda_"]), ci=cfg["ci"], alpha=float(cfg["alpha"]),
            n_bootstrap=int(cfg["n_bootstrap"]), random_state=int(cfg["seed"]), n_folds=int(cfg["n_folds"]),
        )
    table = evaluation.to_frame()
    diagnostics = evaluation.diagnostics.to_dict()
    table["true_value"] = true_value
    table["error"] = table["value"] - true_value
    table["relative_error"] = table["error"] / abs(true_value) if true_value else math.nan
    table["covers_truth"] = (table["ci_low"] <= true_value) & (true_value <= table["ci_high"])
    sim = make_simulator(config)
    deployed = rollout(_copy_policy(policy), sim, n_steps=n_steps, episode=_episode(_OPE, cfg["seed"], 1), online_update=False)
    simulated_value = float(deployed.rewards.mean())
    logging_value = float(q_true.mean())
    out = exp.ope
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ope_table.csv", index=False)
    (out / "summary.json").write_text(json.dumps({
        "agent": agent, "n_rounds": int(context.shape[0]), "true_value": true_value,
        "simulated_value": simulated_value, "logging_policy_value": logging_value,
        "diagnostics": diagnostics, "table": table.to_dict(orient="records"),
    }, indent=2, default=str))
    return OPEResult(agent, table, true_value, simulated_value, logging_value, diagnostics, out)
