"""The bandit page's charts, drawn from the CSV summaries under ``<home>/bandit`` (the same numbers as
the battle and OPE reports): agents ranked with 95 % intervals, reward over steps, the OPE forest plot.

Columns are recognised by name, so a summary of another shape is simply not charted (its table stays).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from battleground._html import chart, figure

if TYPE_CHECKING:
    from battleground.web._bandit_views import BanditFile

__all__ = ["bandit_charts"]

_LAYOUT: dict[str, Any] = {"margin": {"l": 140, "r": 30, "t": 50, "b": 45}}


def _col(f: BanditFile, *names: str) -> int | None:
    for n in names:
        if n in f.columns:
            return f.columns.index(n)
    return None


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _ranked(f: BanditFile) -> str:
    """Agents (or policies) by accumulated revenue, best on top, with 1.96·std/√n (or ±std) bars."""
    who, value = _col(f, "agent", "policy"), _col(f, "accumulated_revenue", "revenue_mean", "revenue")
    if who is None or value is None or len({r[who] for r in f.rows}) != len(f.rows):
        return ""  # one line per agent only (a per-segment table is not a ranking)
    std, n = _col(f, "accumulated_revenue_std", "revenue_std"), _col(f, "n_trajectories")
    rows = sorted(f.rows, key=lambda r: _num(r[value]) if math.isfinite(_num(r[value])) else -math.inf)
    half, note = [], "no interval in the summary"
    for r in rows:
        s = _num(r[std]) if std is not None else math.nan
        k = _num(r[n]) if n is not None else math.nan
        if math.isfinite(s) and math.isfinite(k) and k > 0:
            half.append(1.96 * s / math.sqrt(k))
            note = "95 % interval of the mean (1.96·std/√n)"
        else:
            half.append(s)
            note = "± one std over trajectories" if std is not None else note
    trace = {"type": "bar", "orientation": "h", "y": [r[who] for r in rows], "x": [_num(r[value]) for r in rows],
             "marker": {"color": "#1558b0"}, "error_x": {"type": "data", "array": half, "color": "#1d2330"}}
    title = f"{f.columns[value].replace('_', ' ')} by {f.columns[who]} ({note}) — {f.path}"
    fig = figure([trace], title, height=max(220, 60 + 32 * len(rows)), **_LAYOUT)
    best = rows[-1] if rows else None
    alt = f"{title}; best {best[who]} {_num(best[value]):,.4g}" if best else title
    return chart(fig, alt=alt)


def _steps(f: BanditFile) -> str:
    who, step, value = _col(f, "agent", "policy"), _col(f, "step"), _col(f, "revenue", "reward")
    if who is None or step is None or value is None:
        return ""
    agents: dict[str, tuple[list[float], list[float]]] = {}
    for r in f.rows:
        xs, ys = agents.setdefault(r[who], ([], []))
        xs.append(_num(r[step]))
        ys.append(_num(r[value]))
    traces = [{"type": "scatter", "mode": "lines", "name": a, "x": xs, "y": ys} for a, (xs, ys) in agents.items()]
    title = f"{f.columns[value]} per step by {f.columns[who]} — {f.path}"
    fig = figure(traces, title, height=320, xaxis={"title": {"text": "step"}}, **{**_LAYOUT, "margin": {"l": 50, "r": 20, "t": 50, "b": 45}})
    return chart(fig, alt=f"{title}: {len(agents)} lines over {len({r[step] for r in f.rows})} steps")


def _forest(f: BanditFile) -> str:
    """OPE estimates with their intervals, one row per estimator (a forest plot)."""
    est, value = _col(f, "estimator"), _col(f, "value", "estimate")
    lo, hi = _col(f, "ci_low", "ci_lower"), _col(f, "ci_high", "ci_upper")
    if est is None or value is None or lo is None or hi is None:
        return ""
    v = [_num(r[value]) for r in f.rows]
    trace = {"type": "scatter", "mode": "markers", "y": [r[est] for r in f.rows], "x": v,
             "marker": {"size": 10, "color": "#1558b0"},
             "error_x": {"type": "data", "symmetric": False, "array": [_num(r[hi]) - x for r, x in zip(f.rows, v, strict=True)],
                         "arrayminus": [x - _num(r[lo]) for r, x in zip(f.rows, v, strict=True)], "color": "#1558b0"}}
    shapes = []
    truth = _col(f, "true_value")
    if truth is not None and f.rows and math.isfinite(_num(f.rows[0][truth])):
        t = _num(f.rows[0][truth])
        shapes.append({"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": t, "x1": t,
                       "line": {"color": "#137333", "dash": "dash"}})
    title = f"off-policy estimates with intervals{' (dashed: true value)' if shapes else ''} — {f.path}"
    fig = figure([trace], title, height=max(220, 60 + 36 * len(f.rows)), shapes=shapes, **_LAYOUT)
    alt = title + "; " + "; ".join(f"{r[est]} {_num(r[value]):.4g} [{_num(r[lo]):.4g}, {_num(r[hi]):.4g}]" for r in f.rows[:12])
    return chart(fig, alt=alt)


def bandit_charts(files: list[BanditFile]) -> list[str]:
    """Every chart the CSV summaries support, in the order ranked agents, steps, OPE."""
    csvs = [f for f in files if f.kind == "csv" and not f.error and f.rows]
    out = [c for f in csvs for c in [_ranked(f)] if c]
    out += [c for f in csvs for c in [_steps(f)] if c]
    out += [c for f in csvs for c in [_forest(f)] if c]
    return out
