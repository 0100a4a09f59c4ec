"""Rewards from ordinary event ingestion: which events are a key's rewards, and attaching them.

A deployed policy names its reward event in its spec (``reward_event``, ``reward_window``,
``reward_value``). A plain A/B experiment served through ``/decide`` uses its primary metric: the
numerator event, within the metric's conversion window (until the unit's next decision when it has
none), summed for a mean metric and 0/1 for a proportion (a ratio metric has no per-decision reward).
The matching itself is one SQL statement of the decision log
(:meth:`battleground.storage.decisions.DecisionLog.match_events`, rules in
:class:`~battleground.storage.decisions.RewardRule`): the latest decision of the unit before an
event gets it, a decision keeps the first reward stored (``POST /reward`` or a match), and a decision
whose window is over without an event gets 0.

The updater attaches its policy's rewards before every pass; OPE from the store and the ledger's
close attach them before reading (the close with ``final``: the experiment is over, so is every window).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from battleground.decisions._deploy import PolicyStore

if TYPE_CHECKING:
    from battleground.experiment._records import ExperimentRecord
    from battleground.settings import Settings
    from battleground.storage.decisions import DecisionLog, RewardRule

__all__ = ["attach_event_rewards", "experiment_reward_rule"]

_DAY = 86400.0


def experiment_reward_rule(record: ExperimentRecord) -> RewardRule | None:
    """The rule of a plain A/B experiment's decisions: its primary metric (``None`` without one, or
    for a ratio metric)."""
    from battleground.storage.decisions import RewardRule

    primary = next((m for m in record.metrics if m.primary), None)
    if primary is None or primary.kind == "ratio":
        return None
    days = primary.conversion_window_days
    return RewardRule(primary.numerator, None if days is None else float(days) * _DAY,
                      "any" if primary.kind == "proportion" else "sum")


def attach_event_rewards(settings: Settings, key: str, *, log: DecisionLog | None = None, final: bool = False,
                         now: dt.datetime | None = None) -> int:
    """Attach the ingested-event rewards of ``key`` (a deployed policy key, or an experiment: its own
    A/B decisions and those of every policy deployed in it); returns how many rewards were stored."""
    from battleground.storage.decisions import open_decision_log

    log = log or open_decision_log(settings)
    store = PolicyStore.of(settings)
    deployed = store.deployed()
    if key in deployed:
        rule = store.spec(key).reward_rule()
        return 0 if rule is None else log.match_events(rule, policy=key, now=now, final=final)
    from battleground.experiment.register import Registry

    record = Registry(settings.registry_url).get(key)
    stored = 0
    rule = experiment_reward_rule(record)
    if rule is not None:
        stored += log.match_events(rule, policy=record.name, experiment_id=record.id, now=now, final=final)
    for k in deployed:
        spec = store.spec(k)
        policy_rule = spec.reward_rule()
        if policy_rule is not None and spec.experiment in (record.name, str(record.id)):
            stored += log.match_events(policy_rule, policy=k, now=now, final=final)
    return stored
