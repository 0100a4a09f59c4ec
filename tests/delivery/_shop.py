"""Helpers of the delivery tests: experiment ``shop`` and its events."""

from __future__ import annotations

from typing import Any

from battleground.settings import Settings

TOKEN = "delivery-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEADER = "event_id,experiment,variant,user_id,event_type,timestamp,value"


def make_shop(settings: Settings) -> Any:
    """The event store of ``settings`` with experiment ``shop`` (control/treatment) registered."""
    from battleground.experiment.events import open_event_store
    from battleground.experiment.register import Registry

    store = open_event_store(settings)
    Registry(store.registry_url).create_experiment(
        "shop", variants={"control": 0.5, "treatment": 0.5},
        metrics=[{"name": "conversion", "kind": "proportion", "numerator": "purchase", "primary": True}])
    return store


def event(i: int, **over: Any) -> dict[str, Any]:
    """Event ``i`` of experiment ``shop`` (JSON-ready)."""
    e: dict[str, Any] = {"event_id": f"e{i}", "experiment": "shop", "variant": "control" if i % 2 else "treatment",
                         "user_id": f"u{i}", "event_type": "exposure", "timestamp": "2022-03-02T10:00:00"}
    e.update(over)
    return e
