"""`battleground bandit …` commands: RetailSynth's coupon workflow on the retail simulator.

Every command reads the configuration in layers: the embedded defaults, the experiment's
``config.yaml`` (written by the previous step, so later steps see the same simulator), ``--config``
files, and trailing ``key=value`` overrides such as ``simulator.n_customers=200``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from battleground.cli._common import console, fail, load_settings, user_errors
from battleground.cli._table import (
    Column,
    Table,
    csv_option,
    json_option,
    output_format,
    print_tables,
)

if TYPE_CHECKING:
    from battleground.bandit.workflow import ExperimentDir

app = typer.Typer(help="Bandit policies on the retail simulator, and off-policy evaluation.", no_args_is_help=True)

AGENT_NAMES = ("linear_ts", "linear_ucb", "epsilon_greedy", "random")
_EXP_HELP = "Experiment directory (default: <BATTLEGROUND_HOME>/bandit/experiment)."
_CFG_HELP = "YAML config file(s), applied over the defaults and the experiment's config.yaml."
_OVR_HELP = "Config overrides, key=value (e.g. simulator.n_customers=200 agents.linear_ts.variance_scale=0.5)."
_AGENT_HELP = "Agent(s): linear_ts | linear_ucb | epsilon_greedy | random (repeat the option for several)."

_ExpOpt = typer.Option(None, "--experiment-dir", "-e", help=_EXP_HELP)
_CfgOpt = typer.Option(None, "--config", "-c", help=_CFG_HELP)
_OvrArg = typer.Argument(None, help=_OVR_HELP, show_default=False)


def _agents_opt(default: list[str]) -> Any:
    return typer.Option(default, "--agent", "-a", help=_AGENT_HELP)


def _setup(experiment_dir: Path | None, config: list[Path] | None, overrides: list[str] | None) -> tuple[ExperimentDir, dict[str, Any]]:
    from battleground.bandit._config import load_config
    from battleground.bandit.workflow import ExperimentDir

    settings = load_settings()
    exp = ExperimentDir((experiment_dir or settings.home / "bandit" / "experiment").absolute())
    paths: list[Path] = []
    saved = exp.root / "config.yaml"
    if saved.exists():
        paths.append(saved)
    paths.extend(config or [])
    return exp, load_config(paths, overrides or [])


def _check_agents(agents: list[str]) -> list[str]:
    bad = [a for a in agents if a not in AGENT_NAMES]
    if bad:
        fail(f"unknown agent(s) {bad}; choose from {list(AGENT_NAMES)}")
    return list(dict.fromkeys(agents))


def _money(v: float) -> str:
    return f"{v:,.3f}"


@app.command("collect")
def collect_command(experiment_dir: Path | None = _ExpOpt, config: list[Path] | None = _CfgOpt,
                    overrides: list[str] | None = _OvrArg) -> None:
    """Collect offline logs with a uniform-random coupon policy."""
    with user_errors():
        exp, cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit.workflow import collect, load_logs

        path = collect(cfg, exp)
        logs = load_logs(exp)
        console.print(f"collected {logs['action'].shape[0]:,} rounds ({cfg['collect']['n_steps']} steps × "
                      f"{cfg['simulator']['n_customers']:,} customers), mean revenue {_money(float(logs['reward'].mean()))} → {path}")


@app.command("tune")
def tune_command(agent: list[str] = _agents_opt(["linear_ts"]), experiment_dir: Path | None = _ExpOpt,
                 config: list[Path] | None = _CfgOpt, overrides: list[str] | None = _OvrArg) -> None:
    """Tune an agent with Optuna (seeded TPE); objective: mean accumulated revenue over trajectories."""
    with user_errors():
        agents = _check_agents(agent)
        exp, cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit.workflow import tune

        for a in agents:
            res = tune(cfg, exp, a)
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.best_params.items())
            console.print(f"{a}: best mean accumulated revenue {_money(res.best_value)} over {len(res.trials)} trial(s) "
                          f"with {params or 'no parameters'} → {res.path}")


@app.command("train")
def train_command(agent: list[str] = _agents_opt(["linear_ts"]), experiment_dir: Path | None = _ExpOpt,
                  config: list[Path] | None = _CfgOpt, overrides: list[str] | None = _OvrArg) -> None:
    """Train an agent offline from the logs with its (tuned) parameters."""
    with user_errors():
        agents = _check_agents(agent)
        exp, cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit.workflow import train

        for a in agents:
            console.print(f"{a}: trained policy → {train(cfg, exp, a)}")


@app.command("eval")
def eval_command(agent: list[str] = _agents_opt(["linear_ts"]), experiment_dir: Path | None = _ExpOpt,
                 config: list[Path] | None = _CfgOpt, overrides: list[str] | None = _OvrArg) -> None:
    """Simulate evaluation trajectories of trained agents."""
    with user_errors():
        agents = _check_agents(agent)
        exp, cfg = _setup(experiment_dir, config, overrides)
        import numpy as np

        from battleground.bandit.workflow import evaluate

        for a in agents:
            values = evaluate(cfg, exp, a)
            console.print(f"{a}: accumulated revenue per customer {_money(float(np.mean(values)))} "
                          f"(± {float(np.std(values)):.3f} over {len(values)} trajectories) → {exp.eval_results(a)}")
        from battleground.bandit._baselines import evaluate_baselines

        base = evaluate_baselines(cfg, exp.root)
        console.print(f"baselines: best fixed arm (coupon level {base['best_fixed_arm']['arm']}) "
                      f"{_money(base['best_fixed_arm']['revenue_per_customer'])}, myopic oracle "
                      f"{_money(base['myopic_oracle']['revenue_per_customer'])}")


@app.command("segment")
def segment_command(experiment_dir: Path | None = _ExpOpt, config: list[Path] | None = _CfgOpt,
                    overrides: list[str] | None = _OvrArg) -> None:
    """Segment customers by price-sensitivity quantiles."""
    with user_errors():
        exp, cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit.workflow import segment

        frame = segment(cfg, exp)
        counts = frame["segment"].value_counts().sort_index()
        console.print("segments: " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + f" → {exp.summary / 'segments.csv'}")


@app.command("metrics")
def metrics_command(experiment_dir: Path | None = _ExpOpt, config: list[Path] | None = _CfgOpt,
                    overrides: list[str] | None = _OvrArg, as_json: bool = json_option,
                    as_csv: bool = csv_option) -> None:
    """Compare the evaluated agents for all customers and per segment (a table and summary files)."""
    fmt = output_format(as_json, as_csv)
    with user_errors():
        exp, cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit.workflow import compute_metrics

        res = compute_metrics(cfg, exp)
        agents = res.all_customers.sort_values("accumulated_revenue", ascending=False).to_dict("records")
        overall = Table("all_customers", "All customers (means over trajectories)", [
            Column.of("agent", key=True), Column.of("revenue", "accumulated_revenue", "{:,.3f}", justify="right"),
            Column.of("± std", "accumulated_revenue_std", "{:.3f}", justify="right"),
            Column.of("demand", "accumulated_demand", "{:.2f}", justify="right"),
            Column.of("retention", fmt="{:.3f}", justify="right"),
            Column.of("penetration", "category_penetration", "{:.3f}", justify="right"),
            Column.of("discount", "empirical_discount", "{:.3f}", justify="right"),
            Column.of("coupon", "mean_coupon_level", "{:.2f}", justify="right"),
        ], [{str(k): v for k, v in r.items()} for r in agents])
        pivot = res.segmented.pivot_table(index="segment", columns="agent", values="accumulated_revenue", sort=False)
        segments = Table(
            "segments", "Accumulated revenue per customer, by price-sensitivity segment",
            [Column.of("segment", key=True), *[Column.of(str(a), fmt="{:,.3f}", justify="right") for a in pivot.columns]],
            [{"segment": str(name), **{str(a): float(v) for a, v in row.items()}} for name, row in pivot.sort_index().iterrows()],
        )
        print_tables([overall, segments], fmt)
        if fmt == "table":
            console.print(f"summaries → {res.path}")
        if fmt == "table":
            for comparison in res.comparisons:
                console.print(comparison.verdict)


@app.command("report")
def report_command(experiment_dir: Path | None = _ExpOpt, config: list[Path] | None = _CfgOpt,
                   overrides: list[str] | None = _OvrArg) -> None:
    """Write the HTML report comparing the agents (opens offline)."""
    with user_errors():
        exp, _cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit._report import render_report

        console.print(f"report → {render_report(exp)}")


@app.command("sweep")
def sweep_command(
    executor: str = typer.Option("local", "--executor", help="local (parallel processes) or ray."),
    max_workers: int | None = typer.Option(None, "--max-workers", help="Processes (local) or CPUs of a local Ray; default sweep.max_workers."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Connect to this Ray cluster instead of starting a local one."),
    experiment_dir: Path | None = _ExpOpt, config: list[Path] | None = _CfgOpt, overrides: list[str] | None = _OvrArg,
    as_json: bool = json_option, as_csv: bool = csv_option,
) -> None:
    """Ablation / sensitivity sweep over agents and parameters (sweep.agents, sweep.grid)."""
    fmt = output_format(as_json, as_csv)
    with user_errors():
        exp, cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit._executors import make_executor
        from battleground.bandit.workflow import sweep

        runner = make_executor(executor, max_workers=int(max_workers or cfg["sweep"]["max_workers"]), address=ray_address)
        frame = sweep(cfg, exp, runner)
        table = Table("sweep", f"Sweep on {runner.name} ({len(frame)} jobs): accumulated revenue per customer", [
            Column.of("run", "label", key=True), Column.of("revenue", "revenue_mean", "{:,.3f}", justify="right"),
            Column.of("± std", "revenue_std", "{:.3f}", justify="right"),
            Column.of("train loss", "train_loss", "{:.2f}", justify="right"),
        ], [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")])
        print_tables([table], fmt)
        if fmt == "table":
            console.print(f"results → {exp.sweep / 'results.csv'}")


_STORE_HELP = "Estimate from the decision log in the store of this experiment or policy key instead."


@app.command("ope")
def ope_command(agent: str = typer.Option("linear_ts", "--agent", "-a", help=_AGENT_HELP),
                experiment_dir: Path | None = _ExpOpt, config: list[Path] | None = _CfgOpt,
                overrides: list[str] | None = _OvrArg, as_json: bool = json_option,
                as_csv: bool = csv_option,
                from_store: str | None = typer.Option(None, "--from-store", help=_STORE_HELP),
                policy_file: list[str] | None = typer.Option(None, "--policy-file", help="With --from-store: NAME=path.npz (repeat)."),
                record: bool = typer.Option(False, "--record", help="With --from-store: record the estimates in the ledger.")) -> None:
    """Estimate a policy's value from random-policy logs with every OPE estimator, beside its true value."""
    fmt = output_format(as_json, as_csv)
    if from_store is not None:
        from battleground.cli.decisions import ope_from_store_command

        ope_from_store_command(from_store, policy_file or [], fmt, record)
        return
    with user_errors():
        _check_agents([agent])
        exp, cfg = _setup(experiment_dir, config, overrides)
        from battleground.bandit._report import render_ope_report
        from battleground.bandit.workflow import off_policy_evaluation

        res = off_policy_evaluation(cfg, exp, agent)
        t = res.table
        table = Table("estimates", f"Off-policy value of {agent} ({int(t['n_rounds'].iloc[0]):,} random-policy rounds; "
                                   f"true value {res.true_value:.4f})", [
            Column.of("estimator", key=True), Column.of("value", fmt="{:.4f}", justify="right"),
            Column("CI", lambda r: f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]", justify="right"),
            Column.of("error", fmt="{:+.4f}", justify="right"),
            Column("covers truth", lambda r: "yes" if r["covers_truth"] else "no", justify="right"),
        ], [{str(k): v for k, v in r.items()} for r in t.to_dict("records")])
        d = res.diagnostics
        report = render_ope_report(res)
        if fmt != "table":
            extra = {"agent": agent, "true_value": res.true_value, "simulated_value": res.simulated_value,
                     "logging_value": res.logging_value, "diagnostics": dict(d), "report": str(report)}
            print_tables([table], fmt, extra=extra if fmt == "json" else None)
            return
        print_tables([table], fmt)
        console.print(f"deployed in the simulator: {res.simulated_value:.4f} per round; random logging policy: "
                      f"{res.logging_value:.4f}; ESS {d.get('ess', float('nan')):,.0f}, max weight {d.get('max_weight', float('nan')):.2f}")
        console.print(f"report → {report}")


@app.command("battle")
def battle_command(
    agent: list[str] = _agents_opt(list(AGENT_NAMES)),
    n_customers: int = typer.Option(300, help="Simulated customers."),
    n_steps: int = typer.Option(10, help="Logged steps and evaluation steps."),
    seed: int = typer.Option(0, help="Seed of the world and every draw."),
    tune_trials: int = typer.Option(0, help="Optuna trials per agent before training (0: configured parameters)."),
    experiment_dir: Path | None = typer.Option(None, "--experiment-dir", "-e", help="Default: <BATTLEGROUND_HOME>/bandit/battle."),
) -> None:
    """A short battle end to end: collect, (tune,) train, evaluate, compare, OPE, reports."""
    with user_errors():
        from battleground.bandit import run_battle

        res = run_battle(load_settings(), n_customers=n_customers, n_steps=n_steps, agents=_check_agents(agent),
                         seed=seed, tune_trials=tune_trials, experiment_dir=experiment_dir)
        for _, r in res.summary.iterrows():
            console.print(f"{r['agent']:>15}: accumulated revenue {_money(r['accumulated_revenue'])} per customer")
        console.print(f"winner: {res.winner}; report → {res.report_path}; OPE of {res.ope_agent} → {res.ope_report_path}")
