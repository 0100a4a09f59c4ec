"""A seeded battleground home for the dashboard tests (one per test session and worker).

Experiments (all registered through the real :class:`Registry`, events through ``ingest``):

* ``checkout-button`` — running, target 500 users per variant, 600 + 600 users: the end condition is
  met and treatment converts better (14 % vs 9 %): "ship treatment";
* ``srm-broken`` — running, 50/50 weights but 700 vs 500 users: an SRM alert;
* ``stopped-one`` — stopped with a reason, a few events;
* ``draft-one`` — a draft with a ratio metric and no events;
* ``ingest-target`` — running, empty: the write tests send their events here.

Plus bandit outputs under ``<home>/bandit`` and, for the tests that ask for ``mlflow_runs``, an MLflow
store with three model runs and a tuning trial (the ``lightgbm`` run is ``churn@champion``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.web._hostile import hostile

from battleground.settings import Settings

TOKEN = "web-test-token"
START = dt.datetime(2022, 3, 1)
MODEL_RUNS = (("lightgbm", 0.81, 2.1), ("xgboost", 0.79, 1.6), ("logistic", 0.74, 0.2))

@dataclasses.dataclass(frozen=True)
class Seeded:
    settings: Settings
    ids: dict[str, int]
    # per experiment, variant: (users, converters, revenue sum) of the seeded events
    truth: dict[str, dict[str, tuple[int, int, float]]]
    events: dict[str, int]

def _events(name: str, users: dict[str, int], rates: dict[str, float], seed: int, days: int = 6) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int, float]]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    truth: dict[str, tuple[int, int, float]] = {}
    for variant, n in users.items():
        converters, revenue = 0, 0.0
        for u in range(n):
            at = START + dt.timedelta(days=int(u * days // n), minutes=int(rng.integers(0, 1440)))
            user = f"{variant[:1]}{u}"
            rows.append({"event_id": f"{name}-x-{user}", "experiment": name, "variant": variant,
                         "user_id": user, "event_type": "exposure", "timestamp": at})
            if rng.random() < rates[variant]:
                value = round(float(rng.gamma(2.0, 10.0)), 2)
                converters += 1
                revenue += value
                rows.append({"event_id": f"{name}-p-{user}", "experiment": name, "variant": variant,
                             "user_id": user, "event_type": "purchase",
                             "timestamp": at + dt.timedelta(minutes=3), "value": value})
        truth[variant] = (n, converters, revenue)
    return rows, truth

def _seed_registry(settings: Settings) -> tuple[dict[str, int], dict[str, dict[str, tuple[int, int, float]]], dict[str, int]]:
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry

    registry = Registry(settings.registry_url)
    store = open_event_store(settings)
    metrics = [
        {"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True},
        {"name": "revenue", "kind": "mean", "numerator": "purchase"},
    ]
    ids: dict[str, int] = {}
    truth: dict[str, dict[str, tuple[int, int, float]]] = {}
    counts: dict[str, int] = {}
    plans = {
        "checkout-button": ({"control": 600, "treatment": 600}, {"control": 0.09, "treatment": 0.14}, 500),
        "srm-broken": ({"control": 700, "treatment": 500}, {"control": 0.10, "treatment": 0.10}, None),
        "stopped-one": ({"control": 40, "treatment": 40}, {"control": 0.2, "treatment": 0.2}, None),
    }
    for seed, (name, (users, rates, target)) in enumerate(plans.items(), start=1):
        rec = registry.create_experiment(
            name, variants={"control": 0.5, "treatment": 0.5}, metrics=metrics, owner="ana",
            hypothesis=f"{name}: the treatment converts better", description="seeded by tests/web",
            start_at=START, end_conditions={"target_sample_size": target} if target else None,
        )
        registry.start(rec.id)
        rows, truth[name] = _events(name, users, rates, seed)
        ingest(store, rows)
        ids[name] = rec.id
        counts[name] = len(rows)
    registry.stop(ids["stopped-one"], "the treatment broke the checkout page")
    ids["draft-one"] = registry.create_experiment(
        "draft-one", metrics=[{"name": "ctr", "kind": "ratio", "numerator": "click", "denominator": "impression"}],
    ).id
    target = registry.create_experiment(
        "ingest-target", metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}],
        start_at=START,
    )
    registry.start(target.id)
    ids["ingest-target"] = target.id
    return ids, truth, counts

def _seed_mlflow(settings: Settings) -> dict[str, str]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    exp = client.create_experiment("churn-training")
    run_ids = {}
    for kind, score, seconds in MODEL_RUNS:
        run = client.create_run(exp, run_name=f"{kind}-b1", tags={
            "battleground.kind": "model", "battleground.batch": "b1", "model_type": kind,
        })
        client.log_batch(run.info.run_id, metrics=[
            Metric("validation_score", score, 0, 0), Metric("valid_roc_auc", score + 0.05, 0, 0),
            Metric("fit_seconds", seconds, 0, 0),
        ])
        client.set_terminated(run.info.run_id)
        run_ids[kind] = run.info.run_id
    trial = client.create_run(exp, run_name="lightgbm-trial-0", tags={"battleground.kind": "trial"})
    client.log_batch(trial.info.run_id, metrics=[Metric("trial_value", 0.99, 0, 0)])
    client.create_registered_model("churn")
    version = client.create_model_version("churn", source=f"runs:/{run_ids['lightgbm']}/model",
                                          run_id=run_ids["lightgbm"])
    client.set_registered_model_alias("churn", "champion", version.version)
    return run_ids

def _seed_bandit(settings: Settings) -> None:
    battle = settings.home / "bandit" / "battle-2022-03"
    (battle / "segments").mkdir(parents=True)
    (battle / "summary.csv").write_text(
        "policy,accumulated_revenue,retention,empirical_discount\n"
        "linucb,10234.5,0.8123456789,0.051\nuniform,8120.25,0.71,0.05\n", encoding="utf-8")
    (battle / "ope.csv").write_text(
        "estimator,estimate,ci_lower,ci_upper\nipw,1.234567891,1.1,1.35\ndr,1.2,1.15,1.26\n", encoding="utf-8")
    (battle / "segments" / "by_sensitivity.csv").write_text(
        "segment,policy,revenue\nlow,linucb,400\nhigh,linucb,900\n", encoding="utf-8")
    (battle / "metrics.json").write_text(json.dumps({"winner": "linucb", "rounds": 1000}), encoding="utf-8")
    (battle / "report.html").write_text("<html><body><h1>bandit battle report</h1></body></html>", encoding="utf-8")
    (battle / "notes.txt").write_text("not a summary", encoding="utf-8")

@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    home = tmp_path_factory.mktemp("web") / ".battleground"
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": TOKEN})
    ids, truth, counts = _seed_registry(settings)
    _seed_bandit(settings)
    return Seeded(settings, ids, truth, counts)


@pytest.fixture(scope="session")
def mlflow_runs(seeded: Seeded) -> dict[str, str]:
    """The seeded home's MLflow store (model type → run id); only the leaderboard tests pay for it."""
    return _seed_mlflow(seeded.settings)

@pytest.fixture(scope="session")
def app(seeded: Seeded) -> Any:
    from battleground.web import create_app

    return create_app(seeded.settings)

@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c

@pytest.fixture(scope="session")
def read_only_client(seeded: Seeded) -> Iterator[Any]:
    """The same home served without a token: the API is read-only."""
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    with TestClient(create_app(dataclasses.replace(seeded.settings, api_token=None)), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def empty_settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"BATTLEGROUND_HOME": str(tmp_path / ".battleground")})


# ---------------------------------------------------------------------------------------------------
# a home where every text a person can type is hostile markup (the security tests)
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Hostile:
    settings: Settings
    running: int
    stopped: int
    name: str


@pytest.fixture(scope="session")
def hostile_home(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    """A registry, events, bandit files, reports and an MLflow run named with hostile markup."""
    from battleground.experiment.events import ingest, open_event_store
    from battleground.experiment.register import Registry

    home = tmp_path_factory.mktemp("hostile") / ".battleground"
    settings = Settings.from_env({"BATTLEGROUND_HOME": str(home), "BATTLEGROUND_API_TOKEN": TOKEN})
    registry = Registry(settings.registry_url)
    control, treatment = hostile("control"), "t" + hostile("treatment")
    metrics = [
        {"name": hostile("metric"), "kind": "proportion", "numerator": hostile("event"), "primary": True},
        {"name": "g" + hostile("guardrail"), "kind": "mean", "numerator": hostile("event"), "guardrail": True},
    ]
    name = hostile("name")
    rec = registry.create_experiment(
        name, variants={control: 0.5, treatment: 0.5}, metrics=metrics, owner=hostile("owner"),
        hypothesis=hostile("hypothesis"), description=hostile("description"), start_at=START,
        end_conditions={"target_sample_size": 100}, actor=hostile("actor"),
    )
    registry.start(rec.id, actor=hostile("actor"))
    registry.record(rec.id, "note", hostile("note"), actor=hostile("actor"))
    rows, _ = _events("h", {control: 150, treatment: 150}, {control: 0.1, treatment: 0.2}, seed=7)
    for r in rows:
        r["experiment"] = rec.id
        r["event_type"] = "exposure" if r["event_type"] == "exposure" else hostile("event")
    ingest(open_event_store(settings), rows)
    stopped = registry.create_experiment("s" + hostile("stopped"), metrics=metrics[:1], start_at=START)
    registry.start(stopped.id)
    registry.stop(stopped.id, hostile("reason"))

    battle = settings.home / "bandit" / "battle"
    battle.mkdir(parents=True)
    (battle / "summary.csv").write_text(
        f"{hostile('column').replace(',', ' ')},value\n{hostile('cell').replace(',', ' ')},1.5\n", encoding="utf-8")
    (battle / "metrics.json").write_text(json.dumps({hostile("key"): hostile("value")}), encoding="utf-8")
    from battleground.bandit._report import _render

    (battle / "report.html").write_text(
        _render(hostile("title"), hostile("subtitle"), hostile("verdict"),
                [{"title": hostile("section"), "text": hostile("text"), "charts": [],
                  "tables": [{"columns": [hostile("th")], "rows": [{"cells": [hostile("td")], "css": ""}],
                              "note": hostile("table-note")}]}],
                hostile("footer")),
        encoding="utf-8")

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    exp = client.create_experiment(hostile("mlflow-experiment"))
    run = client.create_run(exp, run_name=hostile("run"), tags={
        "battleground.kind": "model", "battleground.batch": hostile("batch"), "model_type": hostile("model"),
    })
    from mlflow.entities import Metric

    client.log_batch(run.info.run_id, metrics=[Metric("validation_score", 0.8, 0, 0)])
    client.set_terminated(run.info.run_id)
    return Hostile(settings, rec.id, stopped.id, name)
