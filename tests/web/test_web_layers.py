"""The dashboard shows an experiment's project, layer range and holdout; the events API refuses an
exposure of a unit the assignment keeps out (outside the layer range, or held out)."""

from __future__ import annotations

import dataclasses

from battleground.experiment.assign import Assigner
from battleground.experiment.register import Registry
from battleground.settings import Settings

TOKEN = "layers-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_page_shows_layer_and_holdout_and_the_api_refuses_kept_out_exposures(empty_settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from battleground.web import create_app

    settings = dataclasses.replace(empty_settings, api_token=TOKEN)
    registry = Registry(settings.registry_url)
    hold = registry.start(registry.create_holdout("hold-2026", fraction=0.1, project="shop", salt="hold-salt").id, at="2026-12-01")
    exp = registry.start(registry.create_experiment("layered", project="shop", layer="checkout",
                                                    layer_range=(2500, 5000), salt="exp-salt").id,
                         at="2026-12-01")
    assigner = Assigner(exp)
    units = [f"u{i}" for i in range(200)]
    why = {u: assigner.exclusion(u) for u in units}
    held = next(u for u in units if why[u] == "holdout")
    outside = next(u for u in units if why[u] == "layer")
    inside = next(u for u in units if why[u] is None)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        page = client.get(f"/experiments/{exp.id}").text
        assert "checkout: buckets [2500, 5000) of 10,000 (25.00 % of units)" in page
        assert "hold-2026</a> (10.00 % of units held out)" in page and '<td class="l" id="project">shop' in page
        hold_page = client.get(f"/experiments/{hold.id}").text
        assert "holds out buckets [0, 1000) of 10,000 (10.00 % of units)" in hold_page
        api = client.get(f"/api/experiments/{exp.id}").json()["experiment"]
        assert api["layer"] == "checkout" and api["layer_range"] == [2500, 5000]
        assert api["holdout"] == {"id": hold.id, "name": "hold-2026", "buckets": 1000}  # no salt shown
        assert "salt" not in api

        def post(unit: str) -> object:
            event = {"event_id": f"x-{unit}", "variant": assigner.assign(unit) or "control", "user_id": unit,
                     "event_type": "exposure", "timestamp": "2026-12-03T09:00:00"}
            return client.post("/api/events", json={"experiment": exp.id, "events": [event]}, headers=AUTH)

        ok = post(inside)
        assert ok.status_code == 200, ok.text  # type: ignore[attr-defined]
        for unit, words in ((held, "held out by its project's holdout"), (outside, "outside the experiment's range")):
            r = post(unit)
            assert r.status_code == 422, r.text  # type: ignore[attr-defined]
            assert words in r.text and unit in r.text  # type: ignore[attr-defined]
        # a metric event of any unit is still accepted (only exposures assign)
        purchase = {"event_id": "p-1", "variant": "control", "user_id": held, "event_type": "purchase",
                    "timestamp": "2026-12-03T09:00:00"}
        assert client.post("/api/events", json={"experiment": exp.id, "events": [purchase]},
                           headers=AUTH).status_code == 200


def test_an_exposure_to_a_holdout_names_the_units_side(empty_settings: Settings) -> None:
    import pandas as pd
    import pytest

    from battleground.experiment._event_input import EventValidationError
    from battleground.experiment.events import ingest, open_event_store

    registry = Registry(empty_settings.registry_url)
    hold = registry.start(registry.create_holdout("h", fraction=0.3, salt="h-salt").id, at="2026-12-01")
    units = [f"v{i}" for i in range(40)]
    sides = Assigner(hold).assign_many(units)
    frame = pd.DataFrame({"event_id": [f"e{u}" for u in units], "experiment_id": hold.id, "variant": sides,
                          "user_id": units, "event_type": "exposure", "timestamp": "2026-12-02"})
    store = open_event_store(empty_settings)
    assert ingest(store, frame).inserted == 40
    flipped = frame.assign(event_id="f" + frame["event_id"],
                           variant=["shipped" if s == "holdout" else "holdout" for s in sides])
    with pytest.raises(EventValidationError, match="the holdout assigns it"):
        ingest(store, flipped)
