"""Bandit policies, the retail simulator, and the workflow around them.

Public names (loaded lazily, so ``import battleground.bandit`` stays cheap)::

    from battleground.bandit import LinTS, LinUCB, EpsilonGreedy, RandomPolicy, load_policy
    from battleground.bandit import RetailSimulator, run_battle
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AGENTS",
    "BasePolicy",
    "BattleResult",
    "Decision",
    "EpsilonGreedy",
    "LinTS",
    "LinUCB",
    "PolicyInputError",
    "RandomPolicy",
    "RetailSimulator",
    "load_policy",
    "make_policy",
    "run_battle",
]

_WHERE = {
    "BasePolicy": "battleground.bandit._base",
    "Decision": "battleground.bandit._base",
    "PolicyInputError": "battleground.bandit._base",
    "load_policy": "battleground.bandit._base",
    "AGENTS": "battleground.bandit._policies",
    "EpsilonGreedy": "battleground.bandit._policies",
    "LinTS": "battleground.bandit._policies",
    "LinUCB": "battleground.bandit._policies",
    "RandomPolicy": "battleground.bandit._policies",
    "make_policy": "battleground.bandit._policies",
    "RetailSimulator": "battleground.bandit.simulator",
    "BattleResult": "battleground.bandit._battle",
    "run_battle": "battleground.bandit._battle",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'battleground.bandit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
