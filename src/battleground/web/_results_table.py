"""The results table of the experiment page: one row per metric × variant, in readable units.

Like GrowthBook's: each treatment row carries its relative-lift interval as a bar on one axis shared by
every row of the table (so lifts compare at a glance), proportions show their absolute lift in
percentage points, every number of a column has the same format, and both p-values are labelled (the
test's raw one and the adjusted one the decision uses). The same rows download as CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from battleground.experiment.monitoring import MonitorResult
    from battleground.stats._analysis import VariantMetricRow

__all__ = ["ResultsTable", "TableRow", "results_csv", "results_table"]

UNITS = {"proportion": "% of users", "mean": "per user", "ratio": "ratio", "quantile": "quantile over users"}
_OUTCOMES = {
    "improved": ("pos", "improved"),
    "deteriorated": ("neg", "worse"),
    "not_significant": ("", "not significant"),
    "non_inferior": ("pos", "non-inferior"),
    "not_shown_non_inferior": ("neg", "not shown non-inferior"),
    "no_margin_ok": ("", "not worse (no margin)"),
    "not_estimable": ("", "not estimable"),
}


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _sig(x: float, digits: int = 4, sign: bool = False) -> str:
    """``digits`` significant figures with thousands separators, never scientific below 10¹²."""
    if not _finite(x):
        return "—"
    if x == 0:
        return "+0" if sign else "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
    text = f"{x:,.{decimals}f}" if abs(x) < 1e12 else f"{x:.{digits - 1}e}"
    return ("+" if sign and x > 0 else "") + text


def value_text(x: float, kind: str) -> str:
    """A metric value in its unit: proportions as percentages, means and ratios to 4 figures."""
    if not _finite(x):
        return "—"
    return f"{x * 100:.2f} %" if kind == "proportion" else _sig(x)


def abs_text(x: float, kind: str) -> str:
    """An absolute lift: percentage points for proportions, the metric's unit otherwise."""
    if not _finite(x):
        return "—"
    return f"{x * 100:+.2f} pp" if kind == "proportion" else _sig(x, sign=True)


def rel_text(x: float) -> str:
    return f"{x * 100:+.1f} %" if _finite(x) else "—"


def p_text(x: float) -> str:
    if not _finite(x):
        return "—"
    return "< 0.0001" if x < 1e-4 else f"{x:.4f}"


@dataclass(frozen=True)
class TableRow:
    """One metric × variant line; numbers in plain units (proportions as fractions), texts for display.

    ``bar_*`` place the relative-lift interval on the table's shared axis, in percent of its width.
    """

    metric: str
    kind: str
    unit: str
    variant: str
    is_control: bool
    primary: bool
    guardrail: bool
    adjustment: str  # "" for the plain comparison, "CUPED" (covariate-adjusted), "post-stratified" or "CUPED++"
    users: int
    value: float
    abs_lift: float
    abs_ci_lower: float
    abs_ci_upper: float
    abs_unit: str  # "pp" for proportions (the lift × 100), else the metric's unit
    rel_lift: float
    rel_ci_lower: float
    rel_ci_upper: float
    p_value: float
    p_value_adjusted: float
    outcome: str
    value_text: str
    abs_text: str
    abs_ci_text: str
    rel_text: str
    rel_ci_text: str
    p_text: str
    padj_text: str
    css: str
    flag: str  # what the decision rule read from the row, in words
    margin_text: str  # a guardrail's non-inferiority margin
    bound_text: str  # its one-sided bound on the margin's scale
    bar_left: float | None = None
    bar_width: float | None = None
    bar_point: float | None = None

    @property
    def has_bar(self) -> bool:
        return self.bar_left is not None

    def record(self) -> dict[str, Any]:
        """The downloadable columns (numbers, not texts; NaN → empty)."""
        out = {k: v for k, v in asdict(self).items() if not k.endswith("_text") and not k.startswith("bar_")}
        for k in ("css", "flag", "margin_text", "bound_text"):
            out.pop(k, None)
        out["result"] = self.flag
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


@dataclass(frozen=True)
class ResultsTable:
    rows: list[TableRow]
    axis_limit: float  # the shared axis runs from −axis_limit to +axis_limit (relative lift, fraction)
    p_label: str  # e.g. "p (Holm)"
    interval: str  # e.g. "95 %"

    @property
    def ticks(self) -> list[dict[str, Any]]:
        """Three labels of the shared axis: −limit, 0, +limit, with their place in percent."""
        lim = self.axis_limit
        return [{"at": 0.0, "text": rel_text(-lim)}, {"at": 50.0, "text": "0"}, {"at": 100.0, "text": rel_text(lim)}]

    def records(self) -> list[dict[str, Any]]:
        return [r.record() for r in self.rows]


def _axis_limit(rows: list[VariantMetricRow]) -> float:
    """A round half-width covering every finite relative-lift interval (at least 1 %, at most 1000 %)."""
    widest = max(
        (abs(x) for r in rows for x in (r.rel_ci_lower, r.rel_ci_upper, r.rel_lift) if _finite(x)), default=0.0
    )
    for lim in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0):
        if widest <= lim:
            return lim
    return 10.0


def _place(x: float, lim: float) -> float:
    return max(0.0, min(100.0, 50.0 + 50.0 * x / lim))


def _row(r: VariantMetricRow, *, verdict: Any, lim: float, adjustment: str = "", capped: str = "",
         note: str = "", quantile: str = "") -> TableRow:
    kind = r.kind
    unit = f"{quantile} over users" if quantile else UNITS.get(kind, kind)
    outcome = "" if r.is_control or verdict is None else verdict.outcome
    css = _OUTCOMES.get(outcome, ("", ""))[0] if not adjustment else ""
    scale = 100.0 if kind == "proportion" else 1.0
    lo, hi = r.rel_ci_lower, r.rel_ci_upper
    bar: dict[str, float | None] = {}
    if not r.is_control and _finite(lo) and _finite(hi) and _finite(r.rel_lift):
        left, right = _place(lo, lim), _place(hi, lim)
        bar = {"bar_left": left, "bar_width": max(right - left, 0.5), "bar_point": _place(r.rel_lift, lim)}
    flag = (_OUTCOMES.get(outcome, ("", ""))[1] if not adjustment else
            note or ("within strata of user attributes" if adjustment == "post-stratified"
                     else "adjusted for the pre-period"))
    if outcome == "deteriorated" and r.guardrail and not adjustment:
        flag = "guardrail harmed"
    margin = verdict.margin if verdict is not None and not adjustment else None
    bound = ""
    if margin is not None and _finite(verdict.bound):
        bound = rel_text(verdict.bound) if margin.relative else abs_text(verdict.bound, kind)
    padj = math.nan
    if verdict is not None and verdict.role == "success" and not adjustment:
        padj = verdict.p_value_adjusted
    ctrl = r.is_control
    return TableRow(
        metric=r.metric, kind=kind, unit=unit + (f", {capped}" if capped else ""),
        variant=r.variant, is_control=ctrl,
        primary=r.primary, guardrail=r.guardrail, adjustment=adjustment, users=int(r.users), value=r.value,
        abs_lift=r.abs_lift * scale, abs_ci_lower=r.abs_ci_lower * scale, abs_ci_upper=r.abs_ci_upper * scale,
        abs_unit="pp" if kind == "proportion" else unit,
        rel_lift=r.rel_lift, rel_ci_lower=lo, rel_ci_upper=hi,
        p_value=math.nan if ctrl else r.p_value, p_value_adjusted=padj, outcome=outcome,
        value_text=value_text(r.value, kind),
        abs_text="" if ctrl else abs_text(r.abs_lift, kind),
        abs_ci_text="" if ctrl else f"[{abs_text(r.abs_ci_lower, kind)}, {abs_text(r.abs_ci_upper, kind)}]",
        rel_text="" if ctrl else rel_text(r.rel_lift),
        rel_ci_text="" if ctrl else f"[{rel_text(lo)}, {rel_text(hi)}]",
        p_text="" if ctrl else p_text(r.p_value), padj_text="" if ctrl or not _finite(padj) else p_text(padj),
        css=css, flag=flag, margin_text=margin.text() if margin is not None else ("none" if r.guardrail and not ctrl and not adjustment else ""),
        bound_text=bound, **bar,
    )


def results_table(result: MonitorResult, *, alpha: float = 0.05) -> ResultsTable:
    """The table of a monitoring result: each metric's control row, then its treatment rows (each
    followed by its CUPED-adjusted, post-stratified and CUPED++ comparisons when there are)."""
    from battleground.experiment._decide import p_label
    from battleground.experiment.report import reduction_text

    decision = result.decision
    plain = list(result.rows)
    lim = _axis_limit(plain + [a for r in plain if not r.is_control for a in (r.cuped, r.post_stratified, r.cupedpp)
                               if a is not None])
    rows: list[TableRow] = []
    capping = dict(result.capping)  # winsorised metrics say so under their name
    quantiles = dict(result.quantiles)  # and quantile metrics their level ("p90 over users")
    for r in plain:
        verdict = None if r.is_control else decision.for_row(r.metric, r.variant)
        rows.append(_row(r, verdict=verdict, lim=lim, capped=capping.get(r.metric, ""),
                         quantile=quantiles.get(r.metric, "")))
        if r.cuped is not None and not r.is_control:
            rows.append(_row(r.cuped, verdict=verdict, lim=lim, adjustment="CUPED", capped=capping.get(r.metric, "")))
        if r.post_stratified is not None and not r.is_control:
            rows.append(_row(r.post_stratified, verdict=verdict, lim=lim, adjustment="post-stratified",
                             capped=capping.get(r.metric, "")))
        if r.cupedpp is not None and not r.is_control:  # several covariates, with the reduction achieved
            rows.append(_row(r.cupedpp, verdict=verdict, lim=lim, adjustment="CUPED++", capped=capping.get(r.metric, ""),
                             note=reduction_text(r.cupedpp_variance_reduction).replace("adjusted", "adjusted by covariates")))
    return ResultsTable(rows=rows, axis_limit=lim, p_label=p_label(decision.correction),
                        interval=f"{(1 - alpha) * 100:.0f} %")


def results_csv(table: ResultsTable) -> str:
    """The table as CSV, one line per row, the columns of :meth:`TableRow.record`."""
    records = table.records()
    out = io.StringIO()
    if not records:
        return ""
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for rec in records:
        # a spreadsheet would run a cell that starts with = + - @ as a formula: names are text
        writer.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@\t\r" else v) for k, v in rec.items()})
    return out.getvalue()
