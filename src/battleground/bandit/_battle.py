"""One call for a short bandit battle (the demo's): collect, train, evaluate, compare, OPE, reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from battleground.bandit._compare import AgentComparison
    from battleground.settings import Settings

__all__ = ["BattleResult", "run_battle"]


@dataclass(frozen=True)
class BattleResult:
    """What a battle produced.

    ``summary``: one row per agent (all customers): accumulated revenue (mean, std over trajectories),
    demand, retention, category penetration, empirical discount, mean coupon level.
    ``segments``: the same per price-sensitivity segment. ``ope``: every estimator's value of
    ``ope_agent`` from fresh random-policy logs, with ``true_value``, ``error`` and ``covers_truth``.
    ``comparisons``: the top agent against every other agent and the baselines (best fixed arm, myopic
    oracle), paired by customer. ``winner``: the top agent only when it beats every other agent (the
    whole interval above zero), else ``"no clear winner"``.
    """

    summary: pd.DataFrame = field(repr=False)
    segments: pd.DataFrame = field(repr=False)
    ope: pd.DataFrame = field(repr=False)
    ope_agent: str
    ope_true_value: float
    winner: str
    comparisons: list[AgentComparison]
    experiment_dir: Path
    report_path: Path
    ope_report_path: Path


def run_battle(
    settings: Settings,
    *,
    n_customers: int = 300,
    n_steps: int = 10,
    agents: Sequence[str] = ("linear_ts", "linear_ucb", "epsilon_greedy", "random"),
    seed: int = 0,
    n_trajectories: int = 2,
    tune_trials: int = 0,
    experiment_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> BattleResult:
    """Run a short battle of ``agents`` on the retail simulator and return its tables and reports.

    Random logs of ``n_steps`` steps train every agent offline (tuned first with ``tune_trials``
    Optuna trials when > 0); each is then evaluated on ``n_trajectories`` trajectories of ``n_steps``
    steps. The first non-random agent is also scored off-policy from fresh random logs. Everything is
    written under ``experiment_dir`` (default ``settings.home / "bandit" / "battle"``).
    """
    from battleground.bandit import workflow as wf
    from battleground.bandit._baselines import evaluate_baselines
    from battleground.bandit._config import load_config
    from battleground.bandit._report import render_ope_report, render_report

    agents = list(dict.fromkeys(agents))
    if not agents:
        raise ValueError("agents must name at least one agent")
    for agent in agents:
        wf._check_agent(agent)
    root = Path(experiment_dir) if experiment_dir is not None else settings.home / "bandit" / "battle"
    exp = wf.ExperimentDir(root)
    config = load_config(None, [
        f"simulator.n_customers={int(n_customers)}", f"simulator.seed={int(seed)}",
        f"collect.n_steps={int(n_steps)}", f"collect.seed={int(seed) + 1}",
        f"eval.n_steps={int(n_steps)}", f"eval.n_trajectories={int(n_trajectories)}", f"eval.seed={int(seed) + 100}",
        f"tune.n_trials={max(int(tune_trials), 1)}", f"tune.n_steps={int(n_steps)}", "tune.n_trajectories=1",
        f"tune.seed={int(seed)}", f"train.seed={int(seed)}", f"ope.seed={int(seed)}", f"ope.n_steps={max(int(n_steps) // 2, 1)}",
        *overrides,
    ])
    for agent in agents:
        best = exp.agent(agent) / "best_params.json"
        if best.exists():
            best.unlink()  # a battle is self-contained: earlier tuning runs do not leak in
    for old in exp.root.glob("*/trained/eval_result/trajectory_*.csv"):
        old.unlink()
    wf.collect(config, exp)
    for agent in agents:
        if tune_trials > 0 and agent != "random":
            wf.tune(config, exp, agent)
        wf.train(config, exp, agent)
        wf.evaluate(config, exp, agent)
    evaluate_baselines(config, exp.root)
    wf.segment(config, exp)
    metrics = wf.compute_metrics(config, exp, agents)
    ope_agent = next((a for a in agents if a != "random"), agents[0])
    ope = wf.off_policy_evaluation(config, exp, ope_agent)
    ope_report = render_ope_report(ope)
    report = render_report(exp)  # after the OPE: its forest plot goes into the battle report too
    summary = metrics.all_customers.drop(columns=["segment"]).sort_values("accumulated_revenue", ascending=False).reset_index(drop=True)
    columns: list[Any] = ["estimator", "value", "ci_low", "ci_high", "true_value", "error", "covers_truth"]
    return BattleResult(
        summary=summary,
        segments=metrics.segmented,
        ope=ope.table[columns].copy(),
        ope_agent=ope_agent,
        ope_true_value=ope.true_value,
        winner=_winner(metrics.comparisons, agents),
        comparisons=metrics.comparisons,
        experiment_dir=root,
        report_path=report,
        ope_report_path=ope_report,
    )


def _winner(comparisons: Sequence[AgentComparison], agents: Sequence[str]) -> str:
    rivals = [c for c in comparisons if c.agent_b in agents]
    if comparisons and all(c.a_beats_b for c in rivals):
        return comparisons[0].agent_a
    return "no clear winner"
