"""Browser tests: Playwright drives Debian's ``chromium`` against the dashboard served by uvicorn.

The set-up installs the Debian package ``chromium`` (``apt-get update && apt-get install -y
chromium``) only when ``shutil.which("chromium")`` finds none, and Playwright never downloads a
browser. A failure here fails the suite: nothing is skipped.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOT = "/tmp/dash.png"


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        # xdist workers reach here together; one installs while the others wait on the lock, and
        # dpkg's own lock is waited on too (another apt-get on the machine must not fail the suite).
        with open("/tmp/battleground-chromium-install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = shutil.which("chromium")
            if path is None:
                _apt_install_chromium()
                path = shutil.which("chromium")
    if path is None:
        pytest.fail("apt-get installed chromium but `chromium` is still not on PATH")
    return path


def _apt_install_chromium() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=900"]
    for cmd in (["apt-get", *wait, "update"], ["apt-get", *wait, "install", "-y", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(seeded: Any) -> Iterator[str]:
    """The dashboard of the seeded home as `battleground ui` serves it by default: no token, read-only."""
    yield from _serve(dataclasses.replace(seeded.settings, api_token=None))


@pytest.fixture(scope="module")
def hostile_url(hostile_home: Any) -> Iterator[str]:
    yield from _serve(hostile_home.settings)


def _serve(settings: Any) -> Iterator[str]:
    import uvicorn

    from battleground.web import create_app

    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start the dashboard within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_list_experiment_chart_and_refused_write(browser: Any, base_url: str, seeded: Any) -> None:
    from battleground.experiment.events import open_event_store

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("request", lambda req: None if req.url.startswith(base_url) else problems.append(f"left the box: {req.url}"))

    # the list, with its badges
    page.goto(f"{base_url}/")
    assert page.title() == "Experiments · battleground"
    rows = page.locator("table#experiments tr[data-experiment]")
    assert rows.count() == 5
    checkout = page.locator(f'tr[data-experiment="{seeded.ids["checkout-button"]}"]')
    assert "end condition met" in checkout.inner_text()
    assert "SRM alert" in page.locator(f'tr[data-experiment="{seeded.ids["srm-broken"]}"]').inner_text()
    assert page.locator("#mode").inner_text() == "read-only (no API token)"

    # open an experiment and wait for Plotly to draw its charts
    checkout.get_by_role("link", name="checkout-button").click()
    page.wait_for_url(f"{base_url}/experiments/{seeded.ids['checkout-button']}")
    page.wait_for_selector("#charts .plot-container svg.main-svg", timeout=20_000)
    assert page.locator(".plot-container").count() == 3  # sample size + two lift charts
    assert page.locator("#charts .plot-container .scatterlayer .trace").count() >= 4  # lift + CI band per chart
    assert "Decision: ship treatment" in page.locator("#decision").inner_text()
    page.screenshot(path=SCREENSHOT, full_page=True)

    # a write without a token, from the page itself, is refused and stores nothing
    before = open_event_store(seeded.settings).count()
    answer = page.evaluate(
        """async () => {
            const r = await fetch('/api/events', {method: 'POST', headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({experiment: 'ingest-target', events: [{event_id: 'browser-1',
                variant: 'control', user_id: 'b1', event_type: 'exposure', timestamp: '2022-03-05T10:00:00'}]})});
            return {status: r.status, body: await r.json()};
        }"""
    )
    assert answer["status"] == 403, answer
    assert "read-only" in answer["body"]["detail"]
    assert open_event_store(seeded.settings).count() == before
    refused = [p for p in problems if "status of 403" in p]
    assert len(refused) == 1  # the browser logs the refused write; nothing else went wrong
    assert [p for p in problems if p not in refused] == []
    page.close()


def _watch(page: Any, base_url: str) -> list[str]:
    """Everything that must not happen on a page: a dialog (alert/confirm/prompt), a script error, a
    console error (a CSP violation is one) or a request leaving the box."""
    problems: list[str] = []

    def dialog(d: Any) -> None:
        problems.append(f"dialog {d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("request", lambda req: None if req.url.startswith(base_url) else problems.append(f"left the box: {req.url}"))
    return problems


def test_hostile_names_run_no_script_anywhere(browser: Any, hostile_url: str, hostile_home: Any) -> None:
    from urllib.parse import quote

    from tests.web._hostile import hostile

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = _watch(page, hostile_url)
    h = hostile_home
    urls = ["/", "/?status=running", "/leaderboard", "/bandit", "/bandit/files/battle/report.html",
            f"/experiments/{h.running}", f"/experiments/{h.stopped}", f"/experiments/{quote(h.name, safe='')}",
            f"/experiments/{h.running}/report", f"/experiments/{quote(hostile('url'), safe='')}"]
    for url in urls:
        page.goto(hostile_url + url)
        page.wait_for_load_state("load")
        if url in (f"/experiments/{h.running}", f"/experiments/{h.running}/report", "/leaderboard"):
            # the charts are drawn (from their JSON, by charts.js) under the policy: legends hold the names
            page.wait_for_selector(".plot-container svg.main-svg", timeout=20_000)
        page.wait_for_timeout(150)  # an onload/onerror handler would have fired by now
    # the two keys that name no experiment (a '/' inside a name cannot be routed) answer 404 pages
    missing = [p for p in problems if "status of 404" in p]
    assert len(missing) == 2 and [p for p in problems if p not in missing] == [], problems
    problems.clear()
    # the names are on the page, as text
    page.goto(f"{hostile_url}/experiments/{h.running}")
    assert page.locator("#experiment-name").inner_text().startswith("</script><script>alert('name')")
    assert page.evaluate("document.querySelectorAll('svg[onload], img[onerror]').length") == 0
    # an injected inline script is refused by the policy even if markup got through
    page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';
                     document.body.appendChild(s); }""")
    assert page.evaluate("window.ran === undefined")
    assert any("Content Security Policy" in p for p in problems)
    page.close()


def test_sign_in_create_start_stop_in_the_browser(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sign in with the token, create a draft with the form (an error first, shown beside its field),
    start and stop it; the audit log names who did it; no console error, nothing leaves the box."""
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    home = tmp_path_factory.mktemp("browser-forms") / ".battleground"
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": "browser-token"})
    server = _serve(settings)
    url = next(server)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = _watch(page, url)
        page.goto(f"{url}/")
        assert "sign in" in page.locator("#mode").inner_text()
        page.click("#mode a")
        page.fill("input[name=token]", "browser-token")
        page.fill("input[name=name]", "bea")
        page.click("#signin button[type=submit]")
        page.wait_for_url(f"{url}/")
        assert page.locator("#mode").inner_text() == "signed in as bea"
        assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read the session
        page.click("#new-experiment")
        page.fill("input[name=name]", "blue-banner")
        page.fill("textarea[name=metrics]", "clicks, percentage, click")
        page.click("#experiment-form button[type=submit]")
        assert "kind one of" in page.locator("#error-metrics").inner_text()
        page.fill("textarea[name=metrics]", "clicks, proportion, click, primary")
        page.click("#experiment-form button[type=submit]")
        page.wait_for_selector("#start")
        page.click("#start")
        page.wait_for_selector("#stop")
        page.fill("#actions input[name=reason]", "enough data")
        page.click("#stop")
        page.wait_for_selector("#archive")
        registry = Registry(settings.registry_url)
        record = registry.get("blue-banner")
        assert record.status == "stopped" and record.stop_reason == "enough data"
        assert {e.actor for e in registry.audit_log(record.id)} == {"bea"}
        refused = [p for p in problems if "status of 422" in p]  # the form sent back with its error
        assert len(refused) == 1 and [p for p in problems if p not in refused] == [], problems
        page.close()
    finally:
        next(server, None)


def test_saved_bandit_reports_draw_their_charts_from_the_dashboard_copy(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A saved battle report and its OPE report, served by the dashboard: their linked plotly.min.js and
    charts.js (beside them, or one folder up) come from its /static, and every chart is drawn."""
    import pandas as pd
    from tests.bandit._synthetic import write_experiment

    from battleground.bandit._report import render_ope_report, render_report
    from battleground.bandit.workflow import ExperimentDir, OPEResult
    from battleground.settings import Settings

    home = tmp_path_factory.mktemp("browser-bandit") / ".battleground"
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home)})
    root = write_experiment(home / "bandit" / "exp")
    render_report(ExperimentDir(root))
    table = pd.read_csv(root / "ope" / "ope_table.csv")
    render_ope_report(OPEResult("linear_ts", table, 2.0, 2.1, 1.4, {"n_rounds": 500}, root / "ope"))
    server = _serve(settings)
    url = next(server)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = _watch(page, url)
        scripts: list[str] = []
        page.on("response", lambda r: scripts.append(r.url) if r.url.endswith(".js") else None)
        drawn = {}
        for rel in ("exp/report.html", "exp/ope/report.html"):
            page.goto(f"{url}/bandit/files/{rel}")
            page.wait_for_selector(".plot-container svg.main-svg", timeout=20_000)
            page.wait_for_function("document.querySelectorAll('.bg-chart').length === "
                                   "document.querySelectorAll('.bg-chart .plot-container').length", timeout=20_000)
            drawn[rel] = page.locator(".plot-container").count()
        assert drawn["exp/report.html"] >= 8 and drawn["exp/ope/report.html"] == 2
        assert f"{url}/static/plotly.min.js" in scripts and f"{url}/static/charts.js" in scripts
        assert problems == []
        page.close()
    finally:
        next(server, None)
