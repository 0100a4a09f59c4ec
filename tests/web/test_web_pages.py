"""Every page of the dashboard, rendered by the app on the seeded home."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

HTML = {"accept": "text/html"}


def _row(html: str, marker: str) -> str:
    """The <tr> of the experiment list whose data-experiment attribute is ``marker``."""
    m = re.search(rf'<tr data-experiment="{marker}">(.*?)</tr>', html, re.S)
    assert m, f"no row {marker} in the list"
    return m.group(1)


def test_experiment_list_shows_status_users_and_badges(client: Any, seeded: Any) -> None:
    r = client.get("/", headers=HTML)
    assert r.status_code == 200
    html = r.text
    ids = seeded.ids
    checkout = _row(html, str(ids["checkout-button"]))
    assert "checkout-button" in checkout and "st-running" in checkout
    assert "end condition met" in checkout and "SRM alert" not in checkout
    assert "control: 600 · treatment: 600" in checkout and ">1,200<" in checkout
    srm = _row(html, str(ids["srm-broken"]))
    assert "SRM alert" in srm and "end condition met" not in srm
    assert "control: 700 · treatment: 500" in srm
    assert "st-stopped" in _row(html, str(ids["stopped-one"]))
    draft = _row(html, str(ids["draft-one"]))
    assert "st-draft" in draft and "SRM" not in draft
    # newest first
    assert html.index("ingest-target") < html.index("checkout-button")
    # the list needs no chart library
    assert "plotly.min.js" not in html


def test_experiment_list_filters_by_status(client: Any) -> None:
    html = client.get("/?status=stopped", headers=HTML).text
    assert "stopped-one" in html and "checkout-button" not in html
    html = client.get("/?status=archived", headers=HTML).text
    assert "No experiments with status archived yet" in html
    bad = client.get("/?status=paused", headers=HTML)
    assert bad.status_code == 422 and "status" in bad.text


def test_experiment_page_has_every_section(client: Any, seeded: Any) -> None:
    exp_id = seeded.ids["checkout-button"]
    r = client.get(f"/experiments/{exp_id}", headers=HTML)
    assert r.status_code == 200
    html = r.text
    # design
    assert "checkout-button: the treatment converts better" in html
    assert "control (50 %, control), treatment (50 %)" in html
    # decision: treatment converts 14 % vs 9 % on 600 users each
    assert 'class="verdict ship"' in html and "Decision: ship treatment" in html
    # plan vs actual: 600 of 500 planned → 120 %
    sizes = html[html.index('id="sample-size"'):html.index('id="metrics"')]
    assert sizes.count(">500<") == 2 and sizes.count(">600<") == 2 and sizes.count("120%") == 4
    assert "SRM check" in sizes and "badge ok" in sizes
    # per-metric table with CIs: one line per metric × variant
    metrics = html[html.index('id="metrics"'):html.index('id="charts"')]
    assert metrics.count("<tr") == 5  # the head and one row per metric × variant
    control_rate = seeded.truth["checkout-button"]["control"][1] / 600
    treat_rate = seeded.truth["checkout-button"]["treatment"][1] / 600
    assert f"{control_rate * 100:.2f} %" in metrics
    # the absolute lift of a proportion in percentage points, its interval beside it
    assert f"{(treat_rate - control_rate) * 100:+.2f} pp" in metrics
    assert re.search(r"\[[+-]\d+\.\d\d pp, \+\d+\.\d\d pp\]", metrics)
    assert metrics.count('class="ci-axis"') == 2 and "p (raw)" in metrics and "p (Holm)" in metrics
    # cumulative lift charts (one per metric) plus the sample-size chart, plotly.js from our route
    assert html.count('class="chart"') == 2
    assert "cumulative relative lift vs control" in html
    assert "users per variant: actual vs plan" in html
    assert '<script src="/static/plotly.min.js"></script>' in html
    assert "cdn" not in html.lower()
    # end conditions and audit log
    assert "target sample size reached" in html
    audit = html[html.index('id="audit"'):]
    assert ">create<" in audit and ">start<" in audit
    assert f'href="/experiments/{exp_id}/report"' in html


def test_experiment_page_by_name_and_unknown(client: Any, seeded: Any) -> None:
    assert "Decision: ship treatment" in client.get("/experiments/checkout-button", headers=HTML).text
    missing = client.get("/experiments/no-such-thing", headers=HTML)
    assert missing.status_code == 404 and "no experiment 'no-such-thing'" in unescape(missing.text)
    assert 'id="error-message"' in missing.text
    assert client.get("/experiments/99999999999999999999", headers=HTML).status_code == 404


def test_srm_alert_overrides_the_decision(client: Any, seeded: Any) -> None:
    html = client.get(f"/experiments/{seeded.ids['srm-broken']}", headers=HTML).text
    assert 'class="verdict data_quality"' in html
    assert "data quality problem: do not trust these results" in html
    assert "badge alert" in html


def test_draft_without_events_renders(client: Any, seeded: Any) -> None:
    r = client.get(f"/experiments/{seeded.ids['draft-one']}", headers=HTML)
    assert r.status_code == 200
    assert "No results yet." in r.text and "No daily data yet." in r.text
    assert "ctr" in r.text and "ratio" in r.text


def test_stopped_experiment_shows_the_reason(client: Any, seeded: Any) -> None:
    html = client.get(f"/experiments/{seeded.ids['stopped-one']}", headers=HTML).text
    assert "the treatment broke the checkout page" in html
    assert ">stop<" in html


def test_viewing_pages_never_writes_to_the_audit_log(client: Any, seeded: Any) -> None:
    from battleground.experiment.register import Registry

    registry = Registry(seeded.settings.registry_url)
    key = seeded.ids["srm-broken"]
    before = len(registry.audit_log(key))
    for _ in range(2):
        client.get("/", headers=HTML)
        client.get(f"/experiments/{key}", headers=HTML)
        client.get(f"/api/experiments/{key}/results")
    assert len(registry.audit_log(key)) == before
    assert registry.get(seeded.ids["checkout-button"]).status == "running"  # met, but not stopped


def test_report_is_rendered_and_served_without_writing(client: Any, seeded: Any) -> None:
    exp_id = seeded.ids["checkout-button"]
    r = client.get(f"/experiments/{exp_id}/report", headers=HTML)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "A/B report: checkout-button" in r.text and "Decision: ship treatment" in r.text
    assert not (Path(seeded.settings.home) / "reports").exists()  # a GET never writes
    assert client.get("/experiments/nope/report", headers=HTML).status_code == 404
    draft = client.get(f"/experiments/{seeded.ids['draft-one']}/report", headers=HTML)
    assert draft.status_code == 200 and "Decision: collecting data (no plan" in draft.text


def test_plotly_is_served_from_the_installed_package(client: Any) -> None:
    from plotly.offline import get_plotlyjs

    r = client.get("/static/plotly.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/javascript")
    assert r.content == get_plotlyjs().encode()


def test_leaderboard_page(client: Any, mlflow_runs: dict[str, str]) -> None:
    html = client.get("/leaderboard", headers=HTML).text
    table = html[html.index('id="leaderboard"'):]
    # best validation score first, trials left out, the champion marked
    assert table.index("lightgbm") < table.index("xgboost") < table.index("logistic")
    assert "trial" not in table
    assert table.count("champion") == 1
    assert "churn@champion v1" in html
    assert ">0.81<" in table and ">0.86<" in table  # validation_score and valid_roc_auc
    assert "validation score by run" in html


def test_leaderboard_without_an_mlflow_store(empty_settings: Any) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    with TestClient(create_app(empty_settings), base_url="http://127.0.0.1") as c:
        html = c.get("/leaderboard", headers=HTML).text
        assert "no MLflow store yet" in html and "battleground model train" in html
        assert "No bandit runs yet" in c.get("/bandit", headers=HTML).text
        assert "No experiments yet" in c.get("/", headers=HTML).text
    assert not Path(empty_settings.mlflow_uri.removeprefix("sqlite:///")).exists()


def test_bandit_page_lists_and_renders_summaries(client: Any) -> None:
    html = client.get("/bandit", headers=HTML).text
    assert html.count('class="card scroll bandit-table"') == 3
    for path in ("battle-2022-03/summary.csv", "battle-2022-03/ope.csv", "battle-2022-03/segments/by_sensitivity.csv"):
        assert path in html
    assert "<th class=\"l\">policy</th><th class=\"\">accumulated_revenue</th>" in html
    assert ">0.812346<" in html  # numbers shortened to 6 significant digits
    assert ">1.23457<" in html and ">linucb<" in html
    assert '"winner": "linucb"' in unescape(html)
    assert 'href="/bandit/files/battle-2022-03/report.html"' in html
    assert "notes.txt" not in html


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("battle-2022-03/report.html", 200),
        ("battle-2022-03/ope.csv", 200),
        ("battle-2022-03/notes.txt", 404),
        ("../registry.db", 404),
        ("..%2F..%2Fetc%2Fpasswd", 404),
        ("/etc/passwd", 404),
        ("battle-2022-03/missing.csv", 404),
    ],
)
def test_bandit_files_stay_inside_the_bandit_folder(client: Any, path: str, status: int) -> None:
    r = client.get(f"/bandit/files/{path}", headers=HTML)
    assert r.status_code == status
    if status == 200 and path.endswith(".html"):
        assert "bandit battle report" in r.text


def test_user_text_is_escaped(empty_settings: Any) -> None:
    from fastapi.testclient import TestClient

    from battleground.experiment.register import Registry
    from battleground.web import create_app

    Registry(empty_settings.registry_url).create_experiment(
        "<script>alert(1)</script>", hypothesis="<img src=x onerror=alert(2)>",
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase"}],
    )
    with TestClient(create_app(empty_settings), base_url="http://127.0.0.1") as c:
        for url in ("/", "/experiments/1"):
            html = c.get(url, headers=HTML).text
            assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert "<img src=x" not in html


def _snapshot(home: Path) -> dict[str, str]:
    """Every file under ``home`` and its SHA-256 (SQLite's ``-shm`` index, which every reader updates by
    design and which holds no data, left out)."""
    import hashlib

    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*")) if p.is_file() and not p.name.endswith("-shm")
    }


def _every_page(seeded: Any) -> list[str]:
    ids = seeded.ids
    urls = ["/", "/?status=running", "/leaderboard", "/bandit", "/bandit/files/battle-2022-03/report.html",
            "/bandit/files/battle-2022-03/ope.csv", "/static/plotly.min.js", "/static/charts.js",
            "/experiments/nope", "/no-such-page", "/api/health", "/api/experiments", "/api/leaderboard",
            "/api/bandit"]
    for key in ids.values():
        urls += [f"/experiments/{key}", f"/experiments/{key}/report", f"/api/experiments/{key}",
                 f"/api/experiments/{key}/results", f"/api/experiments/{key}/daily", f"/api/experiments/{key}/audit"]
    return urls


def test_a_get_never_writes(client: Any, seeded: Any) -> None:
    home = Path(seeded.settings.home)
    client.get("/", headers=HTML)  # the app's first look opens the stores
    before = _snapshot(home)
    for url in _every_page(seeded):
        assert client.get(url, headers=HTML).status_code in (200, 404), url
    assert _snapshot(home) == before


def test_viewing_an_empty_home_creates_nothing(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from battleground.settings import Settings
    from battleground.web import create_app

    home = tmp_path / ".battleground"
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home)})
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        for url in ("/", "/leaderboard", "/bandit", "/experiments/1", "/experiments/1/report",
                    "/api/experiments", "/api/experiments/1", "/api/experiments/1/results", "/api/bandit"):
            r = c.get(url, headers=HTML)
            assert r.status_code in (200, 404), (url, r.status_code, r.text[:300])
        assert "No experiments yet" in c.get("/", headers=HTML).text
    assert not home.exists()


def test_pages_show_no_filesystem_path(client: Any, seeded: Any) -> None:
    home = str(seeded.settings.home)
    for url in _every_page(seeded):
        if url.startswith("/static/"):
            continue
        r = client.get(url, headers=HTML)
        assert home not in r.text and "registry.db" not in r.text and "sqlite:" not in r.text, url


def test_experiment_list_search_owner_filter_sort_and_progress(client: Any, seeded: Any) -> None:
    html = client.get("/?q=CHECKOUT", headers=HTML).text  # case-insensitive, over names and hypotheses
    assert 'data-experiment="{}"'.format(seeded.ids["checkout-button"]) in html
    assert "srm-broken" not in html and ">1 of 5<" in html
    # the seeded experiments with events are ana's; the draft and the ingest target have no owner
    html = client.get("/?owner=-", headers=HTML).text
    assert "draft-one" in html and "checkout-button" not in html
    html = client.get("/?owner=ana&sort=name", headers=HTML).text
    names = re.findall(r'<a href="/experiments/\d+">([^<]+)</a>', html)
    assert names == sorted(names) == ["checkout-button", "srm-broken", "stopped-one"]
    # progress against plan: checkout-button has 600 of 500 planned per variant
    row = _row(client.get("/?sort=progress", headers=HTML).text, str(seeded.ids["checkout-button"]))
    assert "120%" in row and 'class="done"' in row
    html = client.get("/?sort=progress", headers=HTML).text
    assert html.index("checkout-button") < html.index("srm-broken")
    assert client.get("/?sort=bogus", headers=HTML).status_code == 422


def test_bandit_page_charts_instead_of_long_tables(client: Any, seeded: Any) -> None:
    import json as _json
    from html import unescape as _unescape

    html = client.get("/bandit", headers=HTML).text
    charts = html[html.index('id="bandit-charts"'):html.index("<h2>Tables</h2>")]
    # the summary ranks policies by revenue (best on top) and the OPE table becomes a forest plot
    assert charts.count('class="bg-chart"') == 2
    specs = [_json.loads(_unescape(m)) for m in re.findall(r'data-figure="([^"]*)"', charts)]
    ranked, forest = specs
    assert ranked["data"][0]["y"] == ["uniform", "linucb"] and ranked["data"][0]["x"] == [8120.25, 10234.5]
    assert forest["data"][0]["y"] == ["ipw", "dr"]
    assert forest["data"][0]["error_x"]["array"] == pytest.approx([1.35 - 1.23457, 1.26 - 1.2])  # the table shortens to 6 digits
    assert '<script src="/static/plotly.min.js"></script>' in html
    assert "<details open><summary>2 rows" in html


def test_experiment_list_shows_the_decision_and_primary_lift_of_the_experiment_page(client: Any, seeded: Any) -> None:
    from battleground.experiment.monitoring import Monitor

    def truth(name: str) -> Any:
        monitor = Monitor(client=seeded.settings)
        monitor.put_experiment_id(seeded.ids[name])
        return monitor.result()

    html = client.get("/", headers=HTML).text
    assert ">Decision</a>" in html and ">Primary lift</a>" in html
    checkout = truth("checkout-button")
    assert checkout.decision.verdict == "ship" and checkout.decision.best == "treatment"
    lift = next(r.rel_lift for r in checkout.rows if r.metric == "conversion" and r.variant == "treatment")
    assert lift > 0.3  # 14 % vs 9 % of 600 users each
    row = _row(html, str(seeded.ids["checkout-button"]))
    assert 'class="badge v-ship" title="ship treatment">ship<' in row
    assert f"{lift * 100:+.1f} %*" in row and 'class="pos"' in row  # significant, the good way
    # the experiment page says the same
    assert "Decision: ship treatment" in client.get(f"/experiments/{seeded.ids['checkout-button']}", headers=HTML).text

    srm = truth("srm-broken")
    assert srm.decision.verdict == "data_quality"
    assert ">check data<" in _row(html, str(seeded.ids["srm-broken"]))
    stopped = truth("stopped-one").decision.verdict
    assert stopped in ("inconclusive", "collecting")
    assert ">inconclusive<" in _row(html, str(seeded.ids["stopped-one"]))  # stopped: it cannot keep running
    draft = _row(html, str(seeded.ids["draft-one"]))
    assert 'class="decision"><span class="note">—</span>' in draft.replace("l decision", "decision")

    api = {e["name"]: e for e in client.get("/api/experiments").json()["experiments"]}
    assert api["checkout-button"]["decision"] == "ship" and api["checkout-button"]["primary_lift"] == pytest.approx(lift)

    # sortable: ship first, then data quality, then the rest; the largest lift first
    by_decision = client.get("/?sort=decision", headers=HTML).text
    assert by_decision.index("checkout-button") < by_decision.index("srm-broken") < by_decision.index("draft-one")
    by_lift = re.findall(r'<a href="/experiments/\d+">([^<]+)</a>', client.get("/?sort=lift", headers=HTML).text)
    lifts = {n: next((r.rel_lift for r in truth(n).rows if r.metric == "conversion" and not r.is_control), None)
             for n in ("checkout-button", "srm-broken", "stopped-one")}
    assert by_lift[:3] == sorted(lifts, key=lambda n: -lifts[n])
    assert by_lift.index("draft-one") > 2  # no lift: last
    assert 'href="/?sort=lift&amp;status=running"' in client.get("/?status=running", headers=HTML).text
