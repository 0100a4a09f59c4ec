"""The workflow from the command line (collect → tune → train → eval → segment → metrics → report),
OPE against the simulator's truth, sweeps on both executors, configs, and the demo's run_battle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from battleground.bandit import load_policy, run_battle
from battleground.bandit._config import ConfigError, load_config
from battleground.bandit.workflow import ExperimentDir
from battleground.cli import app
from battleground.settings import Settings

TINY = [
    "simulator.n_customers=120", "simulator.n_products=20", "collect.n_steps=6",
    "tune.n_trials=2", "tune.n_trajectories=1", "tune.n_steps=4",
    "eval.n_trajectories=2", "eval.n_steps=5", "ope.n_steps=4",
    "sweep.n_trajectories=1", "sweep.n_steps=3",
]
AGENTS = ["linear_ts", "linear_ucb", "epsilon_greedy", "random"]


def _invoke(args: list[str], home: Path) -> str:
    result = CliRunner().invoke(app, args, env={"BATTLEGROUND_HOME": str(home), "COLUMNS": "200"})
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result.output


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExperimentDir, dict[str, str]]:
    home = tmp_path_factory.mktemp("home")
    outputs = {"collect": _invoke(["bandit", "collect", *TINY], home)}
    agent_opts = [opt for a in AGENTS for opt in ("--agent", a)]
    outputs["tune"] = _invoke(["bandit", "tune", "--agent", "linear_ts"], home)
    outputs["train"] = _invoke(["bandit", "train", *agent_opts], home)
    outputs["eval"] = _invoke(["bandit", "eval", *agent_opts], home)
    outputs["segment"] = _invoke(["bandit", "segment"], home)
    outputs["metrics"] = _invoke(["bandit", "metrics"], home)
    outputs["report"] = _invoke(["bandit", "report"], home)
    return home, ExperimentDir(home / "bandit" / "experiment"), outputs


def test_collect_writes_random_logs_with_ground_truth(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    _, exp, out = workflow
    assert "collected 720 rounds (6 steps × 120 customers)" in out["collect"]
    with np.load(exp.logs) as logs:
        assert logs["context"].shape == (720, 8) and logs["q_true"].shape == (720, 11)
        np.testing.assert_allclose(logs["pscore"], 1 / 11)
        assert logs["action"].min() == 0 and logs["action"].max() == 10
    saved = load_config(exp.root / "config.yaml")
    assert saved["simulator"]["n_customers"] == 120  # later steps reuse the experiment's config


def test_tune_log_and_best_params(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    _, exp, out = workflow
    log = pd.read_csv(exp.agent("linear_ts") / "tuning_log.csv")
    assert len(log) == 2
    assert {"param_variance_scale", "param_reg", "param_gamma", "revenue_mean", "revenue_std", "train_loss"} <= set(log.columns)
    best = json.loads((exp.agent("linear_ts") / "best_params.json").read_text())
    assert best["variance_scale"] == pytest.approx(log.loc[log["revenue_mean"].idxmax(), "param_variance_scale"])
    assert "best mean accumulated revenue" in out["tune"]


def test_train_uses_tuned_parameters_and_saves_artifacts(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    _, exp, _ = workflow
    best = json.loads((exp.agent("linear_ts") / "best_params.json").read_text())
    policy = load_policy(exp.policy("linear_ts"))
    assert policy.get_params()["variance_scale"] == pytest.approx(best["variance_scale"])
    assert policy.n_updates_ == 6  # one update per logged step
    curve = pd.read_csv(exp.trained("linear_ts") / "train_curve.csv")
    assert curve["step"].tolist() == list(range(6)) and (curve["n_rounds"] == 120).all()
    assert curve["mse"].iloc[-1] < curve["mse"].iloc[0]  # it learns
    assert (exp.trained("linear_ts") / "agent_cfg.yaml").exists()
    for agent in AGENTS:
        assert exp.policy(agent).exists()


def test_eval_trajectories(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    _, exp, _ = workflow
    files = sorted(exp.eval_results("linear_ts").glob("trajectory_*.csv"))
    assert [f.name for f in files] == ["trajectory_000.csv", "trajectory_001.csv"]
    traj = pd.read_csv(files[0])
    assert len(traj) == 5 * 120
    assert {"step", "customer", "action", "propensity", "reward", "demand", "visit", "categories", "gross"} <= set(traj.columns)
    assert traj["propensity"].between(0, 1).all()
    rnd = pd.read_csv(exp.eval_results("random") / "trajectory_000.csv")
    np.testing.assert_allclose(rnd["propensity"], 1 / 11)


def test_segments_and_metrics(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    _, exp, out = workflow
    seg = pd.read_csv(exp.summary / "segments.csv")
    assert seg["segment_index"].value_counts().tolist() == [30, 30, 30, 30]
    by_seg = seg.groupby("segment_index")["price_sensitivity"]
    assert (by_seg.max().iloc[:-1].to_numpy() <= by_seg.min().iloc[1:].to_numpy()).all()
    allc = pd.read_csv(exp.summary / "all_customers.csv")
    assert sorted(allc["agent"]) == sorted([*AGENTS, "best_fixed_arm", "myopic_oracle"])
    assert (allc["n_trajectories"] == 2).all()
    for col in ("retention", "category_penetration", "empirical_discount"):
        assert allc[col].between(0, 1).all()
    # The random agent's discount is close to the mean coupon of 25 %; per-segment revenue averages to all.
    rnd = allc.set_index("agent").loc["random"]
    assert 0.15 < rnd["empirical_discount"] < 0.35
    segd = pd.read_csv(exp.summary / "segmented.csv")
    mean_seg = segd.groupby("agent")["accumulated_revenue"].mean()
    np.testing.assert_allclose(mean_seg.loc[allc["agent"]].to_numpy(), allc["accumulated_revenue"].to_numpy(), rtol=1e-9)
    arms = pd.read_csv(exp.summary / "arm_frequencies.csv")
    np.testing.assert_allclose(arms.groupby(["agent", "segment"])["share"].sum(), 1.0)
    # Recomputed by hand from one trajectory file: accumulated revenue per customer.
    per = pd.read_csv(exp.summary / "per_trajectory.csv")
    t0 = pd.read_csv(exp.eval_results("linear_ucb") / "trajectory_000.csv")
    row = per[(per["agent"] == "linear_ucb") & (per["segment"] == "all") & (per["trajectory"] == 0)].iloc[0]
    assert row["accumulated_revenue"] == pytest.approx(t0["reward"].sum() / 120)
    assert row["retention"] == pytest.approx(t0[t0["step"] >= 2].groupby("customer")["visit"].max().mean())
    assert "Q4 (most price-sensitive)" in out["metrics"] and "linear_ts" in out["metrics"]
    assert json.loads((exp.summary / "summary.json").read_text())["agents"] == AGENTS


def test_report_links_one_shared_plotly_and_leads_with_charts(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    from battleground._html import report_scripts

    _, exp, _ = workflow
    html = exp.report.read_text()
    # plotly.js is written once into the experiment folder (which opens offline), never inlined
    assert re.findall(r'<script src="([^"]+)"></script>', html) == ["plotly.min.js", "charts.js"]
    assert "<script>" not in html and len(html.encode()) < 500_000
    assert (exp.root / "plotly.min.js").read_text(encoding="utf-8") == report_scripts()[0]
    assert html.count('class="bg-chart"') >= 8
    # the charts lead: agents ranked with 95 % intervals, then reward over steps
    ranked = html.index("Agents ranked by accumulated revenue per customer (95 % interval")
    assert ranked < html.index("Revenue per customer and step") < html.index("<table>")
    # the long per-segment table starts folded
    assert re.search(r"<details><summary>\d+ rows</summary>\s*<table>", html)
    for text in ("All customers", "Per price-sensitivity segment", "Hyperparameter tuning", "Offline training", "epsilon_greedy"):
        assert text in html
    # inlined on request: one file to mail around
    from battleground.bandit._report import render_report

    single = render_report(ExperimentDir(exp.root), shared_scripts=False).read_text(encoding="utf-8")
    assert "<script src=" not in single and len(single) > 3_000_000
    render_report(exp)


def test_ope_against_the_truth(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    home, exp, _ = workflow
    out = _invoke(["bandit", "ope", "--agent", "linear_ucb", "ope.n_steps=20"], home)
    table = pd.read_csv(exp.ope / "ope_table.csv")
    assert len(table) == 10
    assert {"ips", "snips", "dm", "dr", "sndr"} <= set(table["estimator"])
    summary = json.loads((exp.ope / "summary.json").read_text())
    truth = summary["true_value"]
    assert (table["true_value"] == truth).all()
    # Unbiased estimators from 2,400 fresh rounds land near the truth, and their intervals cover it.
    for name in ("ips", "snips", "dr"):
        row = table.set_index("estimator").loc[name]
        assert abs(row["value"] - truth) < 0.35 * truth, name
    assert table.set_index("estimator").loc[["ips", "snips", "dr", "sndr"], "covers_truth"].all()
    assert "Off-policy value of linear_ucb" in out and "covers truth" in out
    html = (exp.ope / "report.html").read_text()
    # the OPE report links the experiment folder's one copy; its estimates are a forest plot
    assert re.findall(r'<script src="([^"]+)"></script>', html) == ["../plotly.min.js", "../charts.js"]
    assert "true value" in html and len(html.encode()) < 500_000 and not list(exp.ope.glob("*.js"))
    assert "Off-policy estimates of linear_ucb (revenue per round) with intervals (dashed: true value" in html
    # the battle report rendered after it carries the same forest plot
    _invoke(["bandit", "report"], home)
    assert "Off-policy estimates of linear_ucb" in exp.report.read_text()


def test_sweep_local_and_ray(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    home, exp, _ = workflow
    grid = "sweep.grid.linear_ts.variance_scale=[0.1, 2.0]"
    local = _invoke(["bandit", "sweep", grid], home)
    frame_local = pd.read_csv(exp.sweep / "results.csv")
    assert len(frame_local) == 6 and (frame_local["executor"] == "local").all()
    assert "linear_ts(variance_scale=0.1)" in set(frame_local["label"]) and "Sweep on local" in local
    ray_out = _invoke(["bandit", "sweep", "--executor", "ray", grid], home)
    frame_ray = pd.read_csv(exp.sweep / "results.csv")
    assert (frame_ray["executor"] == "ray").all() and "Sweep on ray" in ray_out
    # Same seeds, same jobs: both executors give the same numbers.
    a = frame_local.set_index("label")["revenue_mean"].sort_index()
    b = frame_ray.set_index("label")["revenue_mean"].sort_index()
    pd.testing.assert_series_equal(a, b)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"BATTLEGROUND_HOME": str(tmp_path)}
    r = runner.invoke(app, ["bandit", "collect", "simulator.n_custmers=5"], env=env)
    assert r.exit_code == 1 and "unknown config key 'simulator.n_custmers'" in r.output
    r = runner.invoke(app, ["bandit", "train", "--agent", "ucb"], env=env)
    assert r.exit_code == 1 and "unknown agent(s) ['ucb']" in r.output
    r = runner.invoke(app, ["bandit", "train"], env=env)
    assert r.exit_code == 1 and "run `battleground bandit collect` first" in r.output
    r = runner.invoke(app, ["bandit", "sweep", "--executor", "slurm"], env=env)
    assert r.exit_code == 1 and "executor must be one of ['local', 'ray']" in r.output


def test_config_layers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("simulator:\n  n_customers: 50\nagents:\n  linear_ts:\n    variance_scale: 0.2\n")
    cfg = load_config(path, ["eval.n_steps=3", "agents.linear_ts.reg=2.5", "sweep.grid.linear_ucb.alpha=[0.1, 1]"])
    assert cfg["simulator"]["n_customers"] == 50 and cfg["simulator"]["n_products"] == 100
    assert cfg["agents"]["linear_ts"] == {"variance_scale": 0.2, "reg": 2.5, "gamma": 0.999}
    assert cfg["eval"]["n_steps"] == 3 and cfg["sweep"]["grid"] == {"linear_ucb": {"alpha": [0.1, 1]}}
    with pytest.raises(ConfigError, match="valid keys there"):
        load_config(None, ["eval.nsteps=3"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(None, ["eval.n_steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_run_battle(settings: Settings) -> None:
    res = run_battle(settings, n_customers=100, n_steps=4, agents=["linear_ts", "random"], seed=3, n_trajectories=1)
    assert res.experiment_dir == settings.home / "bandit" / "battle"
    agents = [a for a in res.summary["agent"] if a in ("linear_ts", "random")]
    assert agents == sorted(["linear_ts", "random"], key=lambda a: -res.summary.set_index("agent").loc[a, "accumulated_revenue"])
    top = next(a for a in res.summary["agent"] if a in ("linear_ts", "random"))
    assert res.winner in (top, "no clear winner")
    assert (res.winner == top) == all(c.a_beats_b for c in res.comparisons if c.agent_b in ("linear_ts", "random"))
    assert {c.agent_b for c in res.comparisons} >= {"best_fixed_arm", "myopic_oracle"}
    assert len(res.ope) == 10 and res.ope_agent == "linear_ts"
    assert (res.ope["true_value"] == res.ope_true_value).all()
    assert res.report_path.exists() and res.ope_report_path.exists()
    assert set(res.segments["agent"]) == {"linear_ts", "random", "best_fixed_arm", "myopic_oracle"}


def test_baselines_and_paired_comparisons(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    """The report compares agents with the best fixed arm and the myopic oracle, and says "beats" only
    when the paired interval excludes zero."""
    _, exp, out = workflow
    assert "best fixed arm (coupon level" in out["eval"] and "myopic oracle" in out["eval"]
    allc = pd.read_csv(exp.summary / "all_customers.csv").set_index("agent")
    base = json.loads((exp.root / "baselines" / "summary.json").read_text())
    by_arm = base["best_fixed_arm"]["by_arm"]
    assert base["best_fixed_arm"]["arm"] == int(np.argmax(by_arm))
    assert allc.loc["best_fixed_arm", "accumulated_revenue"] == pytest.approx(max(by_arm))
    comp = pd.read_csv(exp.summary / "comparisons.csv")
    assert set(comp["agent_b"]) == set(allc.index) - {comp["agent_a"].iloc[0]}
    assert ((comp["ci_low"] < comp["difference"]) & (comp["difference"] < comp["ci_high"])).all()
    html = exp.report.read_text()
    for _, row in comp.iterrows():
        said = "beats" in row["verdict"]
        assert said == bool(row["a_beats_b"] or row["b_beats_a"])
        assert row["verdict"] in html
    assert "earns the most" not in html


def test_sweep_overrides_are_not_saved_for_later_runs(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    home, exp, _ = workflow
    _invoke(["bandit", "sweep", "sweep.grid.linear_ucb.alpha=[0.5]", "sweep.n_steps=2"], home)
    saved = (exp.root / "config.yaml").read_text()
    assert "linear_ucb" not in saved.split("grid:")[-1].split("\n")[0] and "alpha:\n    - 0.5" not in saved
    assert load_config(exp.root / "config.yaml")["sweep"]["n_steps"] == 3  # TINY's value, not the sweep's
    assert (exp.sweep / "config.yaml").exists()  # what the sweep ran with is kept beside its results
    # A later plain sweep runs the configured jobs only, not the earlier command's grid.
    _invoke(["bandit", "sweep"], home)
    labels = set(pd.read_csv(exp.sweep / "results.csv")["label"])
    assert not any("alpha=0.5" in label for label in labels)


def test_unreachable_ray_address_fails_fast() -> None:
    """A Ray address nobody answers on is an error well within 30 s, not a hang."""
    import threading

    from battleground.bandit._executors import ExecutorConnectionError, RayExecutor

    outcome: list[BaseException] = []

    def run(address: str) -> None:
        try:
            RayExecutor(address=address, connect_timeout=5).map(abs, [1])
        except BaseException as exc:
            outcome.append(exc)

    # A closed port; an unroutable host (which a proxy may still accept); the same as a Ray client address.
    for address in ("127.0.0.1:9", "10.255.255.1:6379", "ray://10.255.255.1:10001"):
        outcome.clear()
        thread = threading.Thread(target=run, args=(address,), daemon=True)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), f"RayExecutor({address!r}) still connecting after 30 s"
        assert outcome and isinstance(outcome[0], ExecutorConnectionError), outcome
        assert address.split("//")[-1] in str(outcome[0])


def test_tune_space_error_is_readable_on_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"BATTLEGROUND_HOME": str(tmp_path), "COLUMNS": "300"}
    r = runner.invoke(app, ["bandit", "collect", *TINY], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["bandit", "tune", "--agent", "linear_ts", "tune.space.linear_ts.reg=[1, 2, 3, 4]"], env=env)
    assert r.exit_code == 1
    assert "must be [low, high], [low, high, 'log'] or {choices: [...]}" in " ".join(r.output.split())


def test_metrics_as_json_and_csv(workflow: tuple[Path, ExperimentDir, dict[str, str]]) -> None:
    """The tables of `bandit metrics` come as raw values too (issue 13 §4)."""
    home, exp, _ = workflow
    payload = json.loads(_invoke(["bandit", "metrics", "--json"], home))
    allc = pd.read_csv(exp.summary / "all_customers.csv").set_index("agent")
    got = {r["agent"]: r["accumulated_revenue"] for r in payload["all_customers"]}
    assert set(got) == set(allc.index)
    for agent, value in got.items():
        assert value == pytest.approx(allc.loc[agent, "accumulated_revenue"], rel=1e-12)
    assert "Q4 (most price-sensitive)" in {r["segment"] for r in payload["segments"]}
    text = _invoke(["bandit", "metrics", "--csv"], home)
    assert text.startswith("# all_customers\n") and "\n\n# segments\n" in text
