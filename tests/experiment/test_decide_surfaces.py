"""The decision rule seen through every surface (report, JSON API, CLI, dashboard page) on one real
registry + event store: a fixed-horizon test decides nothing before its plan is reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ab_scenario import build
from typer.testing import CliRunner

from battleground.cli import app
from battleground.experiment.report import MakeReport
from battleground.settings import Settings

HTML = {"accept": "text/html"}


def _client(settings: Settings) -> Any:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def _surfaces(settings: Settings, key: Any, tmp_path: Path) -> dict[str, str]:
    """The decision text of each surface: report HTML and Markdown, API verdict + headline, CLI, page."""
    report = MakeReport(client=settings).create_report(key, out=tmp_path / "r.html")
    env = {"BATTLEGROUND_HOME": str(settings.home), "BATTLEGROUND_DATABASE_URL": ""}
    cli = CliRunner().invoke(app, ["experiment", "status", str(key)], env=env, terminal_width=200)
    assert cli.exit_code == 0, cli.output
    with _client(settings) as client:
        body = client.get(f"/api/experiments/{key}/results").json()
        page = client.get(f"/experiments/{key}", headers=HTML).text
    return {
        "report_verdict": report.verdict,
        "html": Path(report.html_path).read_text(encoding="utf-8"),
        "md": Path(report.markdown_path).read_text(encoding="utf-8"),
        "api_verdict": body["decision"]["verdict"], "api_headline": body["decision"]["headline"],
        "cli": cli.output, "page": page,
    }


def test_fixed_horizon_before_its_plan_decides_nothing_anywhere(settings: Settings, tmp_path: Path) -> None:
    # ~1500 users per arm of a planned 2000 (75 %), and treatment converts far better (15 % vs 10 %).
    sc = build(settings, users=3000, target_sample_size=2000)
    s = _surfaces(settings, sc.id, tmp_path)
    assert s["report_verdict"] == "collecting" and s["api_verdict"] == "collecting"
    assert s["api_headline"].startswith("collecting data (7") and s["api_headline"].endswith("% of plan)")
    for surface in ("html", "md", "cli", "page"):
        text = s[surface]
        assert "collecting data (7" in text, surface
        assert "ship treatment" not in text and "Decision: ship" not in text, surface
    assert "nan" not in s["md"].lower().replace("nanos", "")


def test_fixed_horizon_at_its_plan_ships_everywhere(settings: Settings, tmp_path: Path) -> None:
    sc = build(settings, users=3000, target_sample_size=1400)
    s = _surfaces(settings, sc.id, tmp_path)
    assert s["report_verdict"] == "ship" and s["api_verdict"] == "ship"
    assert s["api_headline"] == "ship treatment"
    for surface in ("html", "md", "cli", "page"):
        assert "ship treatment" in s[surface], surface


def test_sequential_is_not_held_back_by_its_plan(settings: Settings, tmp_path: Path) -> None:
    # 15 % of its planned sample: a sequential design may decide (whatever the always-valid test says)
    sc = build(settings, users=3000, target_sample_size=10_000, sequential=True)
    s = _surfaces(settings, sc.id, tmp_path)
    assert s["api_verdict"] == s["report_verdict"] != "collecting"
    assert "collecting data" not in s["md"] and "collecting data" not in s["cli"]
