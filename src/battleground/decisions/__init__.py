"""The decision service and the agreement ledger: policies serve real traffic, learn from its rewards
behind an OPE guard, and every offline estimate is checked against the experiment that followed.

Public names (loaded lazily, so ``import battleground.decisions`` stays cheap)::

    from battleground.decisions import PolicySpec, deploy_policy, create_decision_app, DecisionService
    from battleground.decisions import ope_from_store, Ledger, track_record
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DecisionInputError",
    "DecisionService",
    "GuardResult",
    "Ledger",
    "LedgerEntry",
    "PolicySpec",
    "PolicyStore",
    "PolicyUpdater",
    "StoreOPE",
    "TrackRecord",
    "create_decision_app",
    "deploy_policy",
    "ope_from_store",
    "track_record",
]

_WHERE = {
    "DecisionInputError": "battleground.decisions._deploy",
    "PolicySpec": "battleground.decisions._deploy",
    "PolicyStore": "battleground.decisions._deploy",
    "deploy_policy": "battleground.decisions._deploy",
    "DecisionService": "battleground.decisions._service",
    "GuardResult": "battleground.decisions._updater",
    "PolicyUpdater": "battleground.decisions._updater",
    "create_decision_app": "battleground.decisions._app",
    "StoreOPE": "battleground.decisions._offline",
    "ope_from_store": "battleground.decisions._offline",
    "Ledger": "battleground.decisions._ledger",
    "LedgerEntry": "battleground.decisions._ledger",
    "TrackRecord": "battleground.decisions._ledger",
    "track_record": "battleground.decisions._ledger",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'battleground.decisions' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
