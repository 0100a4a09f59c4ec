"""Hostile text everywhere: no page, report or reply carries markup that runs, and every reply carries
the security headers (the browser half, with Playwright, is in ``test_web_browser.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.web._hostile import hostile

TOKEN = "web-test-token"

HTML = {"accept": "text/html"}


class _Scan(HTMLParser):
    """Every element that could run script: event-handler attributes, ``javascript:`` URLs, scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.inline: list[str] = []  # the text of each inline script that browsers would run
        self._in_script: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag in ("iframe", "object", "embed", "svg", "base"):
            self.problems.append(f"<{tag}> element")
        if tag == "script":
            self._in_script = dict(attrs)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script is not None:
            attrs, text = self._in_script, "".join(self._text)
            self._in_script = None
            if attrs.get("type") == "application/json":
                if "</" in text:
                    self.problems.append("a JSON data block that closes its element")
                return
            if attrs.get("src"):
                # the dashboard's /static, or the shared copies a saved report links beside itself
                if not str(attrs["src"]).startswith("/static/") and str(attrs["src"]).removeprefix("../") not in ("plotly.min.js", "charts.js"):
                    self.problems.append(f"script from {attrs['src']!r}")
                return
            self.inline.append(text)


def scan(html: str) -> tuple[list[str], list[str]]:
    """(problems, inline scripts) of one HTML document."""
    parser = _Scan()
    parser.feed(html)
    parser.close()
    return parser.problems, parser.inline


def _allowed_inline() -> set[str]:
    """The inline scripts a report may carry: plotly.js and the chart drawer, both our own files."""
    from battleground._html import report_scripts

    return set(report_scripts())


def assert_inert(html: str, where: str) -> None:
    problems, inline = scan(html)
    assert problems == [], f"{where}: {problems[:5]}"
    unknown = [s[:200] for s in inline if s not in _allowed_inline()]
    assert unknown == [], f"{where}: inline scripts {unknown}"


def _pages(h: Any) -> Iterator[str]:
    yield from ("/", "/?status=running", "/?status=stopped", "/leaderboard", "/bandit")
    for key in (h.running, h.stopped, quote(h.name, safe="")):
        yield f"/experiments/{key}"
        yield f"/experiments/{key}/report"
    yield "/bandit/files/battle/report.html"
    yield f"/experiments/{quote(hostile('url'), safe='')}"  # a 404 that echoes the key
    yield f"/no-such-page/{quote(hostile('path'), safe='')}"


@pytest.fixture(scope="module")
def hostile_client(hostile_home: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    with TestClient(create_app(hostile_home.settings), base_url="http://127.0.0.1") as c:
        yield c


def test_no_page_carries_hostile_markup(hostile_client: Any, hostile_home: Any) -> None:
    seen = 0
    for url in _pages(hostile_home):
        r = hostile_client.get(url, headers=HTML)
        assert r.status_code in (200, 404), (url, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), url
        assert_inert(r.text, url)
        seen += 1
    assert seen == 14
    # the hostile texts are shown, as text
    page = hostile_client.get(f"/experiments/{hostile_home.running}", headers=HTML).text
    for field in ("name", "hypothesis", "description", "owner", "control", "metric", "note", "actor"):
        assert "&lt;svg onload=alert(&#39;" + field in page, field


def test_json_api_replies_are_json_not_html(hostile_client: Any, hostile_home: Any) -> None:
    for url in (f"/api/experiments/{hostile_home.running}", f"/api/experiments/{hostile_home.running}/results",
                "/api/experiments", f"/api/experiments/{quote(hostile('key'), safe='')}"):
        r = hostile_client.get(url)
        assert r.headers["content-type"] == "application/json", url


def test_reports_written_to_disk_are_inert(hostile_home: Any, tmp_path: Path) -> None:
    from battleground.experiment.report import MakeReport

    result = MakeReport(client=hostile_home.settings).create_report(hostile_home.running, out=tmp_path / "r.html")
    html = Path(result.html_path).read_text(encoding="utf-8")
    assert_inert(html, "experiment report")
    assert "&lt;script&gt;alert(&#39;hypothesis&#39;)" in html
    # the saved file carries its own policy: only our two scripts (beside it) may run when it is opened
    assert '<meta http-equiv="Content-Security-Policy"' in html
    from battleground._html import report_scripts

    assert [(tmp_path / n).read_text(encoding="utf-8") for n in ("plotly.min.js", "charts.js")] == list(report_scripts())
    bandit = (hostile_home.settings.home / "bandit" / "battle" / "report.html").read_text(encoding="utf-8")
    assert_inert(bandit, "bandit report")
    assert '<meta http-equiv="Content-Security-Policy"' in bandit


def test_model_evaluation_report_is_inert(tmp_path: Path) -> None:
    import numpy as np

    from battleground.model.eval import EvalClassifierModel

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    pred = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    paths = EvalClassifierModel().plots(pred, y, tmp_path, title=hostile("model-title"))
    html = paths["html"].read_text(encoding="utf-8")
    assert_inert(html, "evaluation report")
    assert "&lt;script&gt;alert(&#39;model-title&#39;)" in html


def test_every_reply_carries_the_security_headers(hostile_client: Any, hostile_home: Any) -> None:
    urls = [*_pages(hostile_home), "/api/health", "/api/experiments/999999", "/static/plotly.min.js",
            "/static/charts.js", "/api/openapi.json"]
    for url in urls:
        r = hostile_client.get(url, headers=HTML)
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, url
        assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0], url
        assert r.headers.get("x-content-type-options") == "nosniff", url
        assert r.headers.get("x-frame-options") == "DENY", url
    # a refused write too
    r = hostile_client.post("/api/events", json={})
    assert r.status_code == 401 and r.headers.get("x-frame-options") == "DENY"


def test_the_policy_allows_exactly_the_report_scripts(hostile_client: Any) -> None:
    import base64

    from battleground._html import report_scripts

    csp = hostile_client.get("/", headers=HTML).headers["content-security-policy"]
    for script in report_scripts():
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert TOKEN not in csp
