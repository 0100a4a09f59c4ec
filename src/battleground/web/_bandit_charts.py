"""The bandit page's charts, drawn from the CSV summaries under ``<home>/bandit`` (the same numbers as
the battle and OPE reports): agents ranked with 95 % intervals, reward over steps, the OPE forest plot.

Columns are recognised by name, so a summary of another shape is simply not charted (its table stays).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from battleground._html import ci_half_width, forest_chart, ranked_chart, steps_chart

if TYPE_CHECKING:
    from battleground.web._bandit_views import BanditFile

__all__ = ["bandit_charts"]

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
    half, note = [], "no interval in the summary"
    for r in f.rows:
        s = _num(r[std]) if std is not None else math.nan
        h = ci_half_width(s, _num(r[n]) if n is not None else math.nan)
        if math.isfinite(h):
            half.append(h)
            note = "95 % interval of the mean (1.96·std/√n)"
        else:
            half.append(s)
            note = "± one std over trajectories" if std is not None else note
    title = f"{f.columns[value].replace('_', ' ')} by {f.columns[who]}"
    return ranked_chart([r[who] for r in f.rows], [_num(r[value]) for r in f.rows], half, title=title, note=note,
                        where=f.path)


def _steps(f: BanditFile) -> str:
    who, step, value = _col(f, "agent", "policy"), _col(f, "step"), _col(f, "revenue", "reward")
    if who is None or step is None or value is None:
        return ""
    agents: dict[str, tuple[list[float], list[float]]] = {}
    for r in f.rows:
        xs, ys = agents.setdefault(r[who], ([], []))
        xs.append(_num(r[step]))
        ys.append(_num(r[value]))
    return steps_chart(agents, title=f"{f.columns[value]} per step by {f.columns[who]} — {f.path}", y_title=f.columns[value])


def _forest(f: BanditFile) -> str:
    """OPE estimates with their intervals, one row per estimator (a forest plot)."""
    est, value = _col(f, "estimator"), _col(f, "value", "estimate")
    lo, hi = _col(f, "ci_low", "ci_lower"), _col(f, "ci_high", "ci_upper")
    if est is None or value is None or lo is None or hi is None:
        return ""
    truth = _col(f, "true_value")
    t = _num(f.rows[0][truth]) if truth is not None and f.rows else None
    return forest_chart([r[est] for r in f.rows], [_num(r[value]) for r in f.rows], [_num(r[lo]) for r in f.rows],
                        [_num(r[hi]) for r in f.rows], title="off-policy estimates with intervals", truth=t, where=f.path)


def bandit_charts(files: list[BanditFile]) -> list[str]:
    """Every chart the CSV summaries support, in the order ranked agents, steps, OPE."""
    csvs = [f for f in files if f.kind == "csv" and not f.error and f.rows]
    out = [c for f in csvs for c in [_ranked(f)] if c]
    out += [c for f in csvs for c in [_steps(f)] if c]
    out += [c for f in csvs for c in [_forest(f)] if c]
    return out
