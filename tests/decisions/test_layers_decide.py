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
