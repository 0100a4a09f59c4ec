"""The decision service over HTTP: what /decide answers and logs for A/B tests, bandit-vs-control and
a policy alone; the token gate; rewards; no decision lost or logged twice under concurrent load."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from tests.decisions.conftest import AUTH, seed_home

from battleground.experiment.assign import assign_one
from battleground.settings import Settings
from battleground.storage.decisions import open_decision_log


def _decide(client: Any, **body: Any) -> Any:
    return client.post("/decide", json=body, headers=AUTH)


def test_writes_need_the_token_and_a_trusted_host(home: Settings, client: Any) -> None:
    from fastapi.testclient import TestClient

    from battleground.decisions import create_decision_app

    body = {"unit_id": 1, "policy": "coupons", "context": [1.0, 0.0]}
    assert client.post("/decide", json=body).status_code == 401
    assert client.post("/decide", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/health").status_code == 200
    with TestClient(create_decision_app(home, updaters=False), base_url="http://evil.example") as other:
        assert other.post("/decide", json=body, headers=AUTH).status_code == 400
    read_only = dataclasses.replace(home, api_token=None)
    with TestClient(create_decision_app(read_only, updaters=False), base_url="http://127.0.0.1") as ro:
        assert ro.post("/decide", json=body, headers=AUTH).status_code == 403
    assert open_decision_log(home).count() == (0, 0, 0)  # nothing refused was logged


def test_ab_experiment_uses_the_deterministic_assignment_and_records_the_exposure(home: Settings, client: Any) -> None:
    answers = [_decide(client, unit_id=f"user-{i}", experiment="ab").json() for i in range(40)]
    expected = [assign_one(f"user-{i}", salt="salt-ab", variants=["control", "treatment"], weights=[0.3, 0.7])
                for i in range(40)]
    assert [a["variant"] for a in answers] == expected
    assert {a["propensity"] for a in answers} == {0.3, 0.7}
    again = _decide(client, unit_id="user-0", experiment="ab").json()
    assert again["variant"] == answers[0]["variant"] and again["decision_id"] != answers[0]["decision_id"]
    store = open_decision_log(home).store
    assert dict(store.count_by_type()) == {"exposure": 40}  # one per user, the second decision adds none
    assert _decide(client, unit_id=1, experiment="draft-one").status_code == 409
    assert _decide(client, unit_id=1, experiment="missing").status_code == 404


def test_bandit_vs_control_serves_the_policy_to_one_variant_and_random_arms_to_the_other(home: Settings, client: Any) -> None:
    rows = [_decide(client, unit_id=i, policy="coupons", context=[1.0, i % 5 / 5]).json() for i in range(120)]
    variants = [assign_one(str(i), salt="salt-bvc", variants=["control", "bandit"], weights=[0.5, 0.5]) for i in range(120)]
    assert [r["variant"] for r in rows] == variants
    control = [r for r in rows if r["variant"] == "control"]
    bandit = [r for r in rows if r["variant"] == "bandit"]
    assert control and bandit
    assert {r["policy_version"] for r in control} == {0} and {r["propensity"] for r in control} == {1 / 3}
    assert {r["policy_version"] for r in bandit} == {1}
    assert len({r["action"] for r in control}) == 3  # uniform over the arms
    logged = open_decision_log(home).read(policy="coupons")
    assert logged.trains.tolist() == [v == "bandit" for v in variants]  # the control slice never trains


def test_bad_requests_log_nothing(home: Settings, client: Any) -> None:
    assert _decide(client, unit_id=1, policy="coupons", context=[1.0]).status_code == 422
    assert _decide(client, unit_id=1, policy="coupons", context=["x", 1.0]).status_code == 422
    assert _decide(client, unit_id=1, policy="coupons", experiment="ab", context=[1.0, 0.0]).status_code == 422
    assert _decide(client, unit_id=1, experiment="coupons").status_code == 422
    assert _decide(client, unit_id="", policy="solo", context=[1.0, 0.0]).status_code == 422
    assert open_decision_log(home).count() == (0, 0, 0)


def test_invalid_bodies_get_the_field_level_422(home: Settings, client: Any) -> None:
    """/decide parses its body itself (one pydantic-core pass); the answer is still FastAPI's 422 with
    the field's location, and nothing is logged."""
    missing = _decide(client, policy="solo", context=[1.0, 0.0])
    assert missing.status_code == 422
    assert [(e["type"], e["loc"]) for e in missing.json()["detail"]] == [("missing", ["body", "unit_id"])]
    bad_number = _decide(client, unit_id=1, policy="solo", context=[1.0, "x"])
    assert [(e["type"], e["loc"]) for e in bad_number.json()["detail"]] == [("float_parsing", ["body", "context", 1])]
    too_long = _decide(client, unit_id=1, policy="solo", context=[1.0, 0.0], decision_id="d" * 201)
    assert [(e["type"], e["loc"]) for e in too_long.json()["detail"]] == [("string_too_long", ["body", "decision_id"])]
    not_json = client.post("/decide", content=b'{"unit_id": 1,', headers={**AUTH, "Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "json_invalid"
    assert open_decision_log(home).count() == (0, 0, 0)
    schema = client.get("/openapi.json").json()["paths"]["/decide"]["post"]["requestBody"]
    assert schema["required"] and "unit_id" in schema["content"]["application/json"]["schema"]["required"]


def test_a_resent_decision_id_returns_the_logged_decision(home: Settings, client: Any) -> None:
    first = _decide(client, unit_id=5, policy="solo", context=[1.0, 0.5], decision_id="fixed-1").json()
    again = _decide(client, unit_id=5, policy="solo", context=[0.0, 9.0], decision_id="fixed-1").json()
    assert first["new"] and not again["new"]
    assert (again["action"], again["propensity"]) == (first["action"], first["propensity"])
    assert _decide(client, unit_id=6, policy="solo", context=[1.0, 0.5], decision_id="fixed-1").status_code == 409
    assert open_decision_log(home).count("solo") == (1, 1, 0)


def test_rewards_attach_once_and_reach_the_experiment_events(home: Settings, client: Any) -> None:
    d = _decide(client, unit_id=3, policy="coupons", context=[1.0, 0.2]).json()
    ok = client.post("/reward", json={"decision_id": d["decision_id"], "reward": 2.5}, headers=AUTH)
    assert ok.json()["status"] == "stored"
    assert client.post("/reward", json={"decision_id": d["decision_id"], "reward": 2.5}, headers=AUTH).json()["status"] == "duplicate"
    assert client.post("/reward", json={"decision_id": d["decision_id"], "reward": 1.0}, headers=AUTH).status_code == 409
    assert client.post("/reward", json={"decision_id": "nope", "reward": 1.0}, headers=AUTH).status_code == 404
    assert client.post("/reward", json={"decision_id": d["decision_id"], "reward": 1.0}).status_code == 401
    log = open_decision_log(home)
    assert log.count("coupons") == (1, 1, 1)
    events = log.store.to_arrow().to_pydict()
    assert sorted(zip(events["event_type"], events["value"], strict=True)) == [("exposure", None), ("reward", 2.5)]


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_no_decision_is_lost_or_logged_twice_under_concurrent_load(backend: str, request: pytest.FixtureRequest) -> None:
    from fastapi.testclient import TestClient

    from battleground.decisions import create_decision_app

    base = request.getfixturevalue("settings" if backend == "duckdb" else "postgres_settings")
    home = seed_home(base)
    n_clients, per_client = 8, 60
    with TestClient(create_decision_app(home, updaters=False), base_url="http://127.0.0.1") as client:
        def run(c: int) -> list[dict[str, Any]]:
            rng = np.random.default_rng(c)
            out = []
            for i in range(per_client):
                body = {"unit_id": f"c{c}-u{i % 7}", "policy": "coupons", "context": rng.random(2).tolist(),
                        "decision_id": f"c{c}-{i}"}
                out.append(_decide(client, **body).json())
                if i % 5 == 0:  # a client that did not hear the answer re-sends
                    assert _decide(client, **body).json()["action"] == out[-1]["action"]
            return out

        with ThreadPoolExecutor(n_clients) as pool:
            answers = [a for part in pool.map(run, range(n_clients)) for a in part]
        batches = client.app.state.service.writer.batches
    total = n_clients * per_client
    assert len({a["decision_id"] for a in answers}) == total
    log = open_decision_log(home)
    assert log.count("coupons") == (total, total, 0)
    stored = log.read(policy="coupons")
    by_id = dict(zip(stored.decision_id.tolist(), zip(stored.action.tolist(), stored.propensity.tolist(), strict=True), strict=True))
    assert all(by_id[a["decision_id"]] == (a["action"], a["propensity"]) for a in answers)
    exposures = dict(log.store.count_by_type())["exposure"]
    units = {f"c{c}-u{i}" for c in range(n_clients) for i in range(7)}
    assert exposures == sum(assign_one(u, salt="salt-bvc", variants=["control", "bandit"], weights=[0.5, 0.5]) is not None
                            for u in units)
    assert batches < total + total // 5  # group commit shared some transactions (never more than one per call)
