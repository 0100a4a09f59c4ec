"""A decision-service home: a running bandit-vs-control experiment and a deployed LinTS policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from battleground.settings import Settings

TOKEN = "decisions-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def seed_home(settings: Settings, *, batch_size: int = 50, control: str | int = "random") -> Settings:
    from battleground.decisions import PolicySpec, deploy_policy
    from battleground.experiment.register import Registry

    settings = dataclasses.replace(settings, api_token=TOKEN)
    registry = Registry(settings.registry_url)
    for name, variants in (("bvc", {"control": 0.5, "bandit": 0.5}), ("ab", {"control": 0.3, "treatment": 0.7})):
        exp = registry.create_experiment(name, variants=variants, salt=f"salt-{name}",
                                         metrics=[{"name": "reward", "kind": "mean", "numerator": "reward"}])
        registry.start(exp.id)
    registry.create_experiment("draft-one", variants={"control": 0.5, "treatment": 0.5})
    deploy_policy(settings, PolicySpec("coupons", n_arms=3, n_features=2, experiment="bvc", batch_size=batch_size,
                                       control=control))
    deploy_policy(settings, PolicySpec("solo", n_arms=3, n_features=2, batch_size=batch_size))
    return settings


@pytest.fixture
def home(settings: Settings) -> Settings:
    return seed_home(settings)


@pytest.fixture
def client(home: Settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from battleground.decisions import create_decision_app

    with TestClient(create_decision_app(home, updaters=False), base_url="http://127.0.0.1") as c:
        yield c
