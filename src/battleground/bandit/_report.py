"""HTML reports of the bandit workflow (Jinja2 + Plotly): the battle report (agents ranked with 95 %
intervals, reward over steps, the OPE forest plot, then the detail) and the OPE report.

They render through the shared, autoescaping environment (``battleground._html``): charts are inert
``<div>`` elements drawn by ``charts.js``. Both reports of an experiment link one ``plotly.min.js`` and
``charts.js`` written once into the experiment folder (it opens offline; 4.8 MB once, not per report),
or inline them with ``shared_scripts=False`` (one file to mail around); the dashboard serves the linked
names from its gzipped, cached ``/static``."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from markupsafe import Markup

    from battleground.bandit.workflow import ExperimentDir, OPEResult

__all__ = ["render_ope_report", "render_report"]

_COLORS = {"linear_ts": "#1a73e8", "linear_ucb": "#e37400", "epsilon_greedy": "#1e8e3e", "random": "#80868b",
           "best_fixed_arm": "#b0b0b0", "myopic_oracle": "#202124"}
_LAYOUT: dict[str, Any] = {"template": "plotly_white", "margin": {"l": 50, "r": 20, "t": 50, "b": 45}, "height": 360}
_LABELS = {
    "accumulated_revenue": "Accumulated revenue / customer",
    "accumulated_demand": "Accumulated demand (units) / customer",
    "retention": f"Retention (visit in last {3} steps)",
    "category_penetration": "Category penetration",
    "empirical_discount": "Empirical discount",
    "mean_coupon_level": "Mean coupon level",
}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


_OPEN_ROWS = 12  # a longer table starts folded: the charts above carry its story


def _table(frame: pd.DataFrame, columns: list[str], *, note: str = "", best: tuple[str, bool] | None = None) -> dict[str, Any]:
    rows = []
    best_idx = None
    if best is not None and len(frame):
        col, maximise = best
        best_idx = frame[col].idxmax() if maximise else frame[col].idxmin()
    for idx, rec in frame.iterrows():
        rows.append({"cells": [_fmt(rec[c]) for c in columns], "css": "best" if idx == best_idx else ""})
    return {"columns": columns, "rows": rows, "note": note, "folded": len(rows) > _OPEN_ROWS}


def _html(fig: Any) -> Markup:
    from battleground._html import chart

    return chart(fig)


def _render(title: str, subtitle: str, verdict: str, sections: list[dict[str, Any]], footer: str, *,
            shared_scripts: bool = True, base: str = "") -> str:
    import battleground
    from battleground._html import environment

    return environment().get_template("bandit/report.html.j2").render(
        title=title, subtitle=subtitle, verdict=verdict, sections=sections, footer=footer,
        version=battleground.__version__, report_scripts="beside" if shared_scripts else "inline",
        report_scripts_base=base,
        generated=f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
    )


def _agent_bars(all_customers: pd.DataFrame) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = list(_LABELS)
    fig = make_subplots(rows=2, cols=3, subplot_titles=[_LABELS[m] for m in metrics], vertical_spacing=0.18)
    for i, m in enumerate(metrics):
        err = all_customers.get(f"{m}_std")
        fig.add_trace(
            go.Bar(
                x=all_customers["agent"], y=all_customers[m],
                error_y={"type": "data", "array": list(err)} if err is not None else None,
                marker_color=[_COLORS.get(a, "#555") for a in all_customers["agent"]], showlegend=False,
            ),
            row=i // 3 + 1, col=i % 3 + 1,
        )
    fig.update_layout(**{**_LAYOUT, "height": 560, "title": "All customers (error bars: std over trajectories)"})
    return _html(fig)


def _segment_bars(segmented: pd.DataFrame, metric: str) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for agent, g in segmented.groupby("agent", sort=False):
        err = g.get(f"{metric}_std")
        fig.add_trace(go.Bar(x=g["segment"], y=g[metric], name=str(agent), marker_color=_COLORS.get(str(agent)),
                             error_y={"type": "data", "array": list(err)} if err is not None else None))
    fig.update_layout(**{**_LAYOUT, "barmode": "group", "title": f"{_LABELS[metric]} by price-sensitivity segment"})
    return _html(fig)


def _ranked(all_customers: pd.DataFrame) -> str:
    """Agents by accumulated revenue per customer, best on top, with the 95 % interval of the mean over
    evaluation trajectories."""
    from battleground._html import ci_half_width, ranked_chart

    std = all_customers.get("accumulated_revenue_std")
    n = all_customers.get("n_trajectories")
    half = [ci_half_width(float(s), float(k)) for s, k in zip(std, n, strict=True)] if std is not None and n is not None \
        else [math.nan] * len(all_customers)
    return ranked_chart([str(a) for a in all_customers["agent"]], [float(v) for v in all_customers["accumulated_revenue"]],
                        half, title="Agents ranked by accumulated revenue per customer",
                        note="95 % interval of the mean over evaluation trajectories")


def _step_lines(steps: pd.DataFrame) -> str:
    from battleground._html import steps_chart

    series = {str(agent): ([float(x) for x in g["step"]], [float(y) for y in g["revenue"]])
              for agent, g in steps.groupby("agent", sort=False)}
    return steps_chart(series, title="Revenue per customer and step (mean over trajectories)", colors=_COLORS)


def _forest(table: pd.DataFrame, agent: str, truth: float | None, logging: float | None) -> str:
    from battleground._html import forest_chart

    return forest_chart([str(e) for e in table["estimator"]], [float(v) for v in table["value"]],
                        [float(v) for v in table["ci_low"]], [float(v) for v in table["ci_high"]],
                        title=f"Off-policy estimates of {agent} (revenue per round) with intervals", truth=truth,
                        reference=("random logging policy", logging) if logging is not None else None)


def _ope_section(exp: ExperimentDir) -> dict[str, Any] | None:
    """The forest plot of the experiment's last off-policy evaluation, if one ran."""
    import pandas as pd

    path = exp.ope / "ope_table.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path)
    if table.empty or not {"estimator", "value", "ci_low", "ci_high"} <= set(table.columns):
        return None
    summary_path = exp.ope / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    agent = str(summary.get("agent", table["agent"].iloc[0] if "agent" in table else "the policy"))
    truth = summary.get("true_value", table["true_value"].iloc[0] if "true_value" in table else None)
    logging = summary.get("logging_policy_value")
    return {"title": "Off-policy evaluation", "text": "Every estimator's value from random-policy logs, beside "
            "the exact value of the policy on the same rounds (details: ope/report.html).",
            "charts": [_forest(table, agent, None if truth is None else float(truth),
                               None if logging is None else float(logging))], "tables": []}


def _arm_bars(arms: pd.DataFrame) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for agent, g in arms[arms["segment"] == "all"].groupby("agent", sort=False):
        fig.add_trace(go.Bar(x=g["arm"], y=g["share"], name=str(agent), marker_color=_COLORS.get(str(agent))))
    fig.update_layout(**{**_LAYOUT, "barmode": "group", "title": "Arm (coupon level) frequencies, all customers",
                         "xaxis_title": "coupon level (×5 % off)", "yaxis_title": "share of decisions"})
    return _html(fig)


def _arm_heatmaps(arms: pd.DataFrame) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    seg = arms[arms["segment"] != "all"]
    agents = list(dict.fromkeys(seg["agent"]))
    if not agents:
        return ""
    fig = make_subplots(rows=1, cols=len(agents), subplot_titles=agents, shared_yaxes=True)
    for i, agent in enumerate(agents):
        pivot = seg[seg["agent"] == agent].pivot_table(index="segment", columns="arm", values="share")
        fig.add_trace(go.Heatmap(z=pivot.to_numpy(), x=list(pivot.columns), y=list(pivot.index), coloraxis="coloraxis"),
                      row=1, col=i + 1)
    fig.update_layout(**{**_LAYOUT, "title": "Arm frequencies per segment", "coloraxis": {"colorscale": "Blues"}})
    return _html(fig)


def _curves(exp: ExperimentDir, agents: list[str]) -> str:
    import pandas as pd
    import plotly.graph_objects as go

    fig = go.Figure()
    for agent in agents:
        path = exp.trained(agent) / "train_curve.csv"
        if path.exists():
            c = pd.read_csv(path)
            fig.add_trace(go.Scatter(x=c["step"], y=c["mse"], mode="lines+markers", name=agent, line={"color": _COLORS.get(agent)}))
    if not fig.data:
        return ""
    fig.update_layout(**{**_LAYOUT, "title": "Training curve: progressive-validation squared error per logged step",
                         "xaxis_title": "logged step", "yaxis_title": "MSE of the reward prediction", "yaxis_type": "log"})
    return _html(fig)


def _tuning(exp: ExperimentDir, agents: list[str]) -> tuple[str, list[dict[str, Any]]]:
    import pandas as pd
    import plotly.graph_objects as go

    fig = go.Figure()
    tables = []
    for agent in agents:
        path = exp.agent(agent) / "tuning_log.csv"
        if not path.exists():
            continue
        log = pd.read_csv(path)
        fig.add_trace(go.Scatter(x=log["trial"], y=log["revenue_mean"].cummax(), mode="lines", name=f"{agent} best so far",
                                 line={"color": _COLORS.get(agent)}))
        fig.add_trace(go.Scatter(x=log["trial"], y=log["revenue_mean"], mode="markers", name=f"{agent} trial",
                                 marker={"color": _COLORS.get(agent), "opacity": 0.5}))
        best = json.loads((exp.agent(agent) / "best_params.json").read_text()) if (exp.agent(agent) / "best_params.json").exists() else {}
        tables.append({"agent": agent, "trials": len(log), "best": float(log["revenue_mean"].max()),
                       "params": ", ".join(f"{k}={_fmt(v)}" for k, v in best.items()) or "(none)"})
    if not fig.data:
        return "", []
    fig.update_layout(**{**_LAYOUT, "title": "Optuna tuning: mean accumulated revenue per trial", "xaxis_title": "trial"})
    return _html(fig), tables


def _verdict(all_customers: pd.DataFrame, summary_dir: Path) -> str:
    """The headline: the top agent, and what the paired tests say against the others and the baselines."""
    import pandas as pd

    path = summary_dir / "comparisons.csv"
    comparisons = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if comparisons.empty:
        best = all_customers.sort_values("accumulated_revenue", ascending=False).iloc[0]
        return f"{best['agent']} alone was evaluated: {best['accumulated_revenue']:,.2f} accumulated revenue per customer."
    top = str(comparisons["agent_a"].iloc[0])
    value = float(comparisons["mean_a"].iloc[0])
    parts = [f"{top} has the highest mean, {value:,.2f} accumulated revenue per customer"]
    parts += [str(v) for v in comparisons["verdict"]]
    return "; ".join(parts) + "."


def render_report(exp: ExperimentDir, *, title: str = "Bandit battle", shared_scripts: bool = True) -> Path:
    """Write ``report.html`` comparing the evaluated agents, for all customers and per segment (with the
    forest plot of the last off-policy evaluation, if one ran). ``shared_scripts``: link plotly.js
    written once into the experiment folder (default) instead of inlining it."""
    import pandas as pd

    from battleground._html import write_shared_scripts

    s = exp.summary
    if not (s / "all_customers.csv").exists():
        from battleground.bandit.workflow import MissingArtifactError

        raise MissingArtifactError(f"no metrics under {s}; run `battleground bandit metrics` first")
    all_customers = pd.read_csv(s / "all_customers.csv")
    segmented = pd.read_csv(s / "segmented.csv")
    arms = pd.read_csv(s / "arm_frequencies.csv")
    steps = pd.read_csv(s / "revenue_by_step.csv")
    from battleground.bandit._policies import AGENTS

    agents = [a for a in all_customers["agent"] if a in AGENTS]  # baselines have no training or tuning
    verdict = _verdict(all_customers, s)
    cols = ["agent", "accumulated_revenue", "accumulated_revenue_std", *[m for m in _LABELS if m != "accumulated_revenue"], "n_trajectories"]
    seg_cols = ["segment", "agent", "n_customers", *_LABELS]
    sections: list[dict[str, Any]] = [
        {"title": "All customers", "charts": [_ranked(all_customers), _step_lines(steps)],
         "tables": [_table(all_customers, cols, best=("accumulated_revenue", True),
                           note="Means over evaluation trajectories; std is across trajectories.")]},
        {"title": "Every metric", "charts": [_agent_bars(all_customers)], "tables": []},
        {"title": "Per price-sensitivity segment", "text": "Customers are split into quantiles of their latent price sensitivity −β_w.",
         "charts": [_segment_bars(segmented, "accumulated_revenue"), _segment_bars(segmented, "retention"),
                    _segment_bars(segmented, "empirical_discount")],
         "tables": [_table(segmented.sort_values(["segment", "agent"]), seg_cols)]},
        {"title": "Arms", "charts": [_arm_bars(arms), _arm_heatmaps(arms)], "tables": []},
    ]
    ope = _ope_section(exp)
    if ope is not None:
        sections.insert(1, ope)
    curve = _curves(exp, agents)
    if curve:
        sections.append({"title": "Offline training", "charts": [curve], "tables": []})
    chart, tuned = _tuning(exp, agents)
    if chart:
        sections.append({"title": "Hyperparameter tuning", "charts": [chart],
                         "tables": [_table(pd.DataFrame(tuned), ["agent", "trials", "best", "params"])]})
    if (exp.sweep / "results.csv").exists():
        sw = pd.read_csv(exp.sweep / "results.csv")
        sections.append({"title": "Sweep", "charts": [],
                         "tables": [_table(sw, ["label", "revenue_mean", "revenue_std", "n_trajectories", "train_loss", "executor"],
                                           best=("revenue_mean", True))]})
    html = _render(title, f"experiment {exp.root.name}", verdict, sections,
                   "Simulator: RetailSynth-style customers, products in categories, Markov promotions, store-wide coupons "
                   "(level a = 5·a % off). Reward: the customer's revenue in the step.", shared_scripts=shared_scripts)
    exp.report.parent.mkdir(parents=True, exist_ok=True)
    if shared_scripts:
        write_shared_scripts(exp.report.parent)
    exp.report.write_text(html, encoding="utf-8")
    return exp.report


def render_ope_report(result: OPEResult, *, shared_scripts: bool = True) -> Path:
    """Write ``ope/report.html``: each estimator's value and interval against the true value (a forest
    plot). ``shared_scripts``: link the plotly.js of the experiment folder above (written once)."""
    import plotly.graph_objects as go

    from battleground._html import write_shared_scripts

    table = result.table
    err = go.Figure(go.Bar(x=table["estimator"], y=100 * table["relative_error"], marker_color="#e37400"))
    err.update_layout(**{**_LAYOUT, "title": "Relative error against the true value (%)", "height": 300})
    d = result.diagnostics
    diag_rows = [{"cells": [k, _fmt(d[k])], "css": ""} for k in ("n_rounds", "ess", "ess_ratio", "max_weight", "mean_weight", "zero_support_share", "trustworthy") if k in d]
    if d.get("reasons"):
        diag_rows.append({"cells": ["reasons", "; ".join(d["reasons"])], "css": ""})
    cols = ["estimator", "value", "ci_low", "ci_high", "se", "true_value", "error", "relative_error", "covers_truth"]
    verdict = (f"True value of {result.agent}: {result.true_value:,.4f} per round (exact expected revenue on the logged rounds); "
               f"deployed in the simulator: {result.simulated_value:,.4f}; random logging policy: {result.logging_value:,.4f}.")
    sections = [
        {"title": "Estimates", "charts": [_forest(table, result.agent, result.true_value, result.logging_value), _html(err)],
         "tables": [_table(table, cols, note="Intervals: " + str(table["ci_method"].iloc[0]) + f", α = {table['alpha'].iloc[0]}.")]},
        {"title": "Importance-weight diagnostics", "charts": [],
         "tables": [{"columns": ["diagnostic", "value"], "rows": diag_rows, "note": ""}]},
    ]
    html = _render(f"Off-policy evaluation: {result.agent}", f"{len(table)} estimators on random-policy logs", verdict,
                   sections, "Estimators from battleground.ope; q̂ by cross-fitted ridge regression on context × action.",
                   shared_scripts=shared_scripts, base="../")
    path = result.path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    if shared_scripts:
        write_shared_scripts(path.parent.parent)  # the experiment folder: one copy for both reports
    path.write_text(html, encoding="utf-8")
    return path
