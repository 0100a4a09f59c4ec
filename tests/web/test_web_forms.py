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
