"""The saved bandit reports: charts first (agents ranked with 95 % intervals, reward over steps, the OPE
forest plot), long tables folded, and one shared plotly.min.js instead of 4.8 MB inlined per report."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from tests.bandit._synthetic import write_experiment

from battleground._html import report_scripts
from battleground.bandit._report import render_ope_report, render_report
from battleground.bandit.workflow import ExperimentDir, OPEResult

_SCRIPTS = re.compile(r'<script src="([^"]+)"></script>')


def _figures(html: str) -> list[dict]:
    return [json.loads(unescape(m)) for m in re.findall(r'data-figure="([^"]*)"', html)]


def _title(fig: dict) -> str:
    return str(fig["layout"]["title"]["text"])


def test_battle_report_leads_with_the_three_charts_and_links_one_plotly(tmp_path: Path) -> None:
    exp = ExperimentDir(write_experiment(tmp_path / "exp"))
    html = render_report(exp).read_text(encoding="utf-8")
    assert _SCRIPTS.findall(html) == ["plotly.min.js", "charts.js"] and "<script>" not in html
    assert len(html.encode()) < 500_000
    assert [(exp.root / n).read_text(encoding="utf-8") for n in ("plotly.min.js", "charts.js")] == list(report_scripts())
    figs = _figures(html)
    titles = [_title(f) for f in figs]
    assert titles[0].startswith("Agents ranked by accumulated revenue per customer (95 % interval")
    assert titles[1] == "Revenue per customer and step (mean over trajectories)"
    assert titles[2].startswith("Off-policy estimates of linear_ts (revenue per round) with intervals")
    ranked = figs[0]["data"][0]
    assert ranked["y"] == ["random", "epsilon_greedy", "linear_ucb", "linear_ts"]  # best drawn on top
    assert ranked["x"] == [25.0, 30.0, 35.0, 40.0]
    # 95 % interval of the mean of 4 trajectories: 1.96 · std / 2
    assert ranked["error_x"]["array"] == pytest.approx([1.96 * s / 2 for s in (0.8, 0.7, 0.6, 0.5)], rel=1e-12)
    forest = figs[2]
    assert forest["data"][0]["y"] == ["ips", "snips", "dm", "dr", "sndr"]
    assert [s["x0"] for s in forest["layout"]["shapes"]] == [2.0, 1.4]  # truth, then the logging policy
    # sections: all customers (charts, then its table), the OPE forest, then the segments
    assert html.index("Revenue per customer and step") < html.index("<table>") < html.index("<h2>Off-policy evaluation</h2>") \
        < html.index("<h2>Per price-sensitivity segment</h2>")
    # the 20-row segment table starts folded; the 4-row one is open
    assert len(re.findall(r"<details><summary>20 rows</summary>", html)) == 1
    assert html.count("<details>") == 1


def test_without_ope_the_report_has_no_forest_and_inlines_on_request(tmp_path: Path) -> None:
    exp = ExperimentDir(write_experiment(tmp_path / "exp", with_ope=False))
    html = render_report(exp, shared_scripts=False).read_text(encoding="utf-8")
    assert "Off-policy" not in html and _SCRIPTS.findall(html) == [] and len(html) > 3_000_000
    assert not (exp.root / "plotly.min.js").exists()


def test_ope_report_is_a_forest_plot_linking_the_folder_above(tmp_path: Path) -> None:
    root = write_experiment(tmp_path / "exp")
    table = pd.read_csv(root / "ope" / "ope_table.csv")
    result = OPEResult("linear_ts", table, 2.0, 2.1, 1.4, {"n_rounds": 500, "ess": 120.0, "trustworthy": True}, root / "ope")
    html = render_ope_report(result).read_text(encoding="utf-8")
    assert _SCRIPTS.findall(html) == ["../plotly.min.js", "../charts.js"] and len(html.encode()) < 500_000
    assert (root / "plotly.min.js").is_file() and not list((root / "ope").glob("*.js"))
    forest = _figures(html)[0]
    assert _title(forest) == ("Off-policy estimates of linear_ts (revenue per round) with intervals "
                              "(dashed: true value, dotted: random logging policy)")
    assert forest["data"][0]["error_x"]["arrayminus"] == pytest.approx([0.3] * 5)
