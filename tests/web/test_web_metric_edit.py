"""Editing a metric in place from the browser draft form (issue 13): kind, event types, direction,
primary, guardrail margin and window; the registry's rules beside the field, CSRF, the actor in the
audit log, hostile text shown as text; and the draft's layer, range and project (holdout) fields."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from battleground.experiment.register import Registry
from battleground.settings import Settings

TOKEN = "metric-edit-token"
HTML = {"accept": "text/html"}
HOSTILE = '"><svg onload=alert(1)><script>alert(2)</script>'


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    return Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground"), "BATTLEGROUND_API_TOKEN": TOKEN})


@pytest.fixture
def client(home: Settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    with TestClient(create_app(home), base_url="http://127.0.0.1", follow_redirects=False) as c:
        r = c.post("/signin", data={"token": TOKEN, "name": "mia"})
        assert r.status_code == 303
        yield c


def _csrf(text: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', text)
    assert m
    return m.group(1)


def _draft(c: Any, token: str, **over: str) -> int:
    form = {"csrf": token, "name": "edit-me", "variants": "control\ntreatment",
            "metrics": "conversion, proportion, purchase, primary\nlatency, mean, page_ms, guardrail, decrease, margin=0.1"}
    form.update(over)
    r = c.post("/experiments/new", data=form)
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def _edit(**over: Any) -> dict[str, str]:
    form = {"metric": "latency", "name": "latency", "kind": "mean", "numerator": "page_ms", "denominator": "",
            "direction": "decrease", "guardrail": "1", "margin": "0.1", "margin_unit": "relative", "window": ""}
    form.update(over)
    return {k: v for k, v in form.items() if v is not None}


def test_edit_a_metric_in_place(client: Any, home: Settings) -> None:
    c = client
    token = _csrf(c.get("/experiments/new", headers=HTML).text)
    exp_id = _draft(c, token)
    registry = Registry(home.registry_url)
    page = c.get(f"/experiments/{exp_id}/edit", headers=HTML).text
    assert f'action="/experiments/{exp_id}/edit/metric-edit"' in page and "edit latency" in page
    url = f"/experiments/{exp_id}/edit/metric-edit"

    # margin 10 % of control → 25 ms absolute, a 3-day window: the metric keeps its place
    r = c.post(url, data=_edit(csrf=token, margin="25", margin_unit="absolute", window="3"))
    assert r.status_code == 303
    m = registry.get(exp_id).metrics[1]
    assert (m.name, m.kind, m.guardrail, m.margin, m.margin_relative, m.conversion_window_days, m.direction) == (
        "latency", "mean", True, 25.0, False, 3.0, "decrease")
    # the kind: a proportion becomes a ratio (it needs a denominator), renamed
    r = c.post(url, data=_edit(csrf=token, metric="conversion", name="ctr", kind="ratio", numerator="click",
                               denominator="impression", direction="increase", guardrail=None, margin="",
                               primary="1"))
    assert r.status_code == 303
    assert [(x.name, x.kind, x.denominator, x.primary) for x in registry.get(exp_id).metrics] == [
        ("ctr", "ratio", "impression", True), ("latency", "mean", None, False)]
    audit = [e for e in registry.audit_log(exp_id) if e.action == "edit_metric"]
    assert [e.actor for e in audit] == ["mia", "mia"]
    assert audit[0].detail["old"]["margin"] == 0.1 and audit[0].detail["new"]["margin"] == 25.0
    shown = c.get(f"/experiments/{exp_id}", headers=HTML).text
    assert "margin_relative: True → False" in html.unescape(shown)  # the audit log in words


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"kind": "ratio"}, "denominator", "ratio metrics need a denominator"),  # the registry's rule, not a copy
    ({"kind": "proportion", "guardrail": None, "margin": "", "denominator": "impression"}, "denominator",
     "only ratio metrics have a denominator"),
    ({"guardrail": None}, "margin", "not a guardrail"),
    ({"margin": "lots"}, "margin", "must be a number"),
    ({"margin": "-0.2"}, "margin", "margin"),
    ({"name": "conversion"}, "name", "unique metric names"),
    ({"primary": "1"}, "primary", "at most one primary metric"),
    ({"window": "0"}, "window", "conversion window"),
    ({"window": "soon"}, "window", "number of days"),
    ({"kind": "median"}, "kind", "kind must be one of"),
    ({"numerator": ""}, "numerator", "numerator"),
])
def test_a_refused_edit_shows_the_rule_beside_the_field_and_changes_nothing(
        client: Any, home: Settings, changes: dict[str, Any], field: str, words: str) -> None:
    c = client
    token = _csrf(c.get("/experiments/new", headers=HTML).text)
    exp_id = _draft(c, token)
    before = Registry(home.registry_url).get(exp_id)
    r = c.post(f"/experiments/{exp_id}/edit/metric-edit", data=_edit(csrf=token, **changes), headers=HTML)
    assert r.status_code == 422
    m = re.search(rf'id="error-edit-{field}">([^<]*)<', r.text)
    assert m, r.text[-3000:]
    assert words in html.unescape(m.group(1))
    assert "<details class=\"metric-edit\" open>" in r.text  # the form stays open with what was typed
    after = Registry(home.registry_url).get(exp_id)
    assert after.metrics == before.metrics and after.updated_at == before.updated_at


def test_edit_needs_csrf_a_session_a_draft_and_a_known_metric(client: Any, home: Settings) -> None:
    c = client
    token = _csrf(c.get("/experiments/new", headers=HTML).text)
    exp_id = _draft(c, token)
    url = f"/experiments/{exp_id}/edit/metric-edit"
    assert c.post(url, data=_edit(margin="0.2")).status_code == 403  # no CSRF token
    assert c.post(url, data=_edit(csrf="forged", margin="0.2")).status_code == 403
    unknown = c.post(url, data=_edit(csrf=token, metric="nope"), headers=HTML)
    assert unknown.status_code == 422 and "has no metric 'nope'" in html.unescape(unknown.text)
    c.post(f"/experiments/{exp_id}/start", data={"csrf": token})
    running = c.post(url, data=_edit(csrf=token, margin="0.2"), headers=HTML)
    assert running.status_code == 422 and "metrics editable only in draft" in html.unescape(running.text)
    assert Registry(home.registry_url).get(exp_id).metrics[1].margin == 0.1
    c.cookies.clear()
    assert c.post(url, data=_edit(csrf=token, margin="0.2")).status_code == 401


def test_hostile_text_in_a_metric_is_shown_as_text(client: Any, home: Settings) -> None:
    c = client
    token = _csrf(c.get("/experiments/new", headers=HTML).text)
    exp_id = _draft(c, token)
    r = c.post(f"/experiments/{exp_id}/edit/metric-edit", data=_edit(csrf=token, numerator=HOSTILE), headers=HTML)
    assert r.status_code == 303, r.text
    page = c.get(f"/experiments/{exp_id}/edit", headers=HTML).text
    assert HOSTILE not in page and "<svg onload" not in page
    assert str(escape(HOSTILE)) in page  # in the input's value, escaped
    refused = c.post(f"/experiments/{exp_id}/edit/metric-edit",
                     data=_edit(csrf=token, name=HOSTILE, kind="ratio"), headers=HTML)
    assert refused.status_code == 422 and "<svg onload" not in refused.text and "<script>alert" not in refused.text


def test_create_and_edit_a_drafts_layer_range_and_project(client: Any, home: Settings) -> None:
    c = client
    registry = Registry(home.registry_url) if Path(home.registry_url[len("sqlite:///"):]).exists() else None
    token = _csrf(c.get("/experiments/new", headers=HTML).text)
    first = _draft(c, token, name="layered-1", project="shop", layer="checkout", layer_range="0-5000")
    registry = registry or Registry(home.registry_url)
    rec = registry.get(first)
    assert (rec.project, rec.layer, rec.layer_range) == ("shop", "checkout", (0, 5000))
    hold = registry.create_holdout("hold-shop", fraction=0.1, project="shop", salt="h-salt")
    registry.start(hold.id)
    form = c.get("/experiments/new", headers=HTML).text
    assert "project <strong>shop</strong>: hold-shop holds out 10.00 % of units" in form
    assert c.post(f"/experiments/{first}/start", data={"csrf": token}).status_code == 303
    started = registry.get(first)
    assert started.holdout is not None and started.holdout.name == "hold-shop"  # the project's holdout applies

    # an overlap with the running experiment: the registry's message names the layer, both ranges, the free ones
    bad = c.post("/experiments/new", data={"csrf": token, "name": "layered-2", "variants": "control\ntreatment",
                                           "metrics": "conversion, proportion, purchase, primary",
                                           "layer": "checkout", "layer_range": "2500-7500"}, headers=HTML)
    assert bad.status_code == 422
    m = re.search(r'id="error-layer_range">([^<]*)<', bad.text)
    assert m, bad.text[-2000:]
    words = html.unescape(m.group(1))
    assert "'checkout'" in words and "[2500, 7500)" in words and "[0, 5000)" in words and "[5000, 10000)" in words
    assert 'value="2500-7500"' in bad.text  # what was typed stays
    assert [r.name for r in registry.list()].count("layered-2") == 0

    # the registry allocates the lowest free range; a range needs a layer; a range must read START-END
    second = _draft(c, token, name="layered-2", layer="checkout", layer_buckets="2500")
    assert registry.get(second).layer_range == (5000, 7500) and registry.get(second).project == "default"
    for over, field, text in (({"layer_range": "0-100"}, "layer", "needs a layer"),
                              ({"layer": "checkout", "layer_range": "ten-twenty"}, "layer_range", "START-END"),
                              ({"layer": "checkout", "layer_buckets": "many"}, "layer_buckets", "layer buckets"),
                              ({"layer": "checkout", "layer_range": "0-10", "layer_buckets": "10"}, "layer_range",
                               "not both")):
        r = c.post("/experiments/new", data={"csrf": token, "name": "layered-x", "variants": "control\ntreatment",
                                             "metrics": "conversion, proportion, purchase, primary", **over},
                   headers=HTML)
        assert r.status_code == 422, over
        found = re.search(rf'id="error-{field}">([^<]*)<', r.text)
        assert found and text in html.unescape(found.group(1)), (over, r.text[-1500:])

    # edit the draft's placement: a free range is saved; an overlap is refused beside the range
    edit = f"/experiments/{second}/edit"
    page = c.get(edit, headers=HTML).text
    assert 'id="edit-placement"' in page and 'value="5000-7500"' in page
    ok = c.post(f"{edit}/placement", data={"csrf": token, "project": "shop", "layer": "checkout",
                                           "layer_range": "6000-9000"})
    assert ok.status_code == 303
    assert (registry.get(second).project, registry.get(second).layer_range) == ("shop", (6000, 9000))
    clash = c.post(f"{edit}/placement", data={"csrf": token, "project": "shop", "layer": "checkout",
                                              "layer_range": "4000-6000"}, headers=HTML)
    assert clash.status_code == 422 and "[4000, 6000)" in html.unescape(clash.text)
    assert re.search(r'id="error-layer_range">', clash.text) and registry.get(second).layer_range == (6000, 9000)
    hostile = c.post(f"{edit}/placement", data={"csrf": token, "project": HOSTILE, "layer": HOSTILE,
                                                "layer_range": "0-10"}, headers=HTML)
    assert hostile.status_code == 303 and registry.get(second).layer == HOSTILE
    for shown in (c.get(edit, headers=HTML).text, c.get(f"/experiments/{second}", headers=HTML).text):
        assert "<svg onload" not in shown and "<script>alert" not in shown and str(escape(HOSTILE)) in shown
    assert c.post(f"{edit}/placement", data={"layer": "x"}).status_code == 403  # no CSRF
    out = c.post(f"{edit}/placement", data={"csrf": token, "project": "shop", "layer": "", "layer_range": ""})
    assert out.status_code == 303 and registry.get(second).layer is None  # out of the layer
    assert {e.actor for e in registry.audit_log(second)} == {"mia"}
