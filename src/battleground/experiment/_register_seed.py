"""The seed's registration facade, :class:`RegisterExperiment`, over :class:`Registry`.

The seed's ``meta`` dicts (English or Korean keys) become :meth:`Registry.create_experiment` calls; end
conditions go through the one alias table and rule set of ``_registry_rules``, so the facade and the
registry accept and refuse the same things.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from battleground.experiment._records import ExperimentRecord, MetricRecord, RegistryError
from battleground.experiment._registry import Registry
from battleground.experiment._registry_rules import (
    END_CONDITION_KEYS,
    alias_key,
    end_condition_fields,
)
from battleground.settings import Settings, resolve_client

__all__ = ["DEFAULT_METRICS", "END_CONDITION_KEYS", "META_KEYS", "RegisterExperiment"]

_key = alias_key  # the seed-era name

# Accepted ``meta`` keys of add_experiment: English names and the seed's Korean ones.
META_KEYS: dict[str, tuple[str, ...]] = {
    "name": ("name", "experiment", "실험명", "실험이름", "이름"),
    "description": ("description", "설명", "실험설명"),
    "hypothesis": ("hypothesis", "가설"),
    "owner": ("owner", "담당자", "소유자"),
    "start_at": ("start_at", "start", "start_dt", "start_date", "실험시작일", "시작일"),
    "end_at": ("end_at", "end", "end_dt", "end_date", "실험종료일", "종료일"),
    "variants": ("variants", "실험군", "그룹"),
    "metrics": ("metrics", "지표"),
    "traffic": ("traffic", "트래픽"),
    "salt": ("salt",),
    "end_conditions": ("end_conditions", "종료조건"),
}
_META_LOOKUP = {alias_key(alias): field for field, aliases in META_KEYS.items() for alias in aliases}

DEFAULT_METRICS: tuple[MetricRecord, ...] = (
    MetricRecord("conversion", "proportion", "conversion", primary=True),
)


class RegisterExperiment:
    """The seed's registration facade over :class:`Registry`.

    Args:
        client: where the registry lives: a folder, a database URL, a bare PostgreSQL host, a
            :class:`Settings` or ``None`` (see :func:`resolve_client`).
        actor: who is registering (goes to the audit log); default ``$BATTLEGROUND_ACTOR`` or the login.

    ``add_experiment(meta=...)`` accepts the keys in :data:`META_KEYS` (English or Korean; other keys are
    kept verbatim in the experiment's metadata). Without ``variants`` the experiment gets control and
    treatment at 50/50; without ``metrics`` one primary proportion metric ``conversion`` counted from
    ``conversion`` events. ``add_end_condition`` accepts the keys in :data:`END_CONDITION_KEYS`.
    """

    def __init__(self, client: Any = None, *, actor: str | None = None) -> None:
        self.client = client
        self.actor = actor
        self.settings: Settings = resolve_client(client)
        self.registry: Registry = Registry(self.settings)
        self.experiment_id_: int | None = None

    def add_experiment(self, meta: Mapping[str, Any] | None = None, **fields: Any) -> ExperimentRecord:
        """Register an experiment (draft) from a ``meta`` dict; it becomes this client's experiment."""
        given = {**dict(meta or {}), **fields}
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in given.items():
            field = _META_LOOKUP.get(alias_key(str(k)))
            if field is None:
                extra[str(k)] = v
            elif field in known:
                raise RegistryError(f"meta gives {field!r} twice (as {k!r} and another alias); keep one")
            else:
                known[field] = v
        if "name" not in known:
            raise RegistryError(
                "meta needs a name, e.g. meta={'name': 'Galileo신규모델', '실험시작일': '2022-03-05'}; "
                f"accepted keys: {sorted(a for aliases in META_KEYS.values() for a in aliases)}"
            )
        record = self.registry.create_experiment(
            known["name"],
            variants=known.get("variants"),
            metrics=known.get("metrics", DEFAULT_METRICS),
            description=known.get("description"), hypothesis=known.get("hypothesis"),
            owner=known.get("owner"), start_at=known.get("start_at"), end_at=known.get("end_at"),
            metadata=extra, salt=known.get("salt"), traffic=known.get("traffic", 1.0),
            end_conditions=known.get("end_conditions"), actor=self.actor,
        )
        self.experiment_id_ = record.id
        return record

    def put_experiment_id(self, experiment_id: Any) -> RegisterExperiment:
        """Work on an already registered experiment (by id or name)."""
        self.experiment_id_ = self.registry.get(experiment_id).id
        return self

    def _require(self) -> int:
        if self.experiment_id_ is None:
            raise RegistryError(
                "no experiment chosen: call add_experiment(meta=...) or put_experiment_id(...) first"
            )
        return self.experiment_id_

    def add_end_condition(self, condition: Mapping[str, Any] | None = None, **fields: Any) -> ExperimentRecord:
        """Set end conditions, e.g. ``{"목표samplesize": 100}`` or ``{"max_duration_days": 14}``."""
        values = end_condition_fields({**dict(condition or {}), **fields})
        return self.registry.set_end_conditions(self._require(), actor=self.actor, **values)

    def add_metric(self, metric: Mapping[str, Any] | None = None, **fields: Any) -> ExperimentRecord:
        """Add a metric: ``{"name", "kind", "numerator", "denominator", "direction", "guardrail", "primary",
        "conversion_window_days", "cuped_lookback_days"}``."""
        return self.registry.add_metric(self._require(), {**dict(metric or {}), **fields}, actor=self.actor)

    def set_variants(self, variants: Any) -> ExperimentRecord:
        return self.registry.set_variants(self._require(), variants, actor=self.actor)

    def start(self) -> ExperimentRecord:
        return self.registry.start(self._require(), actor=self.actor)

    def stop(self, reason: str) -> ExperimentRecord:
        return self.registry.stop(self._require(), reason, actor=self.actor)

    def get_experiment(self) -> ExperimentRecord:
        return self.registry.get(self._require())
