"""Writing from the browser: sign-in with the token, CSRF on every form, create → start → stop →
archive, the registry's errors beside the field, and the actor in the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from battleground.settings import Settings

TOKEN = "forms-test-token"
HTML = {"accept": "text/html"}


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    return Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground"), "BATTLEGROUND_API_TOKEN": TOKEN})


@pytest.fixture
def browser_client(home: Settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    with TestClient(create_app(home), base_url="http://127.0.0.1", follow_redirects=False) as c:
        yield c


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the form"
    return m.group(1)


def _sign_in(c: Any, name: str = "ana") -> None:
    r = c.post("/signin", data={"token": TOKEN, "name": name})
    assert r.status_code == 303 and r.headers["location"] == "/"


def _form(**over: str) -> dict[str, str]:
    form = {"name": "green-button", "hypothesis": "green converts better", "owner": "ana",
            "variants": "control\ntreatment", "metrics": "conversion, proportion, purchase, primary",
            "target_sample_size": "1000", "max_duration_days": ""}
    form.update(over)
    return form


def test_sign_in_sets_a_strict_http_only_expiring_cookie(browser_client: Any) -> None:
    c = browser_client
    assert "sign in" in c.get("/", headers=HTML).text and "New experiment" not in c.get("/", headers=HTML).text
    wrong = c.post("/signin", data={"token": "nope", "name": "eve"}, headers=HTML)
    assert wrong.status_code == 401 and 'id="error-token"' in wrong.text and "bg_session" not in wrong.headers.get("set-cookie", "")
    r = c.post("/signin", data={"token": TOKEN, "name": "ana"})
    cookie = r.headers["set-cookie"].lower()
    assert r.status_code == 303 and "bg_session=" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=28800" in cookie
    assert TOKEN not in r.headers["set-cookie"]  # the cookie names a session, it is not the token
    page = c.get("/", headers=HTML).text
    assert "signed in as ana" in page and 'id="new-experiment"' in page


def test_create_start_stop_archive_from_the_browser(browser_client: Any, home: Settings) -> None:
    from battleground.experiment.register import Registry

    c = browser_client
    refused = c.post("/experiments/new", data=_form(csrf="x"), headers=HTML)
    assert refused.status_code == 401  # no session
    assert not Path(home.home).exists()  # and nothing was created
    _sign_in(c)
    token = _csrf(c.get("/experiments/new", headers=HTML).text)
    assert c.post("/experiments/new", data=_form(), headers=HTML).status_code == 403  # no CSRF token
    assert c.post("/experiments/new", data=_form(csrf="forged"), headers=HTML).status_code == 403

    # errors beside the field, the values kept
    bad = c.post("/experiments/new", data=_form(csrf=token, metrics="conversion, percent, purchase"), headers=HTML)
    assert bad.status_code == 422 and 'id="error-metrics"' in bad.text and "green converts better" in bad.text
    bad = c.post("/experiments/new", data=_form(csrf=token, variants="only-one"), headers=HTML)
    assert bad.status_code == 422 and 'id="error-variants"' in bad.text
    bad = c.post("/experiments/new", data=_form(csrf=token, target_sample_size="lots"), headers=HTML)
    assert bad.status_code == 422 and 'id="error-target_sample_size"' in bad.text
    bad = c.post("/experiments/new", data=_form(csrf=token, name="12345"), headers=HTML)
    assert bad.status_code == 422 and 'id="error-name"' in bad.text

    made = c.post("/experiments/new", data=_form(csrf=token), headers=HTML)
    assert made.status_code == 303
    exp_id = int(made.headers["location"].rsplit("/", 1)[1])
    registry = Registry(home.registry_url)
    record = registry.get(exp_id)
    assert record.status == "draft" and record.variant_names == ("control", "treatment")
    assert record.end_conditions.target_sample_size == 1000

    page = c.get(f"/experiments/{exp_id}", headers=HTML).text
    assert 'id="start"' in page
    assert c.post(f"/experiments/{exp_id}/start", data={"csrf": token}).status_code == 303
    assert registry.get(exp_id).status == "running"
    no_reason = c.post(f"/experiments/{exp_id}/stop", data={"csrf": token, "reason": " "}, headers=HTML)
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    assert registry.get(exp_id).status == "running"
    assert c.post(f"/experiments/{exp_id}/stop", data={"csrf": token, "reason": "target reached"}).status_code == 303
    assert c.post(f"/experiments/{exp_id}/archive", data={"csrf": token}).status_code == 303
    assert registry.get(exp_id).status == "archived"
    actors = [(e.action, e.actor) for e in registry.audit_log(exp_id)]
    assert actors == [("create", "ana"), ("start", "ana"), ("stop", "ana"), ("archive", "ana")]

    # signed out, the same session cannot act any more
    assert c.post("/signout", data={"csrf": token}).status_code == 303
    assert c.post(f"/experiments/{exp_id}/start", data={"csrf": token}, headers=HTML).status_code == 401


def test_a_read_only_server_says_so_and_refuses_every_form(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})
    with TestClient(create_app(settings), base_url="http://127.0.0.1", follow_redirects=False) as c:
        assert 'id="signin-read-only"' in c.get("/signin", headers=HTML).text
        assert c.post("/signin", data={"token": "anything"}, headers=HTML).status_code == 403
        assert c.post("/experiments/new", data=_form(csrf="x"), headers=HTML).status_code == 403
    assert not (tmp_path / ".battleground").exists()


def test_edit_a_draft_one_change_at_a_time(browser_client: Any, home: Settings) -> None:
    from battleground.experiment.register import Registry

    c = browser_client
    _sign_in(c, "bo")
    token = _csrf(c.get("/experiments/new", headers=HTML).text)
    exp_id = int(c.post("/experiments/new", data=_form(csrf=token)).headers["location"].rsplit("/", 1)[1])
    c.post("/experiments/new", data=_form(csrf=token, name="taken"))
    registry = Registry(home.registry_url)
    edit = f"/experiments/{exp_id}/edit"
    assert 'id="edit-details"' in c.get(edit, headers=HTML).text

    ok = c.post(f"{edit}/details", data={"csrf": token, "name": "green-button-v2", "hypothesis": "h2", "owner": "bo"})
    assert ok.status_code == 303 and registry.get(exp_id).name == "green-button-v2"
    assert registry.get(exp_id).hypothesis == "h2"
    taken = c.post(f"{edit}/details", data={"csrf": token, "name": "taken"}, headers=HTML)
    assert taken.status_code == 422 and 'id="error-name"' in taken.text
    assert registry.get(exp_id).name == "green-button-v2"  # a refused edit changes nothing

    assert c.post(f"{edit}/variants", data={"csrf": token, "variants": "control: 0.5\nblue: 0.25\nred: 0.25"}).status_code == 303
    assert registry.get(exp_id).variant_names == ("control", "blue", "red")
    bad = c.post(f"{edit}/variants", data={"csrf": token, "variants": "control: 0.5\nblue: 0.7"}, headers=HTML)
    assert bad.status_code == 422 and 'id="error-variants"' in bad.text
    assert registry.get(exp_id).variant_names == ("control", "blue", "red")

    assert c.post(f"{edit}/metric-add", data={"csrf": token, "metrics": "revenue, mean, purchase, guardrail"}).status_code == 303
    assert [m.name for m in registry.get(exp_id).metrics] == ["conversion", "revenue"]
    dup = c.post(f"{edit}/metric-add", data={"csrf": token, "metrics": "revenue, mean, purchase"}, headers=HTML)
    assert dup.status_code == 422 and 'id="error-metrics"' in dup.text
    assert c.post(f"{edit}/metric-remove", data={"csrf": token, "metric": "revenue"}).status_code == 303
    assert [m.name for m in registry.get(exp_id).metrics] == ["conversion"]
    assert c.post(f"{edit}/end", data={"csrf": token, "target_sample_size": "2500", "max_duration_days": "14"}).status_code == 303
    ends = registry.get(exp_id).end_conditions
    assert ends.target_sample_size == 2500 and ends.max_duration_days == 14
    assert c.post(f"{edit}/end", data={"target_sample_size": "1"}, headers=HTML).status_code == 403  # no CSRF
    assert {e.actor for e in registry.audit_log(exp_id)} == {"bo"}

    # once running, the variants are frozen: the registry's rule, shown beside the field
    c.post(f"/experiments/{exp_id}/start", data={"csrf": token})
    frozen = c.post(f"{edit}/variants", data={"csrf": token, "variants": "control\nblue"}, headers=HTML)
    assert frozen.status_code == 422 and "frozen" in frozen.text


def test_sample_size_calculator_fills_the_target(browser_client: Any, home: Settings) -> None:
    from battleground.stats import sample_size_proportions

    c = browser_client
    _sign_in(c)
    page = c.get("/experiments/new", params={"baseline": "0.1", "mde": "0.01"}, headers=HTML).text
    n = sample_size_proportions(0.1, 0.01).n_control_ceil
    assert n == 14749  # 10 % → 11 %, two-sided, α = 0.05, 80 % power
    assert f"{n:,} users per variant" in page and f'name="target_sample_size" inputmode="numeric" value="{n}"' in page
    relative = c.get("/experiments/new", params={"baseline": "0.1", "mde": "0.1", "relative": "1"}, headers=HTML).text
    assert f"{n:,} users per variant" in relative  # +10 % relative is the same +1 point
    bad = c.get("/experiments/new", params={"baseline": "0.1", "mde": "-0.01"}, headers=HTML).text
    assert 'id="error-plan"' in bad and "mde must be &gt; 0" in bad
    assert not Path(home.home).exists()  # computing a plan writes nothing


def _new(c: Any) -> str:
    _sign_in(c)
    return _csrf(c.get("/experiments/new", headers=HTML).text)


def test_create_with_guardrail_margins_a_sequential_design_and_a_planned_mde(browser_client: Any, home: Settings) -> None:
    from battleground.experiment.register import Registry

    c = browser_client
    token = _new(c)
    page = c.get("/experiments/new", headers=HTML).text
    assert 'name="design"' in page and 'value="obrien_fleming"' in page and 'name="mde"' in page
    metrics = ("conversion, proportion, purchase, primary\n"
               "latency, mean, page_ms, guardrail, decrease, margin=0.05\n"
               "refunds, mean, refund, guardrail, decrease, margin_abs=2.5")
    made = c.post("/experiments/new", data=_form(csrf=token, metrics=metrics, design="obrien_fleming", mde="0.04"))
    assert made.status_code == 303, made.text
    record = Registry(home.registry_url).get(int(made.headers["location"].rsplit("/", 1)[1]))
    by_name = {m.name: m for m in record.metrics}
    assert (by_name["latency"].margin, by_name["latency"].margin_relative, by_name["latency"].direction) == (0.05, True, "decrease")
    assert (by_name["refunds"].margin, by_name["refunds"].margin_relative) == (2.5, False)
    assert by_name["conversion"].margin is None
    ends = record.end_conditions
    assert (ends.sequential, ends.design, ends.mde, ends.target_sample_size) == (True, "obrien_fleming", 0.04, 1000)

    fixed = c.post("/experiments/new", data=_form(csrf=token, name="fixed-one", design="fixed"))
    ends = Registry(home.registry_url).get(int(fixed.headers["location"].rsplit("/", 1)[1])).end_conditions
    assert (ends.sequential, ends.design, ends.mde) == (False, "msprt", None)


@pytest.mark.parametrize(("over", "field", "words"), [
    ({"metrics": "conversion, proportion, purchase, primary, margin=0.02"}, "metrics", "not a guardrail"),
    ({"metrics": "latency, mean, page_ms, guardrail, margin=2"}, "metrics", "must be &lt; 1"),
    ({"metrics": "latency, mean, page_ms, guardrail, margin=lots"}, "metrics", "margin= with a number"),
    ({"design": "bayesian"}, "design", "design is one of msprt, one_sided, obrien_fleming, pocock"),
    ({"design": "pocock", "target_sample_size": ""}, "design", "group-sequential design has a target sample size"),
    ({"mde": "-0.1"}, "mde", "planned MDE is a positive relative effect"),
    ({"mde": "five percent"}, "mde", "mde must be a finite number"),
])
def test_create_refuses_by_the_registry_rules_beside_the_field(
    browser_client: Any, home: Settings, over: dict[str, str], field: str, words: str
) -> None:
    from battleground.experiment.register import Registry

    c = browser_client
    token = _new(c)
    bad = c.post("/experiments/new", data=_form(csrf=token, **over), headers=HTML)
    assert bad.status_code == 422
    error = re.search(rf'id="error-{field}">([^<]+)<', bad.text)
    assert error is not None and words in error.group(1), bad.text
    assert Registry(home.registry_url).list() == []  # nothing was created


def test_edit_end_conditions_sets_the_design_and_the_planned_mde(browser_client: Any, home: Settings) -> None:
    from battleground.experiment.register import Registry

    c = browser_client
    token = _new(c)
    exp_id = int(c.post("/experiments/new", data=_form(csrf=token)).headers["location"].rsplit("/", 1)[1])
    registry = Registry(home.registry_url)
    edit = f"/experiments/{exp_id}/edit"
    ok = c.post(f"{edit}/end", data={"csrf": token, "target_sample_size": "4000", "design": "pocock", "mde": "0.03"})
    assert ok.status_code == 303
    ends = registry.get(exp_id).end_conditions
    assert (ends.sequential, ends.design, ends.mde, ends.target_sample_size) == (True, "pocock", 0.03, 4000)
    page = c.get(edit, headers=HTML).text
    assert '<option value="pocock" selected>' in page and 'name="mde" inputmode="decimal" value="0.03"' in page
    bad = c.post(f"{edit}/end", data={"csrf": token, "target_sample_size": "", "design": "pocock"}, headers=HTML)
    assert bad.status_code == 422 and 'id="error-design"' in bad.text
    assert registry.get(exp_id).end_conditions.target_sample_size == 4000  # a refused edit changes nothing
    assert c.post(f"{edit}/end", data={"csrf": token, "target_sample_size": "4000", "design": "fixed"}).status_code == 303
    ends = registry.get(exp_id).end_conditions
    assert (ends.sequential, ends.design, ends.mde) == (False, "msprt", None)
    c.post(f"{edit}/metric-add", data={"csrf": token, "metrics": "latency, mean, page_ms, guardrail, decrease, margin=0.1"})
    assert "margin 10 %" in c.get(edit, headers=HTML).text


def test_the_design_choices_are_the_registrys_designs() -> None:
    from battleground.experiment._records import DESIGNS
    from battleground.web._forms import DESIGN_CHOICES, FIXED

    assert [k for k, _ in DESIGN_CHOICES] == [FIXED, *DESIGNS]


def test_sample_size_calculator_plans_means_and_three_variants(browser_client: Any, home: Settings) -> None:
    from battleground.stats import sample_size_means, sample_size_proportions

    c = browser_client
    _sign_in(c)
    # a mean: baseline 20 per user, sd 30, +5 % relative = +1.0
    page = c.get("/experiments/new", params={"kind": "mean", "baseline": "20", "sd": "30", "mde": "0.05",
                                             "relative": "1"}, headers=HTML).text
    n = sample_size_means(1.0, 30.0).n_control_ceil
    assert n == 14128 and n == sample_size_means(0.05, 30.0, baseline_mean=20, relative=True).n_control_ceil
    assert f"{n:,} users per variant, {2 * n:,} in all over 2 variants" in page
    assert f'name="target_sample_size" inputmode="numeric" value="{n}"' in page
    assert 'name="mde" inputmode="decimal" value="0.05"' in page  # the planned MDE, filled in
    assert "revenue, mean, purchase, primary" in page
    # an absolute effect on a mean needs no baseline
    page = c.get("/experiments/new", params={"kind": "mean", "sd": "30", "mde": "1"}, headers=HTML).text
    assert f"{n:,} users per variant" in page

    # three variants: α = 0.05 split over two comparisons
    three = sample_size_proportions(0.1, 0.01, n_arms=3)
    # (z_{1-0.0125} + z_0.8)² (0.1·0.9 + 0.11·0.89) / 0.01² = 17,859.96
    assert three.n_control_ceil == 17860 and three.n_control_ceil > sample_size_proportions(0.1, 0.01).n_control_ceil
    page = c.get("/experiments/new", params={"baseline": "0.1", "mde": "0.01", "arms": "3"}, headers=HTML).text
    assert f"{three.n_control_ceil:,} users per variant, {three.n_total:,} in all over 3 variants" in page
    assert "α = 0.025 per comparison" in page and "control\ntreatment-1\ntreatment-2</textarea>" in page

    missing = c.get("/experiments/new", params={"kind": "mean", "baseline": "20", "sd": "wide", "mde": "0.05"}, headers=HTML).text
    assert 'id="error-plan-sd"' in missing and "standard deviation must be a number" in missing
    zero = c.get("/experiments/new", params={"kind": "mean", "sd": "0", "mde": "1"}, headers=HTML).text
    assert 'id="error-plan"' in zero and "std" in zero
    arms = c.get("/experiments/new", params={"baseline": "0.1", "mde": "0.01", "arms": "1"}, headers=HTML).text
    assert 'id="error-plan"' in arms and "n_arms" in arms
    assert not Path(home.home).exists()  # computing a plan writes nothing
