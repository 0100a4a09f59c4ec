"""Reports end to end: registry + event store → MakeReport → self-contained HTML and Markdown, one test
per decision rule (ship, don't ship, inconclusive with the sample size still needed, SRM override)."""

from __future__ import annotations

import re
from pathlib import Path

from ab_scenario import build
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.report import MakeReport, ReportResult
from battleground.settings import Settings


def _texts(result: ReportResult) -> tuple[str, str]:
    return Path(result.html_path).read_text(encoding="utf-8"), Path(result.markdown_path).read_text(encoding="utf-8")


def assert_self_contained(html: str, folder: Path | None = None) -> None:
    # the report links the one plotly.js and charts.js written beside it (nothing else, nothing remote)
    # and holds no inline script; the folder opens offline
    sources = re.findall(r"<script[^>]*\bsrc\s*=\s*\"([^\"]*)\"", html, flags=re.IGNORECASE)
    assert sources == ["plotly.min.js", "charts.js"]
    assert "<script>" not in html
    assert not re.search(r"""<link[^>]+href\s*=\s*["']https?://""", html, flags=re.IGNORECASE)
    assert len(html) < 1_000_000
    if folder is not None:
        assert (folder / "plotly.min.js").stat().st_size > 3_000_000
        assert "Plotly.newPlot" in (folder / "charts.js").read_text(encoding="utf-8")


def test_ship(settings: Settings, tmp_path: Path) -> None:
    sc = build(settings, target_sample_size=1000)
    result = MakeReport(client=settings).create_report(sc.id, out=tmp_path / "ship.html")
    assert result.verdict == "ship" and result.headline == "ship treatment"
    assert result.markdown_path == str(tmp_path / "ship.md")
    html, md = _texts(result)
    assert_self_contained(html, tmp_path)
    assert html.count('class="bg-chart"') == 4  # one cumulative-lift chart per metric
    assert "A green checkout button raises conversion" in html and "Decision: ship treatment" in html
    assert md.startswith("# A/B report: checkout-button")
    assert "## Decision: ship treatment" in md and "guardrail errors not significantly worse in treatment" in md
    assert "Decided by: the success-metric clause." in md and "Rule: Ship a variant only if" in md
    assert "success metric conversion improved in treatment" in md
    # Planned vs actual sample size, the SRM check, and the per-metric table with Holm-adjusted p-values.
    assert "| control | 1,000 |" in md and "## Sample-ratio mismatch" in md and "**OK**" in md
    assert "| p (Holm) |" in md and "| p (raw) |" in md and "| conversion | treatment |" in md and "| ctr | treatment |" in md


def test_dont_ship_wrong_direction(settings: Settings, tmp_path: Path) -> None:
    sc = build(settings, conversion=(0.15, 0.10), seed=11, target_sample_size=1000)
    result = MakeReport(client=settings).create_report(sc.id, out=tmp_path / "r.html")
    _, md = _texts(result)
    assert result.verdict == "dont_ship" and result.headline == "don't ship"
    assert "success metric conversion got significantly worse in treatment" in md
    assert "Decided by: the deterioration clause." in md


def test_dont_ship_guardrail_harmed(settings: Settings, tmp_path: Path) -> None:
    sc = build(settings, users=4000, errors=(0.02, 0.06), seed=5, target_sample_size=1000)
    result = MakeReport(client=settings).create_report(sc.id, out=tmp_path / "r.html")
    html, md = _texts(result)
    assert result.verdict == "dont_ship"
    assert "guardrail errors got significantly worse in treatment" in md
    assert "guardrail harmed" in html


def test_inconclusive_says_how_many_users_are_still_needed(settings: Settings, tmp_path: Path) -> None:
    planned = build(settings, users=1200, conversion=(0.10, 0.105), target_sample_size=5000, seed=12)
    result = MakeReport(client=settings).create_report(planned.id, out=tmp_path / "a.html")
    _, md = _texts(result)
    assert result.verdict == "collecting" and "## Decision: collecting data (12 % of plan)" in md
    assert planned.registry.get(planned.id).end_conditions.target_sample_size == 5000
    # The smaller arm decides how many more users are needed.
    m = re.search(r"Sample size still needed: ([\d,]+) more users per variant to reach the planned 5,000", md)
    assert m is not None and 4000 < int(m.group(1).replace(",", "")) < 4500
    unplanned = build(settings, name="unplanned", users=1200, conversion=(0.10, 0.105), seed=12)
    unplanned.registry.stop(unplanned.id, "no plan: the stop is the horizon")
    res2 = MakeReport(client=settings).create_report("unplanned", out=tmp_path / "b.html")
    _, md2 = _texts(res2)
    assert res2.verdict == "inconclusive"
    assert re.search(r"Sample size still needed: about [\d,]+ users per variant \([\d,]+ more\)", md2)
    assert unplanned.id != planned.id


def test_srm_overrides_the_decision(settings: Settings, tmp_path: Path) -> None:
    sc = build(settings, users=4000, drop_treatment=0.2, seed=2)  # a real lift, but 20 % of exposures lost
    result = MakeReport(client=settings).create_report(sc.id, out=tmp_path / "r.html")
    html, md = _texts(result)
    assert result.verdict == "data_quality"
    assert result.headline == "data quality problem: do not trust these results"
    assert "## Decision: data quality problem: do not trust these results" in md and "**ALERT**" in md
    assert "do not trust these results" in html


def test_default_location_and_latest_experiment(settings: Settings) -> None:
    build(settings, users=600)
    result = MakeReport(client=settings).create_report()  # the seed's call: no id → the latest one
    assert result.html_path == str(settings.home / "reports" / "experiment-1.html")
    assert Path(result.html_path).is_file() and Path(result.markdown_path).is_file()


def test_cli_report(settings: Settings, tmp_path: Path) -> None:
    build(settings, target_sample_size=1000)
    out = tmp_path / "cli" / "report.html"
    env = {"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": ""}
    result = CliRunner().invoke(app, ["experiment", "report", "checkout-button", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "decision: ship treatment" in result.output and out.is_file() and out.with_suffix(".md").is_file()
    assert_self_contained(out.read_text(encoding="utf-8"))
    missing = CliRunner().invoke(app, ["experiment", "report", "42"], env=env)
    assert missing.exit_code == 1 and "no experiment 42" in missing.output


def test_sequential_report_names_the_method(settings: Settings, tmp_path: Path) -> None:
    sc = build(settings, users=1500, sequential=True, seed=13)
    _, md = _texts(MakeReport(client=settings).create_report(sc.id, out=tmp_path / "s.html"))
    assert "mSPRT always-valid p-values and CIs" in md and "always valid under daily peeking" in md
