"""/decide honours layers and holdouts: a unit outside an experiment's layer range or held out by its
project's holdout gets no variant (422, nothing logged, no exposure); one inside gets the Assigner's."""

from __future__ import annotations

from typing import Any

import numpy as np
from tests.decisions.conftest import AUTH, seed_home

from battleground.experiment.assign import Assigner
from battleground.experiment.register import Registry
from battleground.settings import Settings
from battleground.storage.decisions import open_decision_log


def test_decide_gives_no_variant_outside_the_range_or_in_the_holdout(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from battleground.decisions import create_decision_app

    home = seed_home(settings)
    registry = Registry(home.registry_url)
    registry.start(registry.create_holdout("hold", fraction=0.2, project="shop").id)
    layered = registry.start(registry.create_experiment(
        "layered", project="shop", layer="checkout", layer_range=(0, 5000), salt="salt-layered").id)
    assigner = Assigner(layered)
    units = [f"u{i}" for i in range(60)]
    why = {u: assigner.exclusion(u) for u in units}
    assert {"holdout", "layer", None} <= set(why.values())
    with TestClient(create_decision_app(home, updaters=False), base_url="http://127.0.0.1") as client:
        answers: list[Any] = [client.post("/decide", json={"unit_id": u, "experiment": "layered"}, headers=AUTH)
                              for u in units]
    for u, r in zip(units, answers, strict=True):
        if why[u] is None:
            assert r.status_code == 200 and r.json()["variant"] == assigner.assign(u)
        else:
            assert r.status_code == 422
            assert ("holdout" if why[u] == "holdout" else "layer bucket is outside") in r.json()["detail"]
    served = sum(v is None for v in why.values())
    counts = dict(open_decision_log(home).store.count_by_type())
    assert counts == {"exposure": served}
    assert np.array_equal(assigner.assign_many(units) != None, [why[u] is None for u in units])  # noqa: E711


def test_a_held_out_unit_gets_neither_the_bandit_nor_its_control_slice(settings: Settings) -> None:
    """A bandit-vs-control experiment behind a holdout: held-out units get no action (422, nothing
    logged), units in the experiment get the bandit or the control slice, as without a holdout."""
    import dataclasses

    from fastapi.testclient import TestClient

    from battleground.decisions import PolicySpec, create_decision_app, deploy_policy

    home = dataclasses.replace(settings, api_token=AUTH["Authorization"].split()[1])
    registry = Registry(home.registry_url)
    registry.start(registry.create_holdout("hold", fraction=0.3, project="shop").id)
    bvc = registry.start(registry.create_experiment(
        "bvc-shop", project="shop", variants={"control": 0.5, "bandit": 0.5}, salt="salt-bvc-shop",
        metrics=[{"name": "reward", "kind": "mean", "numerator": "reward"}]).id)
    deploy_policy(home, PolicySpec("offers", n_arms=3, n_features=2, experiment="bvc-shop", control=0))
    assigner = Assigner(bvc)
    units = [f"u{i}" for i in range(40)]
    why = {u: assigner.exclusion(u) for u in units}
    assert {"holdout", None} <= set(why.values())
    with TestClient(create_decision_app(home, updaters=False), base_url="http://127.0.0.1") as client:
        answers = {u: client.post("/decide", json={"unit_id": u, "policy": "offers", "context": [0.5, -1.0]},
                                  headers=AUTH) for u in units}
    for u, r in answers.items():
        if why[u] == "holdout":
            assert r.status_code == 422 and "held out by the project's holdout" in r.json()["detail"]
        else:
            assert r.status_code == 200, r.text
            assert r.json()["variant"] == assigner.assign(u)
    logged = open_decision_log(home).read(policy="offers")
    assert sorted(logged.unit_id) == sorted(u for u in units if why[u] is None)
