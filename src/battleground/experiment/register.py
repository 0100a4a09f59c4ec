"""The experiment registry: the seed's ``experiment.register`` module.

A facade: :class:`Registry` (``_registry``: the public operations over SQLAlchemy models whose schema
Alembic migrates on first use) and the seed's :class:`RegisterExperiment` (``_register_seed``) on top of
it. The input rules live in ``_registry_rules`` (pure functions over records, one rule set for both
layers) and the SQLAlchemy repository (sessions, rows ↔ records, audit log) in ``_registry_repo``.

Example (the seed's example; ``client=`` takes a folder, a database URL or a bare PostgreSQL host):

    >>> import tempfile
    >>> from battleground.experiment.register import RegisterExperiment
    >>> client = RegisterExperiment(client=tempfile.mkdtemp())  # or client='127.0.0.1' (PostgreSQL)
    >>> exp = client.add_experiment(meta={"name": "Galileo신규모델", "실험시작일": "2022-03-05"})
    >>> exp.status, exp.start_at.date().isoformat(), [v.name for v in exp.variants]
    ('draft', '2022-03-05', ['control', 'treatment'])
    >>> client.add_end_condition({"목표samplesize": 100}).end_conditions.target_sample_size
    100

Rules (each violation raises :class:`RegistryRuleError` naming the rule and the value, and changes
nothing): status moves draft → running → stopped → archived only; variants, weights, traffic and salt are
frozen once running; weights sum to 1; exactly one control; names unique; archived experiments are
read-only. Every status change and edit is appended to the audit log.
"""

from __future__ import annotations

from battleground.experiment._records import (
    AuditEntry,
    EndConditions,
    ExperimentNotFoundError,
    ExperimentRecord,
    MetricRecord,
    RegistryError,
    RegistryRuleError,
    VariantRecord,
)
from battleground.experiment._register_seed import (
    DEFAULT_METRICS,
    END_CONDITION_KEYS,
    META_KEYS,
    RegisterExperiment,
)
from battleground.experiment._registry import Registry
from battleground.experiment._registry_rules import parse_timestamp
from battleground.settings import resolve_client  # the seed's path

__all__ = [
    "DEFAULT_METRICS",
    "END_CONDITION_KEYS",
    "META_KEYS",
    "AuditEntry",
    "EndConditions",
    "ExperimentNotFoundError",
    "ExperimentRecord",
    "MetricRecord",
    "RegisterExperiment",
    "Registry",
    "RegistryError",
    "RegistryRuleError",
    "VariantRecord",
    "parse_timestamp",
    "resolve_client",
]
