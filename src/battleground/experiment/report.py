"""Experiment reports: the seed's ``experiment.report`` module.

``MakeReport().create_report(experiment_id)`` writes an HTML report (Jinja2 + Plotly) that links one
shared ``plotly.min.js`` and ``charts.js`` written beside it (the folder opens offline; ``shared_scripts=False``
inlines them instead) and a Markdown summary next to it: hypothesis and design,
planned vs actual sample size, the SRM check, per-metric results with CIs and Holm-corrected p-values,
cumulative lift charts and the decision of the one decision rule (:mod:`battleground.experiment._decide`),
with the rule in one sentence and the clause that decided: **ship** (the best shippable variant named),
**don't ship**, **inconclusive** (with the sample size still needed), **collecting data** (a fixed-horizon
test before its plan) or **data quality problem** (SRM or another failed check).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from battleground._html import (
    chart,
    day_axis,
    environment,
    figure,
    hline,
    text_environment,
    write_shared_scripts,
)
from battleground.experiment._breakdown import ExperimentBreakdown
from battleground.experiment._decide import (
    RULE,
    Decision,
    MetricVerdict,
    clause_text,
    guardrail_power,
    guardrail_users_needed,
    p_label,
)
from battleground.experiment._result import MonitorResult
from battleground.experiment.monitoring import ExperimentInfo, ExperimentSource, Monitor
from battleground.stats import (
    Result,
    VariantMetricRow,
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

    def render(
        self, experiment_id: Any = None, *, start_dt: Any = None, end_dt: Any = None, scripts: str = "inline"
    ) -> RenderedReport:
        """The report as text, written nowhere (what the dashboard shows, with ``scripts="dashboard"``:
        plotly.js linked from its ``/static`` instead of inlined)."""
        return self._render(experiment_id, start_dt, end_dt, scripts)[1]

    def _render(
        self, experiment_id: Any, start_dt: Any, end_dt: Any, scripts: str = "inline"
    ) -> tuple[Monitor, RenderedReport]:
        monitor = Monitor(client=self.client, alpha=self.alpha, source=self.source)
        if experiment_id is None:
            ids = monitor.backend.all_ids()
            if not ids:
                raise LookupError("there are no experiments to report on; create one first")
            experiment_id = max(ids)
        monitor.put_experiment_id(experiment_id=experiment_id)
        info = monitor.experiment()
        result = monitor.result(start_dt=start_dt, end_dt=end_dt)
        daily = monitor.get_daily_result(start_dt=start_dt, end_dt=end_dt)
        html, markdown, decision = render_report(info, result, daily, alpha=self.alpha, scripts=scripts,
                                                 breakdowns=declared_breakdowns(monitor, info, start_dt, end_dt))
        return monitor, RenderedReport(info.id, html, markdown, decision)

    def create_report(
        self,
        experiment_id: Any = None,
        *,
        out: str | Path | None = None,
        start_dt: Any = None,
        end_dt: Any = None,
        shared_scripts: bool = True,
    ) -> ReportResult:
        """Write ``<out>`` (HTML) and the same name with ``.md``; returns the paths and the verdict.

        ``experiment_id`` may be an id or a name; without one, the most recent experiment is used.
        With ``shared_scripts`` (the default) the report links ``plotly.min.js`` and ``charts.js``
        written once beside it (the folder opens offline; 4.8 MB once instead of per report); without,
        it inlines them (one file to mail around).
        """
        scripts = "beside" if shared_scripts else "inline"
        monitor, rendered = self._render(experiment_id, start_dt, end_dt, scripts)
        info_id, html, markdown, decision = rendered.experiment_id, rendered.html, rendered.markdown, rendered.decision
        if out is None:
            folder = Path(self.out_dir) if self.out_dir else _default_folder(monitor)
            out = folder / f"experiment-{info_id}.html"
        html_path = Path(out)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        md_path = html_path.with_suffix(".md")
        if shared_scripts:
            write_shared_scripts(html_path.parent)
        html_path.write_text(html, encoding="utf-8")
        md_path.write_text(markdown, encoding="utf-8")
        return ReportResult(
            experiment_id=info_id, html_path=str(html_path), markdown_path=str(md_path),
            verdict=decision.verdict, headline=decision.headline,
        )


def _default_folder(monitor: Monitor) -> Path:
    settings = getattr(monitor.backend, "settings", None)
    return (settings.home if settings is not None else Path(".battleground")) / "reports"


def declared_breakdowns(monitor: Monitor, info: ExperimentInfo, start: Any, end: Any) -> tuple[ExperimentBreakdown, ...]:
    """:meth:`Monitor.breakdown` by each attribute the experiment declares (metadata ``breakdown_by``);
    none for a source that cannot group users by attributes."""
    from battleground.experiment._breakdown import breakdown_by
    from battleground.stats import StatsInputError

    out = []
    for attribute in breakdown_by(info.metadata):
        try:
            out.append(monitor.breakdown(attribute, start, end))
        except StatsInputError:  # e.g. a warehouse source: no table rather than no report
            continue
    return tuple(out)


def breakdown_rows(breakdowns: Sequence[ExperimentBreakdown]) -> list[dict[str, Any]]:
    """The breakdowns as rows of text (report and dashboard): one per attribute × metric × slice ×
    treatment variant."""
    out = []
    for b in breakdowns:
        f = (lambda v: f"{v:+.2%}") if b.relative else (lambda v: f"{v:+.4g}")
        for m in b.metrics:
            for x in m.result.slices:
                tested = x.estimate is not None
                out.append({
                    "attribute": b.attribute, "metric": m.metric, "slice": x.slice, "variant": x.variant,
                    "users": f"{x.n_control:,.0f} / {x.n_treatment:,.0f}",
                    "effect": f(x.estimate) if tested else "—",
                    "ci": f"[{f(x.ci_lower)}, {f(x.ci_upper)}]" if tested else "",
                    "padj": "—" if x.adjusted_p_value is None else f"{x.adjusted_p_value:.3g}",
                    "rest": "—" if x.rest_estimate is None else f(x.rest_estimate),
                    "het": "—" if x.heterogeneity_adjusted_p_value is None
                    else f"{x.heterogeneity_adjusted_p_value:.3g}",
                    "flag": "heterogeneous" if x.heterogeneous else "significant" if x.significant else x.note,
                    "css": "warn" if x.heterogeneous else "",
                    "correction": b.correction,
                })
    return out


def write_experiment_report(settings: Any, experiment_id: Any, out: str | Path | None = None) -> ReportResult:
    """Write the HTML + Markdown report of one experiment (what ``battleground demo`` calls)."""
    return MakeReport(client=settings).create_report(experiment_id, out=out)


# ---------------------------------------------------------------------------------------------------
# rendering (pure: data in, text out)
# ---------------------------------------------------------------------------------------------------


def _ci(est: float, lo: float, hi: float, fmt: Any) -> str:
    if not math.isfinite(est):
        return "not estimable"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(est)} [CI not estimable]"
    return f"{fmt(est)} [{fmt(lo)}, {fmt(hi)}]"


def _num(x: float) -> str:
    return f"{x:+.4g}"


def _p(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "—"


_FLAGS = {
    "improved": ("pos", "significant: improved"),
    "not_significant": ("", ""),
    "deteriorated": ("neg", "significantly worse"),
    "non_inferior": ("pos", "non-inferior"),
    "not_shown_non_inferior": ("neg", "not shown non-inferior"),
    "no_margin_ok": ("", "not worse (no margin declared)"),
}


def _comparison(r: VariantMetricRow) -> dict[str, str]:
    return {
        "abs_text": _ci(r.abs_lift, r.abs_ci_lower, r.abs_ci_upper, _num),
        "rel_text": _ci(r.rel_lift, r.rel_ci_lower, r.rel_ci_upper, fmt_pct),
        "p_text": _p(r.p_value),
    }


def table_rows(result: MonitorResult) -> list[dict[str, Any]]:
    """The per-metric table of reports and the dashboard: one dict of display texts per row.

    ``p_text`` is the raw p-value, ``padj_text`` the Holm p-value the decision used (success metrics);
    ``flag`` says what the rule read from the row; ``cuped`` the adjusted comparison, when there is one;
    ``post_stratified`` the comparison post-stratified by the declared user attributes, when declared;
    ``cupedpp`` the CUPED++ comparison (several covariates), its ``flag`` the variance reduction achieved.
    """
    table = []
    for r in result.rows:
        v: MetricVerdict | None = None if r.is_control else result.decision.for_row(r.metric, r.variant)
        if r.is_control:
            css, flag, texts = "", "", {"abs_text": "", "rel_text": "", "p_text": ""}
        elif v is not None and v.outcome == "not_estimable":
            css, flag, texts = "", v.text.split(": ", 1)[-1], _comparison(r)
        else:
            css, flag = _FLAGS.get(v.outcome, ("", "")) if v is not None else ("", "")
            if v is not None and v.outcome == "deteriorated" and r.guardrail:
                flag = "guardrail harmed"
            texts = _comparison(r)
        margin = v.margin if v is not None else None
        table.append({
            "metric": r.metric, "variant": r.variant, "is_control": r.is_control,
            "users": int(r.users), "events": int(r.events), "value_text": fmt_num(r.value, r.kind, r.events),
            **texts,
            "padj_text": _p(v.p_value_adjusted) if v is not None and v.role == "success" else "",
            "css": css, "flag": flag, "primary": r.primary, "guardrail": r.guardrail, "method": r.method,
            "margin_text": margin.text() if margin is not None else ("none" if r.guardrail else ""),
            "bound_text": (fmt_pct(v.bound) if margin.relative else _num(v.bound))
            if v is not None and margin is not None and math.isfinite(v.bound) else "",
            "cuped": None if r.cuped is None or r.is_control else {
                **_comparison(r.cuped), "value_text": fmt_num(r.cuped.value, r.kind, r.cuped.events),
            },
            "post_stratified": None if r.post_stratified is None or r.is_control else {
                **_comparison(r.post_stratified),
                "value_text": fmt_num(r.post_stratified.value, r.kind, r.post_stratified.events),
            },
            "cupedpp": None if r.cupedpp is None or r.is_control else {
                **_comparison(r.cupedpp), "value_text": fmt_num(r.cupedpp.value, r.kind, r.cupedpp.events),
                "flag": reduction_text(r.cupedpp_variance_reduction),
            },
        })
    return table


def reduction_text(reduction: float | None) -> str:
    """The variance reduction of an adjusted row in words.

    Example:
        >>> reduction_text(0.4321), reduction_text(0.0), reduction_text(None)
        ('adjusted, variance −43.2 %', 'adjusted, variance −0.0 %', 'adjusted')
    """
    if reduction is None or not math.isfinite(reduction):
        return "adjusted"
    return f"adjusted, variance −{100 * reduction:.1f} %" if reduction >= 0 else \
        f"adjusted, variance +{-100 * reduction:.1f} %"


def fmt_pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:+.2%}"


def fmt_num(x: float, kind: str, events: int | None = None) -> str:
    if not math.isfinite(x):
        return "no events yet" if events == 0 else "—"
    if kind in ("proportion", "ratio"):
        return f"{x:.4%}"
    return f"{x:,.4g}"


def needed_text(info: ExperimentInfo, rows: Any, decision: Decision, alpha: float) -> str:
    """How many more users the primary metric needs (only while no decision is reached)."""
    if decision.verdict not in ("inconclusive", "collecting"):
        return ""
    rows = list(rows)
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
    if decision.verdict == "collecting":
        return ""
    if decision.clause == "guardrail":
        return _guardrail_needed(info, rows, decision, alpha)
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


def _guardrail_needed(info: ExperimentInfo, rows: list[Any], decision: Decision, alpha: float) -> str:
    """Users per arm for the guardrails not yet shown non-inferior (power 1 − β/(G + 1), Spotify)."""
    margins = info.guardrail_margins
    n_guard = sum(1 for m in info.metrics if m.guardrail)
    texts = []
    for r in rows:
        v = None if r.is_control else decision.for_row(r.metric, r.variant)
        if v is None or v.outcome != "not_shown_non_inferior" or r.metric not in margins:
            continue
        n = guardrail_users_needed(r, margins[r.metric], alpha=alpha, n_guardrails=n_guard)
        if math.isinf(n):
            texts.append(f"{r.metric} in {r.variant}: the observed harm is beyond the margin, so no sample "
                         "would show it non-inferior")
        elif math.isfinite(n):
            texts.append(f"{r.metric} in {r.variant}: about {math.ceil(n):,} users per variant "
                         f"({max(math.ceil(n) - r.users, 0):,} more)")
    if not texts:
        return ""
    return (f"Sample size still needed to show the guardrails non-inferior with "
            f"{guardrail_power(0.8, n_guard):.0%} power each (80 % overall, β/(G+1)): " + "; ".join(texts) + ".")


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def lift_charts(info: ExperimentInfo, daily: pd.DataFrame) -> list[str]:
    """One chart per metric (an inert ``<div>``, as ``Markup``, that ``charts.js`` draws).

    The interval is a shaded band over two days or more and error bars on a single day (a band of one
    point has no area); the x axis ticks whole days (see :func:`battleground._html.day_axis`).
    """
    if daily is None or daily.empty:
        return []
    charts: list[str] = []
    palette = ["#1a73e8", "#e37400", "#9334e6", "#188038", "#d01884"]
    for m in info.metrics:
        sub = daily[(daily["metric"] == m.name) & (~daily["is_control"].astype(bool))]
        if sub.empty:
            continue
        traces: list[dict[str, Any]] = []
        for i, (variant, g) in enumerate(sub.groupby("variant", sort=True)):
            color = palette[i % len(palette)]
            x = [d.strftime("%Y-%m-%d") for d in g["date"]]
            lift = [float(v) * 100 for v in g["rel_lift"]]
            lo, hi = [float(v) * 100 for v in g["rel_ci_lower"]], [float(v) * 100 for v in g["rel_ci_upper"]]
            line: dict[str, Any] = {"type": "scatter", "x": x, "y": lift, "mode": "lines+markers",
                                    "name": str(variant), "line": {"color": color}}
            if len(x) > 1:
                traces.append({
                    "type": "scatter", "x": x + x[::-1], "y": hi + lo[::-1], "mode": "lines", "fill": "toself",
                    "fillcolor": _rgba(color, 0.2), "line": {"width": 0}, "hoverinfo": "skip",
                    "name": f"{variant} CI", "showlegend": False,
                })
            else:
                line["error_y"] = {"type": "data", "symmetric": False, "array": [hi[0] - lift[0]],
                                   "arrayminus": [lift[0] - lo[0]], "color": color, "width": 8}
            traces.append(line)
        fig = figure(
            traces, f"{m.name}: cumulative relative lift vs control (%)", height=340,
            margin={"l": 40, "r": 20, "t": 50, "b": 40}, xaxis=day_axis(sub["date"]), yaxis={"ticksuffix": " %"},
            shapes=[hline(0, "#888", "dash")],
        )
        last = sub.sort_values("date").groupby("variant").tail(1)
        alt = f"{m.name}: cumulative relative lift of each variant against control by day; latest " + "; ".join(
            f"{r['variant']} {r['rel_lift'] * 100:+.1f} % [{r['rel_ci_lower'] * 100:+.1f}, {r['rel_ci_upper'] * 100:+.1f}]"
            for r in last.to_dict("records")
        )
        charts.append(chart(fig, alt=alt))
    return charts


def render_report(
    info: ExperimentInfo,
    result: MonitorResult,
    daily: pd.DataFrame | None = None,
    *,
    alpha: float = 0.05,
    generated: dt.datetime | None = None,
    scripts: str = "inline",
    breakdowns: Sequence[ExperimentBreakdown] = (),
) -> tuple[str, str, Decision]:
    """Render (html, markdown, decision) from the typed monitoring result and the daily frame; no I/O.

    ``scripts``: how the HTML gets plotly.js (see :func:`battleground._html.report_head`);
    ``breakdowns``: the dimension breakdowns to show (:func:`declared_breakdowns`)."""
    import battleground

    decision, srm = result.decision, result.srm
    p_adj = p_label(decision.correction)
    table = table_rows(result)
    users = result.users
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
    ) + (f"; {p_label(decision.correction)[3:-1]} correction across success metrics × variants; relative lift "
         "(μT−μC)/|μC| by the delta method")
    window = "all data"
    if daily is not None and not daily.empty:
        window = f"{daily['date'].min():%Y-%m-%d} to {daily['date'].max():%Y-%m-%d}"
    ctx = {
        "exp": info, "decision": decision, "needed": needed_text(info, result.rows, decision, alpha),
        "rule": RULE, "decided_by": clause_text(decision.clause), "p_adj": p_adj,
        "verdicts": [{"variant": v.variant, "verdict": v.verdict.replace("_", " "),
                      "clause": clause_text(v.clause)} for v in decision.variants],
        "data_quality": result.data_quality, "has_cuped": result.has_cuped,
        "post_stratify_by": ", ".join(result.post_stratify_by) if result.has_post_stratified else "",
        "cupedpp_covariates": ", ".join(result.cupedpp_covariates) if result.has_cupedpp else "",
        "capping_note": result.capping_note, "quantile_note": result.quantile_note,
        "breakdowns": breakdown_rows(breakdowns),
        "rows": table, "sizes": sizes, "srm": srm or _NO_SRM, "srm_rows": srm_rows,
        "charts": lift_charts(info, daily) if daily is not None else [],
        "method_text": method_text, "end_text": ", ".join(ends) or "none",
        "window": window, "generated": f"{(generated or dt.datetime.now(dt.UTC)):%Y-%m-%d %H:%M} UTC",
        "version": battleground.__version__, "report_scripts": scripts,
        "ci_note": (
            f"Intervals are {1 - alpha:.0%} confidence intervals"
            + (" (always valid under daily peeking)" if info.sequential else "")
            + f"; p (raw) is the two-sided p-value, {p_adj} the one the decision uses, "
            f"adjusted over success metrics × variants: 'significant' means {p_adj} < α. "
            "Guardrails are judged by their one-sided non-inferiority bound against the margin."
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
