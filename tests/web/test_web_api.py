"""The JSON API: every route on the seeded home, write access and batch validation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from battleground.stats import z_test_proportions

TOKEN = "web-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _count(seeded: Any, name: str = "ingest-target") -> int:
    from battleground.experiment.events import open_event_store

    return open_event_store(seeded.settings).count(seeded.ids[name])


def _event(i: int, **over: Any) -> dict[str, Any]:
    e = {"event_id": f"api-{i}", "variant": "control" if i % 2 else "treatment", "user_id": f"au{i}",
         "event_type": "exposure", "timestamp": "2022-03-05T10:00:00"}
    e.update(over)
    return e


def test_health_says_whether_writes_are_accepted(client: Any, read_only_client: Any) -> None:
    assert client.get("/api/health").json()["read_only"] is False
    body = read_only_client.get("/api/health").json()
    assert body["status"] == "ok" and body["read_only"] is True


def test_list_experiments_with_badges(client: Any, seeded: Any) -> None:
    body = client.get("/api/experiments").json()
    by_name = {e["name"]: e for e in body["experiments"]}
    assert list(by_name) == ["checkout-button", "srm-broken", "stopped-one", "draft-one", "ingest-target"]
    checkout = by_name["checkout-button"]
    assert checkout["users"] == {"control": 600, "treatment": 600}
    assert checkout["end_condition_met"] is True and checkout["srm_alert"] is False
    assert checkout["end_reasons"][0].startswith("target sample size reached")
    srm = by_name["srm-broken"]
    assert srm["srm_status"] == "alert" and srm["srm_alert"] is True
    # χ² = 2 · 100² / 600 = 33.33 with 1 df
    assert srm["srm_p_value"] == pytest.approx(math.erfc(math.sqrt(100**2 / 600 * 2 / 2)), rel=1e-6)
    assert by_name["draft-one"]["srm_status"] == "n/a" and by_name["draft-one"]["srm_p_value"] is None
    running = client.get("/api/experiments", params={"status": "running"}).json()["experiments"]
    assert [e["name"] for e in running] == ["checkout-button", "srm-broken", "ingest-target"]
    assert client.get("/api/experiments", params={"status": "paused"}).status_code == 422


def test_get_experiment_by_id_and_name(client: Any, seeded: Any) -> None:
    exp_id = seeded.ids["checkout-button"]
    by_id = client.get(f"/api/experiments/{exp_id}").json()
    by_name = client.get("/api/experiments/checkout-button").json()
    assert by_id == by_name
    exp = by_id["experiment"]
    assert exp["id"] == exp_id and exp["status"] == "running" and exp["control"] == "control"
    assert [m["name"] for m in exp["metrics"]] == ["conversion", "revenue"]
    assert exp["end_conditions"]["target_sample_size"] == 500
    assert "salt" not in exp
    missing = client.get("/api/experiments/nope")
    assert missing.status_code == 404 and "no experiment 'nope'" in missing.json()["detail"]


def test_results_match_the_seeded_events(client: Any, seeded: Any) -> None:
    body = client.get("/api/experiments/checkout-button/results").json()
    truth = seeded.truth["checkout-button"]
    rows = {(r["metric"], r["variant"]): r for r in body["rows"]}
    assert len(rows) == 4
    for variant, (users, converters, revenue) in truth.items():
        conv = rows[("conversion", variant)]
        assert conv["users"] == users and conv["value"] == pytest.approx(converters / users, rel=1e-12)
        assert rows[("revenue", variant)]["value"] == pytest.approx(revenue / users, rel=1e-9)
    t = rows[("conversion", "treatment")]
    (_, c_conv, _), (_, t_conv, _) = truth["control"], truth["treatment"]
    assert t["abs_lift"] == pytest.approx(t_conv / 600 - c_conv / 600, rel=1e-9)
    assert t["abs_ci_lower"] < t["abs_lift"] < t["abs_ci_upper"]
    z = z_test_proportions((c_conv, 600), (t_conv, 600))
    assert t["p_value"] == pytest.approx(z.p_value, rel=0.05)
    assert body["decision"]["verdict"] == "ship" and body["decision"]["headline"] == "ship treatment"
    assert body["srm"]["status"] == "ok" and body["srm"]["observed"] == [600, 600]
    assert rows[("conversion", "control")]["abs_lift"] is None  # NaN becomes null
    assert body["end_conditions"]["met"] is True


def test_results_window_and_bad_windows(client: Any, seeded: Any) -> None:
    first_days = client.get("/api/experiments/checkout-button/results",
                            params={"start": "2022-03-01", "end": "2022-03-02"}).json()
    users = {r["variant"]: r["users"] for r in first_days["rows"] if r["metric"] == "conversion"}
    assert users == {"control": 200, "treatment": 200}  # 100 users a day per variant
    aware = client.get("/api/experiments/checkout-button/results",
                       params={"start": "2022-03-01T05:00:00+05:00", "end": "2022-03-03T00:00:00Z"}).json()
    assert {r["users"] for r in aware["rows"] if r["metric"] == "conversion"} == {200}
    for params, field in (({"start": "yesterday"}, "start"), ({"end": "2022-13-01"}, "end"),
                          ({"end": "9999-12-31"}, "end"), ({"start": "0001-01-01"}, "start")):
        r = client.get("/api/experiments/checkout-button/results", params=params)
        assert r.status_code == 422 and r.json()["field"] == field, params
    empty = client.get("/api/experiments/checkout-button/results", params={"start": "2023-01-01"}).json()
    assert empty["rows"] == [] and "no user has been exposed yet in this window" in empty["no_data"]


def test_daily_series_is_cumulative(client: Any, seeded: Any) -> None:
    body = client.get("/api/experiments/checkout-button/daily").json()
    control = [r for r in body["rows"] if r["metric"] == "conversion" and r["variant"] == "control"]
    assert [r["date"][:10] for r in control] == [f"2022-03-0{d}" for d in range(1, 7)]
    assert [r["users"] for r in control] == [100, 200, 300, 400, 500, 600]
    assert control[-1]["value"] == pytest.approx(seeded.truth["checkout-button"]["control"][1] / 600)
    assert client.get("/api/experiments/draft-one/daily").json() == {
        "experiment_id": seeded.ids["draft-one"], "rows": [],
        "no_data": "no user has been exposed yet (results appear once 'exposure' events arrive)",
    }


def test_audit_log(client: Any, seeded: Any) -> None:
    entries = client.get("/api/experiments/stopped-one/audit").json()["entries"]
    assert [e["action"] for e in entries] == ["create", "start", "stop"]
    assert entries[-1]["detail"]["reason"] == "the treatment broke the checkout page"
    assert client.get("/api/experiments/404/audit").status_code == 404


def test_leaderboard(client: Any, mlflow_runs: dict[str, str]) -> None:
    body = client.get("/api/leaderboard").json()
    assert [r["model_type"] for r in body["rows"]] == ["lightgbm", "xgboost", "logistic"]
    assert [r["score"] for r in body["rows"]] == [0.81, 0.79, 0.74]
    assert [r["champion"] for r in body["rows"]] == [True, False, False]
    assert body["champion"] == {"name": "churn", "alias": "champion", "version": "1",
                                "run_id": mlflow_runs["lightgbm"]}
    assert body["metrics"] == ["validation_score", "valid_roc_auc", "fit_seconds"]
    assert body["rows"][1]["metrics"]["fit_seconds"] == 1.6


def test_bandit_files(client: Any) -> None:
    files = {f["path"]: f for f in client.get("/api/bandit").json()["files"]}
    assert sorted(files) == [
        "battle-2022-03/metrics.json", "battle-2022-03/ope.csv", "battle-2022-03/report.html",
        "battle-2022-03/segments/by_sensitivity.csv", "battle-2022-03/summary.csv",
    ]
    ope = files["battle-2022-03/ope.csv"]
    assert ope["columns"] == ["estimator", "estimate", "ci_lower", "ci_upper"]
    assert ope["rows"] == [["ipw", "1.23457", "1.1", "1.35"], ["dr", "1.2", "1.15", "1.26"]]
    assert ope["total_rows"] == 2 and files["battle-2022-03/report.html"]["kind"] == "html"


def test_openapi_spec_documents_the_api(client: Any) -> None:
    spec = client.get("/api/openapi.json").json()
    assert set(spec["paths"]) == {
        "/api/health", "/api/experiments", "/api/experiments/{key}", "/api/experiments/{key}/results",
        "/api/experiments/{key}/daily", "/api/experiments/{key}/audit", "/api/leaderboard", "/api/bandit",
        "/api/events", "/api/ledger",
    }
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 404  # the interactive docs would need a CDN


# ---------------------------------------------------------------------------------------------------
# writes
# ---------------------------------------------------------------------------------------------------


def test_read_only_server_refuses_writes(read_only_client: Any, seeded: Any) -> None:
    before = _count(seeded)
    for headers in ({}, AUTH):
        r = read_only_client.post("/api/events", json={"experiment": "ingest-target", "events": [_event(1)]},
                                  headers=headers)
        assert r.status_code == 403
        assert "read-only" in r.json()["detail"] and "BATTLEGROUND_API_TOKEN" in r.json()["detail"]
    # refused before the body is even read
    assert read_only_client.post("/api/events", content=b"{not json").status_code == 403
    assert _count(seeded) == before


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic d2ViOnRlc3Q=", "Bearer", TOKEN])
def test_missing_or_wrong_token_is_401(client: Any, seeded: Any, header: str | None) -> None:
    before = _count(seeded)
    headers = {} if header is None else {"Authorization": header}
    r = client.post("/api/events", json={"experiment": "ingest-target", "events": [_event(2)]}, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    bad_body = client.post("/api/events", json={"events": "nope"}, headers=headers)
    assert bad_body.status_code == 401
    assert _count(seeded) == before


def test_right_token_ingests_idempotently(client: Any, seeded: Any) -> None:
    before = _count(seeded)
    batch = {"experiment": "ingest-target", "events": [_event(i) for i in range(10, 20)]}
    batch["events"][3]["value"] = 12.5
    batch["events"][4].update(experiment=seeded.ids["ingest-target"], experiment_id=None)
    del batch["events"][4]["experiment_id"]
    r = client.post("/api/events", json=batch, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 10, "inserted": 10, "duplicates": 0, "conflicts": 0}
    assert _count(seeded) == before + 10
    again = client.post("/api/events", json=batch, headers=AUTH).json()
    assert again == {"received": 10, "inserted": 0, "duplicates": 10, "conflicts": 0}
    assert _count(seeded) == before + 10
    batch["events"][0]["value"] = 99.0  # a re-sent id with other content: reported, the stored one kept
    clash = client.post("/api/events", json=batch, headers=AUTH).json()
    assert clash == {"received": 10, "inserted": 0, "duplicates": 9, "conflicts": 1}
    users = client.get("/api/experiments/ingest-target").json()["summary"]["users"]
    assert sum(users.values()) >= 10


@pytest.mark.parametrize(
    ("change", "row", "field"),
    [
        ({"variant": "bogus"}, 2, "variant"),
        ({"timestamp": "not a time"}, 2, "timestamp"),
        ({"timestamp": "2021-12-31T00:00:00"}, 2, "timestamp"),  # before the experiment's start
        ({"value": "lots"}, 2, "value"),
        ({"event_id": ""}, 2, "event_id"),
        ({"user_id": "a\x00b"}, 2, "user_id"),
        ({"surprise": 1}, 2, "surprise"),
        ({"experiment": "no-such-experiment"}, 2, "experiment"),
        ({"experiment": "draft-one", "variant": "control"}, None, None),  # fine on its own ...
    ],
)
def test_bad_batch_is_422_naming_row_and_field_and_stores_nothing(
    client: Any, seeded: Any, change: dict[str, Any], row: int | None, field: str | None
) -> None:
    before = _count(seeded)
    events = [_event(100 + i) for i in range(4)]
    events[2].update(change)
    if row is None:  # ... but then make row 3 bad: the good rows of a bad batch are not stored either
        events[3]["variant"] = "nobody"
        row, field = 3, "variant"
    r = client.post("/api/events", json={"experiment": "ingest-target", "events": events}, headers=AUTH)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["row"] == row and body["field"] == field, body
    assert "nothing was stored" in body["detail"]
    assert _count(seeded) == before
    assert _count(seeded, "draft-one") == 0


def test_batch_level_problems_are_422(client: Any, seeded: Any) -> None:
    before = _count(seeded)
    cases = [
        {"events": [_event(1)]},  # no experiment anywhere
        {"experiment": "ingest-target", "events": []},
        {"experiment": 10**30, "events": [_event(1)]},
        {"experiment": "99999999999999999999", "events": [_event(1)]},
        {"experiment": "ingest-target"},
        [_event(1)],
    ]
    for body in cases:
        r = client.post("/api/events", json=body, headers=AUTH)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"]
    r = client.post("/api/events", content=b"{broken", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    assert _count(seeded) == before


def test_nan_values_are_refused(client: Any, seeded: Any) -> None:
    before = _count(seeded)
    raw = ('{"experiment": "ingest-target", "events": [{"event_id": "n", "variant": "control", '
           '"user_id": "u", "event_type": "purchase", "timestamp": "2022-03-05", "value": NaN}]}')
    r = client.post("/api/events", content=raw.encode(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "value" and r.json()["row"] == 0
    assert _count(seeded) == before
