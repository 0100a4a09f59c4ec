"""The dashboard on PostgreSQL, and on storage that cannot be reached (503, never 500)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from battleground.settings import Settings


@pytest.mark.postgres
def test_ingest_and_results_on_postgres(postgres_settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from battleground.experiment.events import open_event_store
    from battleground.experiment.register import Registry
    from battleground.web import create_app

    settings = dataclasses.replace(postgres_settings, api_token="pg-token")
    registry = Registry(settings.registry_url)
    exp = registry.create_experiment(
        "pg-test", metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}],
        start_at="2022-03-01",
    )
    registry.start(exp.id)
    events = []
    for u in range(40):  # 20 users per variant; control converts 5 of 20, treatment 10 of 20
        variant = ("control", "treatment")[u % 2]
        events.append({"event_id": f"x{u}", "variant": variant, "user_id": f"u{u}", "event_type": "exposure",
                       "timestamp": f"2022-03-0{1 + u % 3}T10:00:00Z"})
        if (variant == "control" and u < 10) or (variant == "treatment" and u < 20):
            events.append({"event_id": f"p{u}", "variant": variant, "user_id": f"u{u}",
                           "event_type": "purchase", "timestamp": f"2022-03-0{1 + u % 3}T11:00:00Z"})
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        auth = {"Authorization": "Bearer pg-token"}
        r = c.post("/api/events", json={"experiment": "pg-test", "events": events}, headers=auth)
        assert r.status_code == 200 and r.json() == {"received": 55, "inserted": 55, "duplicates": 0, "conflicts": 0}
        bad = c.post("/api/events", json={"experiment": exp.id, "events": [{**events[0], "event_id": "new", "variant": "x"}]},
                     headers=auth)
        assert bad.status_code == 422 and bad.json()["field"] == "variant"
        assert open_event_store(settings).count(exp.id) == 55
        rows = {r["variant"]: r for r in c.get("/api/experiments/pg-test/results").json()["rows"]}
        assert rows["control"]["users"] == 20 and rows["control"]["value"] == pytest.approx(5 / 20)
        assert rows["treatment"]["value"] == pytest.approx(10 / 20)
        daily = c.get(f"/api/experiments/{exp.id}/daily").json()["rows"]
        assert [r["users"] for r in daily if r["variant"] == "control"] == [7, 13, 20]
        assert "pg-test" in c.get("/", headers={"accept": "text/html"}).text


def test_unreachable_storage_is_503_with_a_clear_message(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    settings = Settings.from_env({
        "BATTLEGROUND_HOME": str(tmp_path / ".battleground"),
        "BATTLEGROUND_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",  # nothing listens on port 1
        "BATTLEGROUND_API_TOKEN": "t",
    })
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        for url in ("/api/experiments", "/api/experiments/1/results"):
            r = c.get(url)
            assert r.status_code == 503 and r.headers["retry-after"] == "2"
            assert r.json()["detail"].startswith(("storage unavailable (StoreUnavailableError", "storage unavailable (OperationalError"))
            assert "retry in a few seconds" in r.json()["detail"]
        page = c.get("/", headers={"accept": "text/html"})
        assert page.status_code == 503 and "storage unavailable" in page.text
        write: Any = c.post("/api/events", headers={"Authorization": "Bearer t"}, json={
            "experiment": 1, "events": [{"event_id": "a", "variant": "control", "user_id": "u",
                                         "event_type": "exposure", "timestamp": "2022-03-05"}]})
        assert write.status_code == 503
