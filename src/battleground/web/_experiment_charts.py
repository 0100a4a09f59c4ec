"""The experiment page's charts beyond the cumulative lift: users against plan and the daily view.

Every chart reads the daily frame of :meth:`Monitor.get_daily_result` (cumulative numbers per day), has
a title and a text alternative, and ticks whole days from one day of data on.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from battleground._html import chart, day_axis, figure, hline

if TYPE_CHECKING:
    import pandas as pd

    from battleground.experiment.monitoring import ExperimentInfo

__all__ = ["PALETTE", "daily_charts", "sample_size_chart"]

PALETTE = ["#5f6368", "#1a73e8", "#e37400", "#9334e6", "#188038", "#d01884"]
_LAYOUT: dict[str, Any] = {"margin": {"l": 50, "r": 20, "t": 50, "b": 40}}


def _primary(info: ExperimentInfo) -> str:
    return ([m.name for m in info.metrics if m.primary] or [info.metrics[0].name])[0]


def sample_size_chart(info: ExperimentInfo, daily: pd.DataFrame | None) -> str:
    """Users per variant over time against the planned sample size (an HTML div)."""
    if daily is None or daily.empty or not info.metrics:
        return ""
    sub = daily[daily["metric"] == _primary(info)]
    if sub.empty:
        return ""
    traces = []
    for i, v in enumerate(info.variants):
        g = sub[sub["variant"] == v.name]
        traces.append({
            "type": "scatter", "x": [d.strftime("%Y-%m-%d") for d in g["date"]], "y": [int(u) for u in g["users"]],
            "mode": "lines+markers", "name": v.name,
            "line": {"color": PALETTE[i % len(PALETTE)], "dash": "dash" if v.is_control else "solid"},
        })
    extra: dict[str, Any] = {}
    if info.target_sample_size:
        extra["shapes"] = [hline(info.target_sample_size, "#c5221f", "dot")]
        extra["annotations"] = [{"xref": "paper", "x": 1, "y": info.target_sample_size, "xanchor": "right",
                                 "yanchor": "bottom", "showarrow": False,
                                 "text": f"planned {info.target_sample_size:,} per variant"}]
    fig = figure(traces, "users per variant: actual vs plan", height=300, xaxis=day_axis(sub["date"]), **_LAYOUT, **extra)
    last = sub.sort_values("date").groupby("variant").tail(1)
    alt = "users per variant by day; latest " + ", ".join(f"{r['variant']} {int(r['users']):,}" for r in last.to_dict("records"))
    if info.target_sample_size:
        alt += f"; planned {info.target_sample_size:,} per variant"
    return chart(fig, alt=alt)


def daily_rows(daily: pd.DataFrame, metric: str) -> list[dict[str, Any]]:
    """Per variant and day: the users who arrived that day and the day's increment of the metric.

    From the cumulative frame: new users = users(d) − users(d−1) and the day's value =
    ((value·users)(d) − (value·users)(d−1)) / new users: the metric's total added that day (converting
    users, revenue, ...) per user added that day. A ratio metric has no per-user total (value NaN).
    """
    out: list[dict[str, Any]] = []
    sub = daily[daily["metric"] == metric].sort_values("date")
    for variant, g in sub.groupby("variant", sort=False):
        prev_users, prev_total = 0, 0.0
        for r in g.to_dict("records"):
            users = int(r["users"])
            total = float(r["value"]) * users if math.isfinite(float(r["value"])) else math.nan
            new = users - prev_users
            value = math.nan
            if r["kind"] != "ratio" and new > 0 and math.isfinite(total) and math.isfinite(prev_total):
                value = (total - prev_total) / new
            out.append({"date": r["date"], "variant": str(variant), "new_users": new, "value": value})
            prev_users, prev_total = users, total
    return out


def daily_charts(info: ExperimentInfo, daily: pd.DataFrame | None) -> list[str]:
    """The daily view: per metric, each variant's day-by-day increment (see :func:`daily_rows`)."""
    if daily is None or daily.empty:
        return []
    charts: list[str] = []
    order = {v.name: i for i, v in enumerate(info.variants)}
    for m in info.metrics:
        rows = daily_rows(daily, m.name) if m.kind != "ratio" else []
        if not rows:
            continue
        scale, suffix = (100.0, " %") if m.kind == "proportion" else (1.0, "")
        variants = sorted({r["variant"] for r in rows}, key=lambda v: order.get(v, 99))
        traces = []
        for variant in variants:
            g = [r for r in rows if r["variant"] == variant]
            i = order.get(variant, 0)
            traces.append({
                "type": "bar", "x": [r["date"].strftime("%Y-%m-%d") for r in g],
                "y": [r["value"] * scale for r in g], "name": variant, "marker": {"color": PALETTE[i % len(PALETTE)]},
                "customdata": [r["new_users"] for r in g],
                "hovertemplate": "%{x}: %{y:.3g}" + suffix + " (%{customdata:,} new users)<extra>" + variant + "</extra>",
            })
        unit = "added per new user, %" if m.kind == "proportion" else "added per new user"
        fig = figure(traces, f"{m.name}: daily value by variant ({unit})", height=320, barmode="group",
                     xaxis=day_axis([r["date"] for r in rows]), yaxis={"ticksuffix": suffix}, **_LAYOUT)
        alt = (f"{m.name}: each variant's daily increment per new user over {len({r['date'] for r in rows})} days; "
               + "; ".join(f"{r['variant']} {r['new_users']:,} new users on {r['date']:%Y-%m-%d}" for r in rows[-len(variants):]))
        charts.append(chart(fig, alt=alt))
    return charts
