"""Accessibility and small screens: axe-core (the npm package, ``npm ci`` at the repo root) injected into
every page by Playwright in Debian's chromium finds no serious or critical violation at 1400 and 400 px,
and no page scrolls sideways at 400 px (wide tables scroll inside their card).

Screenshots of every page at both widths go to ``$BATTLEGROUND_SCREENSHOTS`` (default: the test's tmp
folder) for a person to look at.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from tests.web.test_web_browser import _watch, base_url, browser  # noqa: F401 - fixtures

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (1400, 400)


def _axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing at {AXE.relative_to(AXE.parents[2])}: run `npm ci` at the repo root "
                    "(`make install` does when npm is installed)")
    return AXE.read_text(encoding="utf-8")


def _pages(seeded: Any) -> list[tuple[str, str]]:
    exp = seeded.ids["checkout-button"]
    return [
        ("list", "/"), ("experiment", f"/experiments/{exp}"), ("experiment-daily", f"/experiments/{exp}?view=daily"),
        ("experiment-window", f"/experiments/{exp}?end=2022-03-01"), ("srm", f"/experiments/{seeded.ids['srm-broken']}"),
        ("draft", f"/experiments/{seeded.ids['draft-one']}"), ("report", f"/experiments/{exp}/report"),
        ("leaderboard", "/leaderboard"), ("model-version", "/models/churn/1"), ("bandit", "/bandit"), ("signin", "/signin"), ("missing", "/experiments/99999"),
    ]


def _violations(page: Any) -> list[dict[str, Any]]:
    found = page.evaluate(
        """async () => {
            const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']}});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' :: ' + n.failureSummary)}));
        }"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_every_page_passes_axe_at_1400_and_400_px(
    browser: Any, base_url: str, seeded: Any, mlflow_runs: Any, tmp_path: Path  # noqa: F811
) -> None:
    axe = _axe_source()
    shots = Path(os.environ.get("BATTLEGROUND_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for width in WIDTHS:
        # the dashboard's policy forbids injected script; axe is the test's own, so this context lets it in
        context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
        page = context.new_page()
        problems = _watch(page, base_url)
        for name, url in _pages(seeded):
            page.goto(base_url + url)
            page.wait_for_load_state("load")
            if page.locator("div.bg-chart").count():
                page.wait_for_selector(".plot-container svg.main-svg", timeout=20_000)
            page.evaluate(axe)
            for v in _violations(page):
                failures.append(f"{name} at {width} px: {v['impact']} {v['id']} ({v['help']}): {v['nodes']}")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            if overflow > 1 and name != "report":  # a saved report is its own document, wide tables and all
                wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                                 && ![...e.children].some(c => c.getBoundingClientRect().right > document.documentElement.clientWidth + 1))
                    .slice(0, 3).map(e => e.tagName + '.' + e.className)""")
                failures.append(f"{name} at {width} px scrolls sideways by {overflow} px: {wide}")
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        context.close()
        unexpected = [p for p in problems if "status of 404" not in p]
        assert unexpected == [], unexpected
    assert failures == [], "\n".join(failures)


def test_nav_stays_usable_at_400_px(browser: Any, base_url: str, seeded: Any) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 400, "height": 800})
    page.goto(f"{base_url}/experiments/{seeded.ids['checkout-button']}")
    boxes = [page.locator(f"header nav a:nth-child({i})").bounding_box() for i in range(1, 5)]
    for a, b in itertools.pairwise(boxes):
        assert a is not None and b is not None
        same_line = abs(a["y"] - b["y"]) < 4
        assert not same_line or a["x"] + a["width"] <= b["x"]  # links never overlap
    assert all(b is not None and b["x"] + b["width"] <= 400 for b in boxes)
    # the results table scrolls inside its card instead of pushing the page wide
    table = page.locator("#results-table")
    assert table.evaluate("t => t.parentElement.scrollWidth > t.parentElement.clientWidth")
    page.close()


def test_a_saved_report_draws_its_charts_offline(browser: Any, seeded: Any, tmp_path: Path) -> None:  # noqa: F811
    """Opened from disk, the report's shared plotly.js beside it draws every chart; nothing is fetched."""
    from battleground.experiment.report import MakeReport

    result = MakeReport(client=seeded.settings).create_report(seeded.ids["checkout-button"], out=tmp_path / "r.html")
    page = browser.new_page()
    problems = _watch(page, "file://")
    page.goto(Path(result.html_path).as_uri())
    page.wait_for_selector(".plot-container svg.main-svg", timeout=20_000)
    assert page.locator(".plot-container").count() == 2 and problems == []
    page.close()
