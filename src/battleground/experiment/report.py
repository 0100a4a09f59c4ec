"""Experiment reports: the seed's ``experiment.report`` module.

``MakeReport().create_report(experiment_id)`` writes a self-contained HTML report (Jinja2 + Plotly,
with plotly.js inlined so it opens offline) and a Markdown summary next to it: hypothesis and design,
planned vs actual sample size, the SRM check, per-metric results with CIs and Holm-corrected p-values,
cumulative lift charts and a decision in plain words:

* **ship** — the primary metric's CI excludes zero in the desired direction and no guardrail is
  significantly harmed;
* **don't ship** — the CI excludes zero in the wrong direction, or a guardrail is harmed;
* **inconclusive** — otherwise, with the sample size still needed;
* an SRM alert overrides all three: "data quality problem: do not trust these results".
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground._html import chart, environment, text_environment
from battleground.experiment.monitoring import ExperimentInfo, ExperimentSource, Monitor
from battleground.stats import (
    Decision,
    Result,
    SrmResult,
    VariantMetricRow,
    decide,
    sample_size_means,
    sample_size_proportions,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MakeReport",
    "RenderedReport",
    "ReportResult",
    "fmt_num",
    "fmt_pct",
    "lift_charts",
    "needed_text",
    "render_report",
    "result_rows",
    "table_rows",
    "write_experiment_report",
]

@dataclass(frozen=True)
class ReportResult(Result):
    """Where the report went and what it decided."""

    experiment_id: int
    html_path: str
    markdown_path: str
    verdict: str
    headline: str


@dataclass(frozen=True)
class RenderedReport:
    """A report rendered in memory: the HTML, the Markdown summary and the decision."""

    experiment_id: int
    html: str
    markdown: str
    decision: Decision


class MakeReport:
    """Build reports of registered experiments.

    Args:
        client: where the registry and events live (as for :class:`Monitor`; ``None`` = environment).
        alpha: significance level of the analysis.
        out_dir: default folder for reports (default ``<home>/reports``).
        source: an :class:`~battleground.experiment.monitoring.ExperimentSource` instead of ``client``.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        alpha: float = 0.05,
        out_dir: str | Path | None = None,
        source: ExperimentSource | None = None,
    ) -> None:
        self.client = client
        self.alpha = alpha
        self.out_dir = out_dir
        self.source = source

    def render(self, experiment_id: Any = None, *, start_dt: Any = None, end_dt: Any = None) -> RenderedReport:
        """The report as text, written nowhere (what the dashboard shows)."""
        return self._render(experiment_id, start_dt, end_dt)[1]

    def _render(self, experiment_id: Any, start_dt: Any, end_dt: Any) -> tuple[Monitor, RenderedReport]:
        monitor = Monitor(client=self.client, alpha=self.alpha, source=self.source)
        if experiment_id is None:
            ids = monitor.backend.all_ids()
            if not ids:
                raise LookupError("there are no experiments to report on; create one first")
            experiment_id = max(ids)
        monitor.put_experiment_id(experiment_id=experiment_id)
        info = monitor.experiment()
        result = monitor.get_abtest_result(start_dt=start_dt, end_dt=end_dt)
        daily = monitor.get_daily_result(start_dt=start_dt, end_dt=end_dt)
        html, markdown, decision = render_report(info, result, daily, alpha=self.alpha)
        return monitor, RenderedReport(info.id, html, markdown, decision)

    def create_report(
        self,
        experiment_id: Any = None,
        *,
        out: str | Path | None = None,
        start_dt: Any = None,
        end_dt: Any = None,
    ) -> ReportResult:
        """Write ``<out>`` (HTML) and the same name with ``.md``; returns the paths and the verdict.

        ``experiment_id`` may be an id or a name; without one, the most recent experiment is used.
        """
        monitor, rendered = self._render(experiment_id, start_dt, end_dt)
        info_id, html, markdown, decision = rendered.experiment_id, rendered.html, rendered.markdown, rendered.decision
        if out is None:
            folder = Path(self.out_dir) if self.out_dir else _default_folder(monitor)
            out = folder / f"experiment-{info_id}.html"
        html_path = Path(out)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        md_path = html_path.with_suffix(".md")
        html_path.write_text(html, encoding="utf-8")
        md_path.write_text(markdown, encoding="utf-8")
        return ReportResult(
            experiment_id=info_id, html_path=str(html_path), markdown_path=str(md_path),
            verdict=decision.verdict, headline=decision.headline,
        )


def _default_folder(monitor: Monitor) -> Path:
    settings = getattr(monitor.backend, "settings", None)
    return (settings.home if settings is not None else Path(".battleground")) / "reports"


def write_experiment_report(settings: Any, experiment_id: Any, out: str | Path | None = None) -> ReportResult:
    """Write the HTML + Markdown report of one experiment (what ``battleground demo`` calls)."""
    return MakeReport(client=settings).create_report(experiment_id, out=out)


# ---------------------------------------------------------------------------------------------------
# rendering (pure: data in, text out)
# ---------------------------------------------------------------------------------------------------


def result_rows(info: ExperimentInfo, frame: pd.DataFrame) -> list[VariantMetricRow]:
    """The monitoring frame as :class:`~battleground.stats.VariantMetricRow`, each with its metric's
    direction."""
    fields = VariantMetricRow.__dataclass_fields__
    direction = {m.name: m.higher_is_better for m in info.metrics}
    rows = []
    for rec in frame.to_dict("records"):
        kw = {k: rec[k] for k in fields if k in rec}
        kw["higher_is_better"] = direction.get(str(kw.get("metric")), True)
        rows.append(VariantMetricRow(**kw))
    return rows


def table_rows(rows: list[VariantMetricRow]) -> list[dict[str, Any]]:
    """The per-metric table of reports and the dashboard: one dict of display texts per row."""
    table = []
    for r in rows:
        harmful = r.guardrail_breach
        good = r.significant and not harmful and ((r.abs_lift > 0) == r.higher_is_better)
        table.append({
            "metric": r.metric, "variant": r.variant, "is_control": r.is_control,
            "users": int(r.users), "events": int(r.events), "value_text": fmt_num(r.value, r.kind),
            "abs_text": "" if r.is_control else f"{r.abs_lift:+.4g} [{r.abs_ci_lower:+.4g}, {r.abs_ci_upper:+.4g}]",
            "rel_text": "" if r.is_control else
            f"{fmt_pct(r.rel_lift)} [{fmt_pct(r.rel_ci_lower)}, {fmt_pct(r.rel_ci_upper)}]",
            "p_text": "" if r.is_control or not math.isfinite(r.p_value) else f"{r.p_value:.3g}",
            "padj_text": "" if r.is_control or not math.isfinite(r.p_value_adjusted) else f"{r.p_value_adjusted:.3g}",
            "css": "neg" if harmful or (r.significant and not good) else "pos" if good else "",
            "flag": "guardrail harmed" if harmful else ("significant" if r.significant else ""),
            "primary": r.primary, "guardrail": r.guardrail, "method": r.method,
        })
    return table


def fmt_pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:+.2%}"


def fmt_num(x: float, kind: str) -> str:
    if not math.isfinite(x):
        return "—"
    if kind in ("proportion", "ratio"):
        return f"{x:.4%}"
    return f"{x:,.4g}"


def needed_text(info: ExperimentInfo, rows: list[VariantMetricRow], decision: Decision, alpha: float) -> str:
    if decision.verdict != "inconclusive":
        return ""
    prim = [r for r in rows if r.primary and not r.is_control]
    ctrl = next((r for r in rows if r.primary and r.is_control), None)
    if not prim or ctrl is None:
        return ""
    have = min(r.users for r in prim)
    if info.target_sample_size and have < info.target_sample_size:
        return (
            f"Sample size still needed: {info.target_sample_size - have:,} more users per variant to "
            f"reach the planned {info.target_sample_size:,}."
        )
    r = prim[0]
    effect = abs(r.abs_lift)
    if not (math.isfinite(effect) and effect > 0 and ctrl.value > 0):
        return "Sample size still needed: the observed effect is zero; no finite sample would confirm it."
    try:
        if r.kind == "proportion" and 0 < ctrl.value < 1 and ctrl.value + effect < 1:
            plan = sample_size_proportions(ctrl.value, effect, alpha=alpha)
        else:
            # σ recovered from the CI half-width: SE·√(n/2) per arm for equal arms.
            half = (r.abs_ci_upper - r.abs_ci_lower) / 2
            se = half / 1.96
            sigma = se * math.sqrt(r.users * ctrl.users / (r.users + ctrl.users))
            plan = sample_size_means(effect, sigma, alpha=alpha)
    except ValueError:
        return ""
    more = max(plan.n_control_ceil - have, 0)
    return (
        f"Sample size still needed: about {plan.n_control_ceil:,} users per variant ({more:,} more) to "
        f"detect the observed {r.metric} effect ({fmt_pct(r.rel_lift)}) with 80 % power "
        f"({plan.formula})."
    )


def lift_charts(info: ExperimentInfo, daily: pd.DataFrame) -> list[str]:
    """One chart per metric (an inert ``<div>``, as ``Markup``, that ``charts.js`` draws)."""
    if daily is None or daily.empty:
        return []
    import plotly.graph_objects as go

    charts: list[str] = []
    palette = ["#1a73e8", "#e37400", "#9334e6", "#188038", "#d01884"]
    for m in info.metrics:
        sub = daily[(daily["metric"] == m.name) & (~daily["is_control"].astype(bool))]
        if sub.empty:
            continue
        fig = go.Figure()
        for i, (variant, g) in enumerate(sub.groupby("variant", sort=True)):
            color = palette[i % len(palette)]
            x = [d.strftime("%Y-%m-%d") for d in g["date"]]
            fig.add_trace(go.Scatter(
                x=x + x[::-1], y=list(g["rel_ci_upper"] * 100) + list(g["rel_ci_lower"] * 100)[::-1],
                fill="toself", fillcolor=color, opacity=0.15, line={"width": 0}, hoverinfo="skip",
                name=f"{variant} CI", showlegend=False,
            ))
            fig.add_trace(go.Scatter(
                x=x, y=list(g["rel_lift"] * 100), mode="lines+markers", name=str(variant),
                line={"color": color},
            ))
        fig.add_hline(y=0, line_dash="dash", line_color="#888")
        fig.update_layout(
            title=f"{m.name}: cumulative relative lift vs control (%)", height=340,
            margin={"l": 40, "r": 20, "t": 50, "b": 40}, template="plotly_white",
        )
        charts.append(chart(fig))
    return charts


def render_report(
    info: ExperimentInfo,
    result: pd.DataFrame,
    daily: pd.DataFrame | None = None,
    *,
    alpha: float = 0.05,
    generated: dt.datetime | None = None,
) -> tuple[str, str, Decision]:
    """Render (html, markdown, decision) from the monitoring frames; no I/O."""
    import battleground

    rows = result_rows(info, result)
    srm_dict = result.attrs.get("srm")
    srm = SrmResult(**{**srm_dict, "observed": tuple(srm_dict["observed"]), "weights": tuple(srm_dict["weights"]), "expected": tuple(srm_dict["expected"])}) if srm_dict else None
    decision = decide(rows, srm_status=srm.status if srm else "ok")
    table = table_rows(rows)
    users = {r.variant: r.users for r in rows if r.primary}
    sizes = []
    for v in info.variants:
        actual = int(users.get(v.name, 0))
        planned = info.target_sample_size
        sizes.append({
            "variant": v.name, "actual": actual,
            "planned": f"{planned:,}" if planned else "not set",
            "progress": f"{actual / planned:.0%}" if planned else "—",
        })
    srm_rows = []
    if srm is not None:
        for v, o, e in zip(info.variants, srm.observed, srm.expected, strict=False):
            srm_rows.append({"variant": v.name, "weight": v.weight, "observed": int(o), "expected": e})
    ends = []
    if info.target_sample_size:
        ends.append(f"{info.target_sample_size:,} users per variant")
    if info.max_duration_days:
        ends.append(f"at most {info.max_duration_days:g} days")
    if info.sequential:
        ends.append("sequential boundary on the primary metric")
    method_text = (
        f"mSPRT always-valid p-values and CIs (mixing N(0, τ²) on the relative lift, τ = 0.1), α = {alpha}"
        if info.sequential
        else f"fixed-horizon Welch t-tests, α = {alpha}"
    ) + "; Holm correction across metrics × variants; relative lift (μT−μC)/|μC| by the delta method"
    window = "all data"
    if daily is not None and not daily.empty:
        window = f"{daily['date'].min():%Y-%m-%d} to {daily['date'].max():%Y-%m-%d}"
    ctx = {
        "exp": info, "decision": decision, "needed": needed_text(info, rows, decision, alpha),
        "rows": table, "sizes": sizes, "srm": srm or _NO_SRM, "srm_rows": srm_rows,
        "charts": lift_charts(info, daily) if daily is not None else [],
        "method_text": method_text, "end_text": ", ".join(ends) or "none",
        "window": window, "generated": f"{(generated or dt.datetime.now(dt.UTC)):%Y-%m-%d %H:%M} UTC",
        "version": battleground.__version__,
        "ci_note": (
            f"Intervals are {1 - alpha:.0%} confidence intervals"
            + (" (always valid under daily peeking)" if info.sequential else "")
            + "; p (Holm) is adjusted for all metric × variant comparisons."
        ),
    }
    # one shared, autoescaping environment: every name, hypothesis and reason is text, never markup
    html = environment().get_template("experiment/report.html.j2").render(**ctx)
    markdown = text_environment().get_template("experiment/report.md.j2").render(**ctx)
    return html, markdown, decision


class _NoSrm:
    status = "n/a"
    chi2 = math.nan
    df = 0
    p_value = math.nan
    warn_at = 0.01
    alert_at = 0.001


_NO_SRM = _NoSrm()
