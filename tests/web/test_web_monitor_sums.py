"""The dashboard reads the same sums as :class:`Monitor`: the one scan with the multiple-exposure check
and the CUPED covariates, so its page, API and list say what ``battleground experiment status`` says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from battleground.settings import Settings

START = dt.datetime(2023, 5, 1)
NOW = dt.datetime(2023, 6, 1)
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, int]:
    """400 users per arm with purchases before and after exposure (CUPED has a covariate) and 3 users
    exposed to both variants (3 of 797 users: the multiple-exposure check warns)."""
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry

    settings = Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path_factory.mktemp("sums") / ".battleground")})
    registry = Registry(settings.registry_url)
    rec = registry.create_experiment(
        "cuped-and-doubles", start_at=START - dt.timedelta(days=20),
        metrics=[{"name": "revenue", "kind": "mean", "numerator": "purchase", "primary": True},
                 {"name": "buyers", "kind": "proportion", "numerator": "purchase"}],
    )
    registry.start(rec.id)
    rng = np.random.default_rng(7)
    rows: list[dict[str, Any]] = []
    for variant in ("control", "treatment"):
        for u in range(400):
            user = f"u{u}" if u >= 3 else f"both{u}"  # the first three users are in both arms
            at = START + dt.timedelta(hours=int(rng.integers(0, 240)))
            rows.append({"event_id": f"{variant}-x-{u}", "experiment": rec.name, "variant": variant,
                         "user_id": user if u < 3 else f"{variant[0]}{u}", "event_type": "exposure",
                         "timestamp": at})
            habit = float(rng.gamma(2.0, 5.0))
            uid = user if u < 3 else f"{variant[0]}{u}"
            rows.append({"event_id": f"{variant}-pre-{u}", "experiment": rec.name, "variant": variant,
                         "user_id": uid, "event_type": "purchase", "timestamp": at - dt.timedelta(days=3),
                         "value": round(habit, 2)})
            if rng.random() < 0.6:
                lift = 1.1 if variant == "treatment" else 1.0
                rows.append({"event_id": f"{variant}-p-{u}", "experiment": rec.name, "variant": variant,
                             "user_id": uid, "event_type": "purchase", "timestamp": at + dt.timedelta(hours=2),
                             "value": round(habit * lift + float(rng.normal(0, 2)), 2)})
    ingest(open_event_store(settings), rows)
    return settings, rec.id


def test_dashboard_results_are_monitors_with_cuped_and_the_exposure_check(home: tuple[Settings, int]) -> None:
    import pandas as pd

    from battleground.experiment.monitoring import Monitor
    from battleground.web._view_common import read_only_monitor

    settings, exp_id = home
    monitor = Monitor(client=settings)
    monitor.put_experiment_id(exp_id)
    cli = monitor.result(now=NOW)
    dashboard = read_only_monitor(settings)
    dashboard.experiment_id_ = exp_id
    web = dashboard.result(now=NOW)

    checks = {c.name: c for c in cli.data_quality}
    assert checks["multiple_exposure"].status == "warn" and "3 of 797 users" in checks["multiple_exposure"].detail
    assert "pre_period_bias" in checks and cli.has_cuped
    # the same checks with the same verdicts (values to float precision: DuckDB sums in parallel)
    assert [(c.name, c.status) for c in web.data_quality] == [(c.name, c.status) for c in cli.data_quality]
    assert [c.value for c in web.data_quality] == pytest.approx([c.value for c in cli.data_quality], nan_ok=True)
    assert web.has_cuped
    assert [(r.metric, r.variant, r.cuped is not None) for r in web.rows] == \
        [(r.metric, r.variant, r.cuped is not None) for r in cli.rows]
    assert [r.cuped.rel_lift for r in web.rows if r.cuped] == pytest.approx([r.cuped.rel_lift for r in cli.rows if r.cuped])
    pd.testing.assert_frame_equal(web.to_frame(), cli.to_frame())
    assert (web.decision.verdict, web.decision.best) == (cli.decision.verdict, cli.decision.best)
    # 3 users of each arm were excluded (in both): 397 per arm
    assert web.users == {"control": 397, "treatment": 397}


def test_experiment_page_shows_the_cuped_rows_and_the_exposure_check(home: tuple[Settings, int]) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    settings, exp_id = home
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        html = c.get(f"/experiments/{exp_id}", headers=HTML).text
        assert "3 of 797 users (0.38%) were exposed to more than one variant" in html
        assert "CUPED rows" in html
        api = c.get(f"/api/experiments/{exp_id}/results").json()
        assert any(q["name"] == "multiple_exposure" for q in api.get("data_quality", [])) or "multiple_exposure" in str(api)


def test_a_page_refresh_without_new_events_reads_no_sums(home: tuple[Settings, int], monkeypatch: Any) -> None:
    """The sums are cached by the store's state: a second view of the page scans nothing, and an ingest
    (a new state) makes the next view read the new events."""
    from fastapi.testclient import TestClient

    from battleground.experiment.events import ingest, open_event_store
    from battleground.storage.events import EventStore
    from battleground.web import create_app

    settings, exp_id = home
    scans: list[str] = []
    real_sums, real_daily = EventStore.sums_records, EventStore.daily_experiment_sums

    def sums(self: Any, *args: Any, **kw: Any) -> Any:
        scans.append("sums")
        return real_sums(self, *args, **kw)

    def daily(self: Any, *args: Any, **kw: Any) -> Any:
        scans.append("daily")
        return real_daily(self, *args, **kw)

    monkeypatch.setattr(EventStore, "sums_records", sums)
    monkeypatch.setattr(EventStore, "daily_experiment_sums", daily)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        first = c.get(f"/experiments/{exp_id}", headers=HTML).text
        assert scans.count("sums") == 1 and scans.count("daily") == 1  # one of each for the whole page
        scans.clear()
        again = c.get(f"/experiments/{exp_id}", headers=HTML).text
        assert again.count(">397<") == first.count(">397<") > 0
        c.get("/", headers=HTML)
        assert scans == []  # a refresh (and the list of the same experiment) rescans nothing
        ingest(open_event_store(settings), [{"event_id": "late-x", "experiment": "cuped-and-doubles",
                                             "variant": "control", "user_id": "late", "event_type": "exposure",
                                             "timestamp": START + dt.timedelta(days=11)}])
        after = c.get(f"/experiments/{exp_id}", headers=HTML).text
        assert scans.count("sums") == 1 and "398" in after  # the new user is counted


def test_the_kept_page_follows_the_record_and_the_audit_log(home: tuple[Settings, int]) -> None:
    from fastapi.testclient import TestClient

    from battleground.experiment.register import Registry
    from battleground.web import create_app

    settings, exp_id = home
    registry = Registry(settings.registry_url)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        assert "cuped-and-doubles" in c.get(f"/experiments/{exp_id}", headers=HTML).text
        registry.record(exp_id, "note", "looked at the funnel with the team")
        assert "looked at the funnel with the team" in c.get(f"/experiments/{exp_id}", headers=HTML).text
        registry.update(exp_id, hypothesis="a renamed hypothesis")
        page = c.get(f"/experiments/{exp_id}", headers=HTML).text
        assert "a renamed hypothesis" in page and "looked at the funnel with the team" in page
