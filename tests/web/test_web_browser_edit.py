"""The draft edit form in Debian's chromium (issue 13): edit a metric in place and choose a layer range,
with hostile text in the fields, at 1400 and 400 px; axe-core finds no serious or critical violation on
the form (with an error shown and without), no script runs, nothing leaves the box, and the page does
not scroll sideways at 400 px."""

from __future__ import annotations

from typing import Any

import pytest
from tests.web.test_web_a11y import _axe_source, _violations
from tests.web.test_web_browser import _serve, _watch, browser  # noqa: F401 - fixtures

TOKEN = "edit-browser-token"
HOSTILE = '"><svg onload=alert(1)><img src=x onerror=alert(2)>'


def _overflow(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


@pytest.mark.parametrize("width", [1400, 400])
def test_edit_a_metric_and_choose_a_layer_in_the_browser(
        browser: Any, tmp_path_factory: pytest.TempPathFactory, width: int) -> None:  # noqa: F811
    from battleground.experiment.register import Registry
    from battleground.settings import Settings

    home = tmp_path_factory.mktemp(f"browser-edit-{width}") / ".battleground"
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": TOKEN})
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment(
        f"edit {HOSTILE}", hypothesis=HOSTILE, owner=HOSTILE, variants={"control": 0.5, "treatment": 0.5},
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
                 {"name": f"lat{HOSTILE}", "kind": "mean", "numerator": "page_ms", "guardrail": True,
                  "direction": "decrease", "margin": 0.1}])
    server = _serve(settings)
    url = next(server)
    axe = _axe_source()
    failures: list[str] = []
    try:
        context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
        page = context.new_page()
        problems = _watch(page, url)
        page.goto(f"{url}/signin")
        page.fill("input[name=token]", TOKEN)
        page.fill("input[name=name]", "kim")
        page.click("#signin button[type=submit]")
        page.wait_for_url(f"{url}/")
        page.goto(f"{url}/experiments/{exp.id}/edit")

        def check(name: str) -> None:
            page.evaluate(axe)
            failures.extend(f"{name} at {width} px: {v['impact']} {v['id']} ({v['help']}): {v['nodes']}"
                            for v in _violations(page))
            if _overflow(page) > 1:
                failures.append(f"{name} at {width} px scrolls sideways by {_overflow(page)} px")

        check("edit form")
        # edit the hostile-named guardrail: margin 10 % of control → 25 in its unit, a 2-day window
        form = page.locator("#edit-metric-2")
        page.locator("details.metric-edit").nth(1).locator("summary").click()
        form.locator("input[name=margin]").fill("25")
        form.locator("select[name=margin_unit]").select_option("absolute")
        form.locator("input[name=window]").fill("2")
        form.locator("input[name=numerator]").fill(HOSTILE)
        form.locator("button[type=submit]").click()
        page.wait_for_url(f"{url}/experiments/{exp.id}/edit")
        m = registry.get(exp.id).metrics[1]
        assert (m.margin, m.margin_relative, m.conversion_window_days, m.numerator) == (25.0, False, 2.0, HOSTILE)

        # a proportion turned ratio without a denominator: the registry's rule beside the field
        page.locator("details.metric-edit").nth(0).locator("summary").click()
        first = page.locator("#edit-metric-1")
        first.locator("select[name=kind]").select_option("ratio")
        first.locator("button[type=submit]").click()
        page.wait_for_selector("#error-edit-denominator")
        assert "ratio metrics need a denominator" in page.locator("#error-edit-denominator").inner_text()
        assert page.locator("#edit-metric-1 select[name=kind]").input_value() == "ratio"  # as typed
        check("metric error")
        assert registry.get(exp.id).metrics[0].kind == "proportion"

        # choose a layer and a bucket range; a range that reads wrong is refused beside it
        placement = page.locator("#edit-placement")
        placement.locator("input[name=layer]").fill(f"checkout{HOSTILE}")
        placement.locator("input[name=layer_range]").fill("2500 to 5000")
        placement.locator("button[type=submit]").click()
        page.wait_for_selector("#error-layer_range")
        assert "START-END" in page.locator("#error-layer_range").inner_text()
        check("layer error")
        page.locator("#edit-placement input[name=layer_range]").fill("2500-5000")
        page.locator("#edit-placement button[type=submit]").click()
        page.wait_for_url(f"{url}/experiments/{exp.id}/edit")
        rec = registry.get(exp.id)
        assert (rec.layer, rec.layer_range) == (f"checkout{HOSTILE}", (2500, 5000))
        assert page.locator("#edit-placement input[name=layer_range]").input_value() == "2500-5000"
        check("edit form after the edits")
        page.goto(f"{url}/experiments/{exp.id}")
        check("experiment page")
        page.screenshot(path=str(home.parent / f"edit-{width}.png"), full_page=True)
        assert {e.actor for e in registry.audit_log(exp.id) if e.action != "create"} == {"kim"}
        refused = [p for p in problems if "status of 422" in p]  # the two forms sent back with their errors
        assert len(refused) == 2 and [p for p in problems if p not in refused] == [], problems
        context.close()
    finally:
        next(server, None)
    assert failures == [], "\n".join(failures)
